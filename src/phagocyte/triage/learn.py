"""Learning from analysts: labelled history and verdicts train the risk model.

A verdict is given on a suppression group (or an incident: each of its groups). Labelled history
(AIT-ADS `event_label`/`time_label`, as if they were an analyst's past verdicts) is turned into
one verdict per group: attack when its attack alerts are at least as many as its noise alerts,
noise otherwise; groups holding only ambiguous alerts give no verdict. Rule priors used while
fitting are computed leave-one-source-out, so the model learns how far a prior carries to a
network it was not counted on, not to echo its own labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from phagocyte.triage.features import BASE_FEATURES, context_key, group_features
from phagocyte.triage.score import RiskModel, full_features
from phagocyte.triage.sources import AlertFrame
from phagocyte.triage.suppress import Groups, SuppressionConfig, suppress

__all__ = ["BTP", "FP", "TP", "alert_truth", "apply_verdicts", "group_labels", "learn"]

TP, FP, BTP = "true_positive", "false_positive", "benign_true_positive"
VERDICTS = (TP, FP, BTP)


def alert_truth(frame: AlertFrame) -> np.ndarray:
    """Per alert: 1 attack (`event_label` ≠ `-`), 0 noise (`-` and `time_label` = false_positive),
    -1 ambiguous or unlabelled."""
    el, tl = frame.event_label, frame.time_label
    attack = (el != None) & (el != "-")  # noqa: E711
    noise = (el == "-") & (tl == "false_positive")
    return np.where(attack, 1, np.where(noise, 0, -1)).astype(np.int8)


def group_labels(frame: AlertFrame, groups: Groups) -> np.ndarray:
    """Per group: 1 attack, 0 noise, -1 no verdict (only ambiguous alerts)."""
    truth = alert_truth(frame)
    ng = len(groups)
    att = np.bincount(groups.of_alert, weights=(truth == 1), minlength=ng)
    noi = np.bincount(groups.of_alert, weights=(truth == 0), minlength=ng)
    return np.where((att > 0) & (att >= noi), 1, np.where(noi > 0, 0, -1)).astype(np.int8)


def _rule_counts(rules: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for r, lab in zip(rules.tolist(), y.tolist(), strict=True):
        a, b = out.get(r, (0.0, 0.0))
        out[r] = (a + (lab == 1), b + (lab == 0))
    return out


def _context_counts(rules: np.ndarray, lone: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
    """Verdict counts of the lone groups, keyed by `context_key(rule)`."""
    keep = lone & (y >= 0)
    return {context_key(r): v for r, v in _rule_counts(rules[keep], y[keep]).items()}


def _add(a: Mapping[str, tuple[float, float]], b: Mapping[str, tuple[float, float]], sign: int = 1
         ) -> dict[str, tuple[float, float]]:
    out = dict(a)
    for k, (x, y) in b.items():
        p, q = out.get(k, (0.0, 0.0))
        out[k] = (p + sign * x, q + sign * y)
    return out


def learn(frames: Sequence[tuple[str, AlertFrame]], suppression: SuppressionConfig | None = None,
          budget: int | None = None, seed: int = 0) -> tuple[RiskModel, np.ndarray, np.ndarray]:
    """Fit a model on labelled frames (one per source file); returns it and its training set.

    `budget` keeps only that many verdicts (groups drawn at random over all frames, as if an
    analyst had labelled only those): how many verdicts does the model need?"""
    cfg = suppression or SuppressionConfig()
    labelled = []
    for name, frame in frames:
        g = suppress(frame, cfg)
        labelled.append((name, frame, g, group_labels(frame, g)))
    if budget is not None:
        rng = np.random.default_rng(seed)
        where = [(i, j) for i, (*_, y) in enumerate(labelled) for j in np.nonzero(y >= 0)[0].tolist()]
        keep = {where[k] for k in rng.choice(len(where), size=min(budget, len(where)), replace=False)}
        for i, (*_, y) in enumerate(labelled):
            for j in np.nonzero(y >= 0)[0].tolist():
                if (i, j) not in keep:
                    y[j] = -1
    parts = []
    for name, frame, g, y in labelled:
        rules = frame.rule[g.first_alert]
        parts.append((name, frame, g, y, _rule_counts(rules[y >= 0], y[y >= 0])))
    total: dict[str, tuple[float, float]] = {}
    for p in parts:
        total = _add(total, p[4])
    # Which groups are lone does not depend on the priors; their verdicts give the context priors,
    # also counted leave-one-source-out.
    own_ctx = [_context_counts(frame.rule[g.first_alert], group_features(frame, g, {}).lone, y)
               for _name, frame, g, y, _own in parts]
    total_ctx: dict[str, tuple[float, float]] = {}
    for c in own_ctx:
        total_ctx = _add(total_ctx, c)
    feats, ys = [], []
    for (_name, frame, g, y, own), ctx in zip(parts, own_ctx, strict=True):
        multi = len(parts) > 1
        feats.append(group_features(frame, g, _add(total, own, -1) if multi else total,
                                    context_stats=_add(total_ctx, ctx, -1) if multi else total_ctx))
        ys.append(y)
    first = RiskModel.fit_first(np.vstack([f.X[y >= 0] for f, y in zip(feats, ys, strict=True)]),
                                np.concatenate([y[y >= 0] for y in ys]))
    X = np.vstack([full_features(first, f)[y >= 0] for f, y in zip(feats, ys, strict=True)])
    y = np.concatenate([y[y >= 0] for y in ys])
    model = RiskModel.fit(X, y, total, first=first, suppression=cfg, trained_on=[n for n, *_ in parts],
                          context_stats=total_ctx)
    return model, X, y


def apply_verdicts(model: RiskModel, frame: AlertFrame, verdicts: Mapping[int, str],
                   train: tuple[np.ndarray, np.ndarray] | None = None,
                   ) -> tuple[RiskModel, list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Update the model with analyst verdicts on groups of `frame` (group id → verdict).

    True positives count as attack, false and benign true positives as noise (benign true
    positives are real but wanted activity: not to be escalated again). Returns the refitted model
    and narrowly scoped suppression proposals (one rule on one host, never a whole rule), and the
    grown training set (to be saved with the model).
    """
    bad = {v for v in verdicts.values() if v not in VERDICTS}
    if bad:
        raise ValueError(f"unknown verdict(s) {sorted(bad)}; use {', '.join(VERDICTS)}")
    g = suppress(frame, model.suppression)
    feats = group_features(frame, g, model.rule_stats, context_stats=model.context_stats)
    ids = np.asarray(sorted(verdicts), dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= len(g)):
        raise ValueError("verdict on a group that does not exist")
    y_new = np.asarray([1 if verdicts[int(i)] == TP else 0 for i in ids], dtype=np.int8)
    stats = _add(model.rule_stats, _rule_counts(feats.rule[ids], y_new))
    ctx = _add(model.context_stats, _context_counts(feats.rule[ids], feats.lone[ids], y_new))
    Xf = model.full_features(feats)
    X_old, y_old = train if train is not None else (np.zeros((0, Xf.shape[1])), np.zeros(0, np.int8))
    X, y = np.vstack([X_old, Xf[ids]]), np.concatenate([y_old, y_new])
    proposals: list[dict[str, Any]] = []
    for i, lab in zip(ids.tolist(), y_new.tolist(), strict=True):
        if lab == 0:
            fa = g.first_alert[i]
            proposals.append({"rule": str(frame.rule[fa]), "host": feats.host[i], "verdict": verdicts[i],
                              "window": model.suppression.window, "why": "analyst verdict on group "
                              f"{i} ({int(g.count[i])} alerts): suppress this rule on this host only"})
    if len(np.unique(y)) < 2:
        new = RiskModel(model.coef, model.intercept, model.mean, model.std, model.first, stats, model.thresholds,
                        model.suppression, model.verdicts + len(ids), model.trained_on, model.proposals + proposals,
                        ctx)
    else:  # both stages refitted; the stored host_risk column keeps the first stage it was computed with
        first = RiskModel.fit_first(X[:, :len(BASE_FEATURES)], y)
        new = RiskModel.fit(X, y, stats, first=first, thresholds=model.thresholds, suppression=model.suppression,
                            trained_on=model.trained_on, proposals=model.proposals + proposals, context_stats=ctx)
        new.verdicts = model.verdicts + len(ids) if train is None else len(y)
    return new, proposals, X, y
