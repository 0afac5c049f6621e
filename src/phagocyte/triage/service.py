"""Triage end to end: alerts → groups → scores → dispositions → incidents → JSON lines."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from phagocyte.attack import tactic_rank
from phagocyte.triage.correlate import CORRELATION_GAP, correlate, find_root
from phagocyte.triage.explain import iso, summary
from phagocyte.triage.features import GroupFeatures, group_features
from phagocyte.triage.score import AUTO_CLOSE, DEFER, ESCALATE, MONITOR, RiskModel, Thresholds, disposition
from phagocyte.triage.sources import ENTITY_FIELDS, AlertFrame
from phagocyte.triage.suppress import Groups, suppress

__all__ = ["Incident", "TriageResult", "build_incidents", "incident_dict", "triage", "write_incidents"]


@dataclass
class Incident:
    id: str
    groups: list[int]
    score: float
    disposition: str
    deferred: bool
    tactics: list[str]
    reasons: list[str]


@dataclass
class TriageResult:
    frame: AlertFrame
    groups: Groups
    features: GroupFeatures
    prob: np.ndarray  # per group
    group_disposition: np.ndarray  # per group: escalate / defer / monitor / auto_close
    incidents: list[Incident]  # escalated first (by score), then deferred, monitor, auto_close
    model: RiskModel

    @property
    def analyst_items(self) -> int:
        return sum(1 for i in self.incidents if i.disposition == ESCALATE)

    def alerts_of(self, inc: Incident) -> np.ndarray:
        return np.nonzero(np.isin(self.groups.of_alert, inc.groups))[0]

    def incident_dicts(self, with_refs: bool = True) -> Iterator[dict[str, Any]]:
        order = np.argsort(self.groups.of_alert, kind="stable")
        bounds = np.r_[0, np.cumsum(self.groups.count)]
        for inc in self.incidents:
            yield self._dict(inc, order, bounds, with_refs)

    def _dict(self, inc: Incident, order: np.ndarray, bounds: np.ndarray, with_refs: bool) -> dict[str, Any]:
        idx = np.concatenate([order[bounds[i]:bounds[i + 1]] for i in inc.groups])
        idx.sort()
        refs = self.frame.ref[idx].tolist() if with_refs else []
        return incident_dict(inc, self.frame, self.groups, self.prob, self.group_disposition, len(idx), refs)


_TIMELINE_ENTITIES = ("host.name", "user.name", "source.ip", "destination.ip")
_LEVEL_NAMES = ("informational", "low", "medium", "high", "critical")  # AlertFrame.level's ranks


def _first_alert(f: AlertFrame, a: int) -> dict[str, Any]:
    """What an analyst reads on a timeline row: the rule's name, the first alert's entities and reference."""
    out: dict[str, Any] = {"rule.name": str(f.rule_name[a] or f.rule[a]), "ref": str(f.ref[a])}
    if 0 <= int(f.level[a]) < len(_LEVEL_NAMES):
        out["rule.level"] = _LEVEL_NAMES[int(f.level[a])]
    for name in _TIMELINE_ENTITIES:
        if name in f.entities and f.entities[name][a] is not None:
            out[name] = str(f.entities[name][a])
    return out


def incident_dict(inc: Incident, f: AlertFrame, g: Groups, prob: np.ndarray, group_disposition: np.ndarray,
                  n_alerts: int, refs: list[str]) -> dict[str, Any]:
    """The JSON object of one incident (`g.first_alert` indexes `f`; `refs` are its alerts in time order)."""
    entities: dict[str, list[str]] = {}
    for name in ENTITY_FIELDS:
        vals = sorted({str(v) for v in f.entities[name][g.first_alert[inc.groups]] if v is not None})
        if vals:
            entities[name] = vals
    rules = Counter({str(f.rule_name[g.first_alert[i]] or f.rule[g.first_alert[i]]): 0 for i in inc.groups})
    for i in inc.groups:
        rules[str(f.rule_name[g.first_alert[i]] or f.rule[g.first_alert[i]])] += int(g.count[i])
    first, last = float(g.first_seen[inc.groups].min()), float(g.last_seen[inc.groups].max())
    timeline = [{"group": int(i), "rule": str(f.rule[g.first_alert[i]]), "count": int(g.count[i]),
                 "first_seen": iso(g.first_seen[i]), "last_seen": iso(g.last_seen[i]),
                 "probability": round(float(prob[i]), 4), "disposition": str(group_disposition[i]),
                 **_first_alert(f, int(g.first_alert[i]))}
                for i in inc.groups[:200]]
    return {
        "id": inc.id, "score": round(inc.score, 4), "disposition": inc.disposition, "deferred": inc.deferred,
        "alert_count": n_alerts, "group_count": len(inc.groups),
        "alert_refs": refs,
        "entities": entities, "tactics": inc.tactics, "first_seen": iso(first), "last_seen": iso(last),
        "rules": dict(rules.most_common()), "timeline": timeline,
        "summary": summary(disposition=inc.disposition, deferred=inc.deferred, n_alerts=n_alerts,
                           n_groups=len(inc.groups), rules=rules.most_common(),
                           hosts=entities.get("host.name") or entities.get("host.ip")
                           or entities.get("source.ip", []) + entities.get("destination.ip", []),
                           tactics=inc.tactics,
                           first=first, last=last, score=inc.score, reasons=inc.reasons),
        "reasons": inc.reasons,
    }


def _incident_score(prob: np.ndarray, tactics: list[str]) -> float:
    """Noisy-OR of the group probabilities, raised by tactic progression: a chain of several tactics
    in kill-chain order on related entities weighs more than many alerts of one kind."""
    p = 1.0 - float(np.prod(1.0 - np.clip(prob, 0, 0.999)))
    steps = len(tactics)
    return 1.0 - (1.0 - p) * (0.7 ** max(steps - 1, 0))


ABSORB_MARGIN = 600.0
"""Seconds around an escalated incident in which unsure or monitored groups of its hosts join it."""
DEFER_GAP = 6 * 3600.0
"""Deferred groups of one entity within this gap are reviewed together (one analyst item)."""


def _absorb(incidents: list[list[int]], feats: GroupFeatures, disp: np.ndarray) -> list[list[int]]:
    """Other groups on an escalated incident's hosts, during it, become part of it: an alert next to
    an attack in progress is evidence of that attack, not a separate question (and routine alerts
    during an attack are what an attacker hides behind). Updates `disp` of the absorbed groups."""
    return _join_during(incidents, feats, disp, disp != ESCALATE, ABSORB_MARGIN, same_hosts=True)


def _join_during(incidents: list[list[int]], feats: GroupFeatures, disp: np.ndarray, open_: np.ndarray,
                 margin: float, *, same_hosts: bool, until: list[float] | None = None) -> list[list[int]]:
    """Open groups that start during an incident (± `margin`; up to `until[k]` when that is later),
    on its hosts or on the others, join it and are escalated with it (`open_` and `disp` are updated:
    a group joins one incident only)."""
    out = []
    for k, gids in enumerate(incidents):
        on_hosts = np.isin(feats.host_code, np.unique(feats.host_code[gids]))
        lo, hi = feats.start[gids].min() - margin, feats.end[gids].max() + margin
        if until is not None:
            hi = max(hi, until[k])
        extra = np.nonzero(open_ & (on_hosts if same_hosts else ~on_hosts)
                           & (feats.start >= lo) & (feats.start <= hi))[0]
        if len(extra):
            disp[extra] = ESCALATE
            open_[extra] = False
            gids = sorted([*gids, *extra.tolist()], key=lambda i: feats.start[i])
        out.append(gids)
    return out


BRIDGE_GAP = 3600.0
"""Two escalated incidents sharing a host less than this apart: the intrusion is taken to be in progress
between them (an attacker working quietly on the host), so concurrent activity is looked for over the gap."""
WAVE_WINDOW = 300.0
"""Escalated incidents on different hosts that start within this many seconds of each other and
share a rule are one sweep (a scan or a worm touching many hosts at once): one analyst item."""


def _corroborated(incidents: list[list[int]], prob: np.ndarray, p1: np.ndarray, feats: GroupFeatures,
                  disp: np.ndarray, th: Thresholds) -> list[list[int]]:
    """Keep an escalated incident only when its escalation stands on its own evidence: a group at or
    above the escalation threshold that is also risky on its own features (first stage `p1`, not only
    lifted through `host_risk` by the other groups of a busy host, which lets them lift each other),
    and either of a rule with at least `min_support` verdicts or joined by such a group of another
    rule (two independent signals). One rule known from a handful of verdicts is a lean, not
    evidence. Other escalated incidents are deferred to a human instead (their groups become `defer`
    in `disp`): never closed, but not called an attack."""
    out = []
    for gids in incidents:
        standing = [i for i in gids if prob[i] >= th.escalate and p1[i] >= th.escalate]
        if any(feats.support[i] >= th.min_support for i in standing) or len({feats.rule[i] for i in standing}) >= 2:
            out.append(gids)
        else:
            disp[gids] = DEFER
    return out


def _waves(incidents: list[list[int]], feats: GroupFeatures) -> list[list[int]]:
    """Escalated incidents of different hosts that start within WAVE_WINDOW of each other and share a
    rule become one incident (a sweep across the network is one event to review, not one per host)."""
    n = len(incidents)
    if n < 2:
        return incidents
    parent = list(range(n))
    starts = [float(feats.start[g].min()) for g in incidents]
    rules = [{str(r) for r in feats.rule[g]} for g in incidents]
    hosts = [set(feats.host_code[g].tolist()) for g in incidents]
    order = sorted(range(n), key=lambda i: starts[i])
    for a_pos, a in enumerate(order):
        for b in order[a_pos + 1:]:
            if starts[b] - starts[a] > WAVE_WINDOW:
                break
            if hosts[a] != hosts[b] and rules[a] & rules[b]:
                ra, rb = find_root(parent, a), find_root(parent, b)
                if ra != rb:
                    parent[rb] = ra
    merged: dict[int, list[int]] = {}
    for i in range(n):
        merged.setdefault(find_root(parent, i), []).extend(incidents[i])
    return [sorted(g, key=lambda i: feats.start[i]) for g in merged.values()]


def _concurrent(incidents: list[list[int]], feats: GroupFeatures, disp: np.ndarray,
                margin: float = ABSORB_MARGIN) -> list[list[int]]:
    """Groups on *other* hosts whose rule names an ATT&CK tactic (impact, exfiltration, discovery, ...)
    and that start during an escalated incident (± `margin`) join it as concurrent activity: an
    intrusion in progress is the context that makes a routine-looking tactic alert elsewhere worth a
    look (a CPU spike on the monitoring host while passwords are cracked, new DNS characters during
    a scan), even when it shares no entity with it. Alerts that name no tactic (logins, updates) are
    left alone, so the network's background noise stays out. An incident followed within BRIDGE_GAP by
    another escalated incident of one of its hosts looks until that one starts (an attacker at work
    between two escalations, cracking hashes say, may raise nothing on the host itself, only a CPU
    alert on the monitoring host). Updates `disp` of the joined groups."""
    open_ = (disp != ESCALATE) & np.fromiter((bool(t) for t in feats.tactics), dtype=bool, count=len(disp))
    spans = [(float(feats.start[g].min()), float(feats.end[g].max()), set(feats.host_code[g].tolist()))
             for g in incidents]
    until = [min((s for s, _e, h in spans if end < s <= end + BRIDGE_GAP and h & hosts), default=-np.inf)
             for _s, end, hosts in spans]
    return _join_during(incidents, feats, disp, open_, margin, same_hosts=False, until=until)


def triage(frame: AlertFrame, model: RiskModel) -> TriageResult:
    """Triage a frame of alerts with a learned model."""
    groups = suppress(frame, model.suppression)
    feats = group_features(frame, groups, model.rule_stats, context_stats=model.context_stats)
    X = model.full_features(feats)
    prob = model.predict(X) if len(groups) else np.zeros(0)
    disp = disposition(prob, feats.support, model.thresholds)
    incidents = build_incidents(frame, groups, feats, X, prob, disp, model)
    rank = {ESCALATE: 0, MONITOR: 2, AUTO_CLOSE: 3}
    incidents.sort(key=lambda x: (rank[x.disposition] + (1 if x.deferred else 0) * 0.5, -x.score,
                                  groups.first_seen[x.groups[0]]))
    for n, inc in enumerate(incidents, 1):
        inc.id = f"INC-{n:05d}"
    return TriageResult(frame, groups, feats, prob, disp, incidents, model)


def build_incidents(frame: AlertFrame, groups: Groups, feats: GroupFeatures, X: np.ndarray, prob: np.ndarray,
                    disp: np.ndarray, model: RiskModel) -> list[Incident]:
    """Scored groups → incidents (unnumbered). Escalated groups are correlated; an incident whose
    escalation does not stand on its own evidence is deferred (`_corroborated`); the rest absorb
    their hosts' other groups, sweeps across hosts become one incident (`_waves`) and tactic alerts
    elsewhere during them join as concurrent activity (`_concurrent`); `disp` is updated for all of
    these. Deferred groups are batched, routine ones kept per (disposition, rule, host)."""
    incidents: list[Incident] = []
    for kind in (ESCALATE, DEFER):
        members = np.nonzero(disp == kind)[0]
        linked = correlate(frame, groups, members, gap=CORRELATION_GAP if kind == ESCALATE else DEFER_GAP)
        if kind == ESCALATE:
            p1 = model.first.predict(feats.X) if len(feats.X) else np.zeros(0)
            linked = _corroborated(linked, prob, p1, feats, disp, model.thresholds)
            linked = _absorb(linked, feats, disp)
            linked = _waves(linked, feats)
            linked = _concurrent(linked, feats, disp)
        for gids in linked:
            tac = sorted({t for i in gids for t in feats.tactics[i]}, key=tactic_rank)
            best = max(gids, key=lambda i: prob[i])
            reasons = model.reasons(X[best])
            if kind == DEFER:
                th = model.thresholds
                if prob[best] >= th.escalate:  # deferred by `_corroborated`
                    lead = (f"leans to attack (probability {prob[best]:.2f}) but no alert group stands on its own "
                           "evidence (a rule with few verdicts, or risk lent by the host's other alerts)")
                elif feats.support[best] < th.min_support:
                    lead = "no analyst verdicts yet on rule " + str(feats.rule[best])
                else:
                    lead = f"the model is unsure (probability {prob[best]:.2f})"
                reasons = [lead, *reasons]
            incidents.append(Incident("", gids, _incident_score(prob[gids], tac), ESCALATE, kind == DEFER,
                                      tac, reasons))
    # Routine groups: one incident per (disposition, rule, host), so the noise stays auditable.
    routine: dict[tuple[str, str, str], list[int]] = {}
    for i in np.nonzero((disp == MONITOR) | (disp == AUTO_CLOSE))[0]:
        routine.setdefault((str(disp[i]), str(feats.rule[i]), str(feats.host[i])), []).append(int(i))
    for (kind, _rule, _host), gids in routine.items():
        tac = sorted({t for i in gids for t in feats.tactics[i]}, key=tactic_rank)
        why = ["many past verdicts call this rule noise", "routine on this host"] if kind == AUTO_CLOSE else \
            ["low probability of attack"]
        incidents.append(Incident("", gids, float(prob[gids].max()), kind, False, tac, why))
    return incidents


def write_incidents(result: TriageResult, out: str | Path | IO[str]) -> int:
    """One JSON object per incident; returns how many were written."""
    n = 0
    fh = open(out, "w", encoding="utf-8") if isinstance(out, str | Path) else out
    try:
        for d in result.incident_dicts():
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if isinstance(out, str | Path):
            fh.close()
    return n


MODEL_DIRNAME = "triage-model"
"""Where `phago run` looks for a learned model: `$PHAGO_HOME/triage-model`."""


def triage_store(store: Any, home: str | Path, out: str | Path) -> TriageResult | None:
    """Triage the alerts (`event.kind = 'alert'`) of a store, for `phago run`; None when it holds none.

    Uses `$PHAGO_HOME/triage-model` when present; without one every group is deferred to a human
    (nothing is auto-closed on no evidence)."""
    from phagocyte.triage.sources import read_store_alerts

    frame = read_store_alerts(store)
    if not len(frame):
        return None
    model_dir = Path(home) / MODEL_DIRNAME
    model = RiskModel.load(model_dir) if (model_dir / "model.json").exists() else RiskModel.untrained()
    result = triage(frame, model)
    write_incidents(result, out)
    return result


VERDICTS_FILE = "verdicts.jsonl"
"""Analyst verdicts written by the case store (`phagocyte.cases.service.JsonlVerdictSink`)."""
CONSUMED_FILE = "verdicts.consumed"


def learn_case_verdicts(store: Any, home: str | Path) -> tuple[int, list[dict[str, Any]]]:
    """Feed the case store's new verdicts into `$PHAGO_HOME/triage-model` (created if absent).

    Each verdict names its incident's alert references; every suppression group of the store's
    alerts that holds one of them gets the verdict. Verdicts already learned are remembered by line
    count in `triage-model/verdicts.consumed`, so each is learned once. Returns the number of group
    verdicts learned and the suppression proposals.
    """
    import json

    from phagocyte.triage.learn import apply_verdicts
    from phagocyte.triage.sources import read_store_alerts
    from phagocyte.triage.suppress import suppress

    home = Path(home)
    source = home / VERDICTS_FILE
    if not source.exists():
        return 0, []
    model_dir = home / MODEL_DIRNAME
    consumed_path = model_dir / CONSUMED_FILE
    done = int(consumed_path.read_text().strip() or 0) if consumed_path.exists() else 0
    lines = source.read_text(encoding="utf-8").splitlines()
    fresh = [json.loads(x) for x in lines[done:] if x.strip()]
    if not fresh:
        return 0, []
    model = RiskModel.load(model_dir) if (model_dir / "model.json").exists() else RiskModel.untrained()
    frame = read_store_alerts(store)
    groups = suppress(frame, model.suppression)
    group_of_ref: dict[str, list[int]] = {}
    for i, ref in enumerate(frame.ref.tolist()):
        group_of_ref.setdefault(str(ref), []).append(int(groups.of_alert[i]))
    verdicts: dict[int, str] = {}
    for v in fresh:
        for ref in v.get("alert_refs") or []:
            for g in group_of_ref.get(str(ref), []):
                verdicts[g] = str(v["verdict"])
    proposals: list[dict[str, Any]] = []
    if verdicts:
        train = RiskModel.training_set(model_dir) if (model_dir / "model.json").exists() else None
        new, proposals, X, y = apply_verdicts(model, frame, verdicts, train)
        new.save(model_dir, X, y)
    model_dir.mkdir(parents=True, exist_ok=True)
    consumed_path.write_text(str(len(lines)))
    return len(verdicts), proposals
