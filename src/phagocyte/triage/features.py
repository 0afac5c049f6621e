"""Features of a suppression group: priors learned from verdicts, and the stream's own baseline.

Why these: in a network the model has never seen (a new customer, a leave-one-scenario-out
split) hosts and addresses are new, so nothing may be keyed on them. What carries over is the
rule's history of verdicts (how often analysts called it an attack), and how much a group departs
from the stream's own baseline of noise: a rule never seen before on this host, a burst far above
that pair's usual size, many different and new rules on one host at once, tactics moving forward.
Every feature is computed vectorised over the groups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from phagocyte.attack import TACTICS, tactic
from phagocyte.triage.sources import AlertFrame
from phagocyte.triage.suppress import Groups

__all__ = ["BASE_FEATURES", "FEATURES", "HOST_WINDOW", "GroupFeatures", "PriorCounts", "context_key",
           "group_features", "host_context", "rule_tactics"]

PriorCounts = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
"""(rules, hosts) → earlier groups of each (rule, host), their summed log counts, earlier groups of each
rule, and the times of day of the earlier groups of each (rule, host) (`day_bins` bit masks)."""

HOST_WINDOW = 3600.0
"""Seconds around a group in which other groups of the same host count as its context."""
FLEET_WINDOW = 300.0
"""Seconds around a group's start in which a group of the same rule on another host makes it part of a
fleet-wide event (a configuration push, a nightly restart, a sweep), not something singular to its host."""
DAY_BINS = 48
"""Times of day are compared in bins of 30 minutes (UTC)."""
BASELINE_LEARNED = 86400.0
"""Seconds of watched stream after which the baseline counts as learned (a detector's own learning
phase, the first day of a new sensor, is full of lone first-time alerts)."""

BASE_FEATURES: tuple[str, ...] = (
    "rule_prior", "rule_support", "count", "duration", "level", "first_on_host", "seen_on_host",
    "seen_in_org", "burst", "host_variety", "host_novel", "tactic_breadth", "stream_age", "novel_x_age",
    "lone_prior",
)
FEATURES: tuple[str, ...] = (*BASE_FEATURES, "host_risk")
"""`host_risk` is a second stage: the first-stage risk of the other groups on the same host nearby
(an alert next to an attack in progress is part of it; the same alert on a quiet host is noise)."""
FEATURE_TEXT: dict[str, str] = {
    "rule_prior": "analysts' past verdicts on this rule",
    "rule_support": "how many past verdicts exist for this rule",
    "count": "number of identical alerts in the group",
    "duration": "how long the group lasted",
    "level": "the rule's severity level",
    "first_on_host": "first time this rule fires on this host",
    "seen_on_host": "how often this rule fired on this host before (routine)",
    "seen_in_org": "how often this rule fired in the organisation before",
    "burst": "size far from this rule's usual size on this host",
    "host_variety": "many different alerts on the host within the hour",
    "host_novel": "several rules new to this host within the hour",
    "tactic_breadth": "several ATT&CK tactics on the host within the hour",
    "stream_age": "how long the baseline has been learned",
    "novel_x_age": "new on a host whose baseline is well known",
    "lone_prior": "past verdicts on this rule when it fired alone on a quiet host, outside any fleet-wide event",
    "host_risk": "other risky alert groups on the same host within the hour",
}

# ATT&CK tactics for alerts that carry none (imported tool alerts), from words of the rule name.
_KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"\bscan|nmap|probe|dirb|enumerat", "reconnaissance"),
    (r"web attack|sql injection|\bxss\b|shellshock|exploit", "initial-access"),
    (r"brute force|authentication fail|login fail|invalid user|password", "credential-access"),
    (r"sudo|to root|changed uid|privilege", "privilege-escalation"),
    (r"new event type|parameter combination|service_start|service_stop|new user", "persistence"),
    (r"\bdns\b.*(entropy|characters|frequenc)|(entropy|characters|frequenc).*\bdns\b|exfil|tunnel", "exfiltration"),
    (r"command and control|\bc2\b|beacon|reverse shell|webshell", "command-and-control"),
    (r"cpu value|denial of service|\bdos\b", "impact"),
)


def rule_tactics(rule_name: str, given: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Tactic ids of an alert: those it carries, else those its rule name suggests."""
    if given:
        return tuple(t.id for g in given if (t := tactic(g)) is not None)
    name = rule_name.lower()
    out = []
    for pattern, short in _KEYWORDS:
        if re.search(pattern, name):
            t = tactic(short)
            if t is not None and t.id not in out:
                out.append(t.id)
    return tuple(out)


