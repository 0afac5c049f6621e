"""Triage on real AIT-ADS alerts: learn on one scenario, triage another network (a small LOSO).

The full leave-one-scenario-out evaluation over the 4 scenarios, with DeepCASE beside it, is
`bench/triage_eval.py` (docs/benchmarks.md); this test keeps the two small scenarios.
"""

from __future__ import annotations

import pytest

from phagocyte.triage import triage
from phagocyte.triage.evaluate import metrics
from phagocyte.triage.learn import learn
from phagocyte.triage.sources import load_alerts
from tests.conftest import evaldata

pytestmark = pytest.mark.evaldata


def test_learn_on_shaw_triage_russellmitchell() -> None:
    root = evaldata("ait_ads") / "alerts_csv"
    train, _ = load_alerts([root / "shaw_alerts.txt"], "ait-ads")
    test, _ = load_alerts([root / "russellmitchell_alerts.txt"], "ait-ads")
    model, _, y = learn([("shaw", train)])
    res = triage(test, model)
    m = metrics(res)
    assert m["raw_alerts"] > 40_000
    assert m["analyst_items"] <= 100
    assert m["attack_recall"] >= 0.99
    assert m["noise_suppression"] >= 0.99
    assert {"dirb", "wpscan", "webshell_cmd", "escalated_sudo_command"} <= set(m["steps_surfaced"])
    assert m["first_attack_position"] == 1
    assert m["verdicts"] == len(y)
    # the first incident's references point at real attack lines of the source file (it opens with
    # the scan sweep, whose victims' alerts are partly unlabelled, then the web attack)
    lines = (root / "russellmitchell_alerts.txt").read_text().splitlines()
    first = next(res.incident_dicts())
    labelled = [lines[int(r.rsplit(":", 1)[1]) - 1].rsplit(",", 1)[1] for r in first["alert_refs"]]
    attack = sum(lab != "-" for lab in labelled)
    assert attack >= 40 and attack >= 0.5 * len(labelled)
