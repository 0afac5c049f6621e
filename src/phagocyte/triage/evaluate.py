"""The metrics of the triage issue, computed from a triage result and the ground truth.

Ground truth (AIT-ADS): an attack alert has `event_label` ≠ `-`; a noise alert has `-` and
`time_label` = `false_positive`; the rest is ambiguous and counted in neither. Analyst items are
the escalated incidents plus the incidents deferred to a human; both count against the budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phagocyte.triage.learn import alert_truth
from phagocyte.triage.score import ESCALATE
from phagocyte.triage.service import TriageResult

__all__ = ["metrics"]


def metrics(result: TriageResult) -> dict[str, Any]:
    f, g = result.frame, result.groups
    truth = alert_truth(f)
    ng = len(g)
    esc_group = np.zeros(ng, dtype=bool)  # in an escalated (not deferred) incident
    item_group = np.zeros(ng, dtype=bool)  # in any analyst item
    items = [i for i in result.incidents if i.disposition == ESCALATE]
    att_per_group = np.bincount(g.of_alert, weights=truth == 1, minlength=ng)
    first_pos = None
    hits = 0
    escalated = 0
    for pos, inc in enumerate(items, 1):
        item_group[inc.groups] = True
        has_attack = bool(att_per_group[inc.groups].sum() > 0)
        if first_pos is None and has_attack:
            first_pos = pos
        if not inc.deferred:
            esc_group[inc.groups] = True
            escalated += 1
            hits += has_attack
    in_esc = esc_group[g.of_alert]
    in_item = item_group[g.of_alert]
    attack, noise = truth == 1, truth == 0
    steps = {str(s) for s in f.event_label[attack]}
    return {
        "raw_alerts": len(f), "attack_alerts": int(attack.sum()), "noise_alerts": int(noise.sum()),
        "groups": int(ng), "analyst_items": len(items), "escalated_incidents": escalated,
        "deferred_items": len(items) - escalated,
        "attack_recall": float(in_esc[attack].mean()) if attack.any() else None,
        "attack_recall_items": float(in_item[attack].mean()) if attack.any() else None,
        "steps": sorted(steps),
        "steps_surfaced": sorted({str(s) for s in f.event_label[attack & in_esc]}),
        "steps_surfaced_items": sorted({str(s) for s in f.event_label[attack & in_item]}),
        "noise_suppression": float(1 - in_esc[noise].mean()) if noise.any() else None,
        "noise_suppression_items": float(1 - in_item[noise].mean()) if noise.any() else None,
        "incident_precision": hits / escalated if escalated else None,
        "first_attack_position": first_pos,
        "verdicts": result.model.verdicts,
    }