def context_key(rule: str) -> str:
    """Key of a rule's verdicts given on *lone* groups (see `group_features`) in `context_stats`."""
    return rule + "\tlone"


class GroupFeatures:
    """Feature matrix (groups × BASE_FEATURES) and what the second stage, explanation and
    correlation need (host code and time span of each group)."""

    def __init__(self, X: np.ndarray, rule: np.ndarray, host: np.ndarray, support: np.ndarray,
                 tactics: list[tuple[str, ...]], host_code: np.ndarray, start: np.ndarray, end: np.ndarray,
                 lone: np.ndarray | None = None) -> None:
        self.X = X
        self.rule = rule
        self.host = host
        self.support = support
        self.tactics = tactics
        self.host_code = host_code
        self.start = start
        self.end = end
        self.lone = lone if lone is not None else np.zeros(len(rule), dtype=bool)
        """Alone on its host within HOST_WINDOW, no group of its rule on another host within FLEET_WINDOW,
        after BASELINE_LEARNED, not at a time of day its rule fired on its host before: the context of
        `lone_prior`."""


def host_context(p1: np.ndarray, host_code: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """log1p of the summed first-stage risk of the *other* groups of the host within HOST_WINDOW."""
    if not len(p1):
        return np.zeros(0)
    return np.log1p(np.maximum(_window_sum(host_code, start, end, p1, HOST_WINDOW) - p1, 0.0))


def _prior(rule_stats: Mapping[str, tuple[float, float]], rules: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed log-odds that a group of this rule is an attack, and the verdicts behind it."""
    uniq, inv = np.unique(rules.astype(str), return_inverse=True)
    a = np.array([rule_stats.get(r, (0.0, 0.0))[0] for r in uniq])
    b = np.array([rule_stats.get(r, (0.0, 0.0))[1] for r in uniq])
    logit = np.log((a + 0.5) / (b + 0.5))
    return logit[inv], (a + b)[inv]


def day_bins(t: np.ndarray) -> np.ndarray:
    """Bit mask (int64) of the time-of-day bin of each time."""
    return np.left_shift(np.int64(1), ((np.asarray(t, dtype=np.float64) % 86400.0) // (86400.0 / DAY_BINS))
                         .astype(np.int64))


def _near_bins(mask: np.ndarray) -> np.ndarray:
    """A time-of-day mask widened by one bin on each side (circular)."""
    full = (1 << DAY_BINS) - 1
    m = mask.astype(np.int64)
    return (m | ((m << 1) & full) | (m >> 1) | ((m & 1) << (DAY_BINS - 1)) | ((m >> (DAY_BINS - 1)) & 1)) & full


def _seen_at_time_of_day(key: np.ndarray, t: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each of `rows`: whether an earlier row with its key fell in its time-of-day bin or one next
    to it (vectorised: the earliest time of each (key, bin), looked up for the three bins)."""
    out = np.zeros(len(rows), dtype=bool)
    if not len(rows):
        return out
    b = ((t % 86400.0) // (86400.0 / DAY_BINS)).astype(np.int64)
    code = key.astype(np.int64) * DAY_BINS + b
    order = np.lexsort((t, code))
    uniq, first = np.unique(code[order], return_index=True)
    tmin = t[order][first]
    for d in (-1, 0, 1):
        c = key[rows].astype(np.int64) * DAY_BINS + (b[rows] + d) % DAY_BINS
        pos = np.minimum(np.searchsorted(uniq, c), len(uniq) - 1)
        out |= (uniq[pos] == c) & (tmin[pos] < t[rows])
    return out


CONTEXT_PSEUDO = 2.0
"""Pseudo-verdicts at the rule's overall rate that a context's own verdicts must outweigh."""


def _context_shift(rule_stats: Mapping[str, tuple[float, float]], context_stats: Mapping[str, tuple[float, float]],
                   rules: np.ndarray) -> np.ndarray:
    """How far a rule's verdicts in one context move its log-odds from its overall prior: the context's
    (attack, noise) counts, smoothed towards the rule's overall rate; 0 without verdicts there."""
    out = np.zeros(len(rules))
    for i, r in enumerate(rules.tolist()):
        ac, bc = context_stats.get(context_key(str(r)), (0.0, 0.0))
        if ac + bc <= 0:
            continue
        a, b = rule_stats.get(str(r), (0.0, 0.0))
        rate = (a + 0.5) / (a + b + 1.0)
        ctx = np.log((ac + CONTEXT_PSEUDO * rate) / (bc + CONTEXT_PSEUDO * (1 - rate)))
        out[i] = ctx - np.log((a + 0.5) / (b + 0.5))
    return out


def _cum_in_key(key: np.ndarray, t: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: how many earlier rows share its key, and the sum of their `values`."""
    order = np.lexsort((t, key))
    k = key[order]
    start = np.ones(len(k), dtype=bool)
    start[1:] = k[1:] != k[:-1]
    idx = np.arange(len(k))
    first = np.maximum.accumulate(np.where(start, idx, 0))
    cv = np.cumsum(values[order]) - values[order]
    before = cv - (cv[first] if len(k) else 0)
    n_before = np.empty(len(k), dtype=np.float64)
    s_before = np.empty(len(k), dtype=np.float64)
    n_before[order] = idx - first
    s_before[order] = before
    return n_before, s_before


def _window_sum(host: np.ndarray, start: np.ndarray, end: np.ndarray, values: np.ndarray,
                window: float) -> np.ndarray:
    """For each group: sum of `values` over the groups of its host starting in [start-w, end+w]."""
    scale = 1e11
    pos = host.astype(np.float64) * scale + start
    order = np.argsort(pos, kind="stable")
    sp = pos[order]
    csum = np.concatenate([[0.0], np.cumsum(values[order])])
    lo = np.searchsorted(sp, host * scale + start - window, side="left")
    hi = np.searchsorted(sp, host * scale + end + window, side="right")
    return csum[hi] - csum[lo]


def group_features(frame: AlertFrame, groups: Groups, rule_stats: Mapping[str, tuple[float, float]],
                   history: PriorCounts | None = None, t0: float | None = None,
                   context_stats: Mapping[str, tuple[float, float]] | None = None) -> GroupFeatures:
    """Features of every group of a frame, given the rule verdict counts (attack, noise) and those
    given on lone groups (`context_stats`, keyed by `context_key`).

    A stream (`stream.py`) passes `history`, the baseline of the groups it no longer holds (they all
    started before this frame's groups), and `t0`, when its baseline began."""
    fa = groups.first_alert
    ng = len(groups)
    rule = frame.rule[fa]
    hosts = np.where(frame.entities["host.name"][fa] == None,  # noqa: E711
                     frame.entities["host.ip"][fa], frame.entities["host.name"][fa])
    host_code = np.unique(np.where(hosts == None, "\0", hosts).astype(str), return_inverse=True)[1]  # noqa: E711
    rule_code = np.unique(rule.astype(str), return_inverse=True)[1]
    start, end = groups.first_seen, groups.last_seen
    prior, support = _prior(rule_stats, rule)
    logc = np.log1p(groups.count.astype(np.float64))
    rh = rule_code.astype(np.int64) * (host_code.max(initial=0) + 1) + host_code
    n_rh, s_rh = _cum_in_key(rh, start, logc)
    n_r, _ = _cum_in_key(rule_code, start, logc)
    h_bins = np.zeros(ng, dtype=np.int64)
    if history is not None and ng:
        h_rh, h_srh, h_r, h_bins = history(rule, hosts)
        n_rh, s_rh, n_r = n_rh + h_rh, s_rh + h_srh, n_r + h_r
    first = (n_rh == 0).astype(np.float64)
    burst = np.where(n_rh > 0, logc - s_rh / np.maximum(n_rh, 1), 0.0)
    variety = _window_sum(host_code, start, end, np.ones(ng), HOST_WINDOW)
    novel = _window_sum(host_code, start, end, first, HOST_WINDOW)
    # Tactics of each group (its first alert's rule), then distinct tactics on the host in the window.
    names = frame.rule_name[fa]
    cache: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
    tactics: list[tuple[str, ...]] = []
    for nm, given in zip(names, frame.tactics[fa], strict=True):
        k = (str(nm or ""), given)
        if k not in cache:
            cache[k] = rule_tactics(*k)
        tactics.append(cache[k])
    breadth = np.zeros(ng)
    for t in TACTICS:
        has = np.fromiter((t.id in tt for tt in tactics), dtype=np.float64, count=ng)
        if has.any():
            breadth += _window_sum(host_code, start, end, has, HOST_WINDOW) > 0
    origin = t0 if t0 is not None else (start.min() if ng else 0.0)
    age = np.log1p(np.maximum(start - origin, 0.0) / 3600.0)
    # Lone: the only group of its host within the hour, its rule on no other host at that moment, once
    # the baseline is learned, and not at a time of day at which its rule fired on this host before.
    # A rule's verdicts in that context can differ from its overall prior: a rule whose alerts are
    # mostly the noise of busy hosts, fleet-wide restarts and scheduled jobs may mean something else
    # when it fires alone on a quiet host. `lone_prior` is how far the smoothed log-odds of the
    # verdicts on the rule's lone groups lie from its overall prior (0 for other groups).
    ones = np.ones(ng)
    rh_dense = np.unique(rh, return_inverse=True)[1]
    fleet = (_window_sum(rule_code, start, start, ones, FLEET_WINDOW)
             - _window_sum(rh_dense, start, start, ones, FLEET_WINDOW))
    lone = (variety <= 1.0) & (fleet <= 0.0) & (start - origin >= BASELINE_LEARNED)
    # Not lone: within ± 30 min of a time of day at which its rule fired on its host before (a scheduled job).
    cand = np.nonzero(lone)[0]
    if len(cand):
        seen = _seen_at_time_of_day(rh, start, cand) | ((_near_bins(h_bins[cand]) & day_bins(start[cand])) != 0)
        lone[cand[seen]] = False
    lone_prior = np.zeros(ng)
    if context_stats and lone.any():
        lone_prior[lone] = _context_shift(rule_stats, context_stats, rule[lone])
    level = np.maximum.reduceat(frame.level[np.argsort(groups.of_alert, kind="stable")].astype(np.float64),
                                np.r_[0, np.cumsum(groups.count)[:-1]]) if ng else np.zeros(0)
    X = np.column_stack([
        prior, np.log1p(support), logc, np.log1p(end - start), level, first, np.log1p(n_rh), np.log1p(n_r),
        burst, np.log1p(variety), np.log1p(novel), breadth, age, first * age, lone_prior,
    ]) if ng else np.zeros((0, len(BASE_FEATURES)))
    return GroupFeatures(X, rule, hosts, support, tactics, host_code.astype(np.int64), start, end, lone)
