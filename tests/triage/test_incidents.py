"""Incident assembly rules on hand-made groups: corroboration, sweeps across hosts, concurrent activity."""

from __future__ import annotations

import numpy as np

from phagocyte.triage.features import BASE_FEATURES, GroupFeatures
from phagocyte.triage.score import DEFER, ESCALATE, MONITOR, Thresholds
from phagocyte.triage.service import ABSORB_MARGIN, BRIDGE_GAP, WAVE_WINDOW, _concurrent, _corroborated, _waves


def feats(rules: list[str], hosts: list[int], start: list[float], end: list[float] | None = None,
          support: list[float] | None = None, tactics: list[tuple[str, ...]] | None = None) -> GroupFeatures:
    n = len(rules)
    return GroupFeatures(np.zeros((n, len(BASE_FEATURES))), np.asarray(rules, dtype=object),
                         np.asarray([f"h{h}" for h in hosts], dtype=object),
                         np.asarray(support if support is not None else [100.0] * n),
                         tactics if tactics is not None else [()] * n, np.asarray(hosts, dtype=np.int64),
                         np.asarray(start, dtype=float), np.asarray(end if end is not None else start, dtype=float))


def test_an_escalation_needs_one_group_that_stands_on_its_own() -> None:
    # incidents: [0] lifted by its neighbours only; [1] one rule with few verdicts; [2, 3] a well-known
    # rule on its own evidence; [4, 5] two rules with few verdicts, each risky on its own
    f = feats(["a", "b", "c", "d", "e", "f"], [0, 1, 2, 2, 3, 3], [0, 0, 0, 10, 0, 5],
              support=[100, 5, 100, 100, 3, 4])
    prob = np.array([0.8, 0.9, 0.8, 0.6, 0.7, 0.9])
    p1 = np.array([0.3, 0.9, 0.7, 0.1, 0.6, 0.8])
    disp = np.array([ESCALATE] * 6, dtype=object)
    kept = _corroborated([[0], [1], [2, 3], [4, 5]], prob, p1, f, disp, Thresholds())
    assert kept == [[2, 3], [4, 5]]
    assert disp.tolist() == [DEFER, DEFER, ESCALATE, ESCALATE, ESCALATE, ESCALATE]


def test_a_sweep_across_hosts_is_one_incident() -> None:
    # 0, 1: same rule on two hosts within the window (one sweep); 2: other rule; 3: too late
    f = feats(["scan", "scan", "other", "scan"], [0, 1, 2, 3], [0, WAVE_WINDOW / 2, 10, 3 * WAVE_WINDOW])
    merged = _waves([[0], [1], [2], [3]], f)
    assert sorted(sorted(m) for m in merged) == [[0, 1], [2], [3]]
    # two incidents of one host are linked (or not) by the correlation gap, not as a sweep
    same = feats(["scan", "scan"], [0, 0], [0, 10])
    assert len(_waves([[0], [1]], same)) == 2


def test_concurrent_tactic_alerts_on_other_hosts_join_an_intrusion() -> None:
    # incident: host 0 over [1000, 2000]; 1: tactic alert elsewhere during it (joins); 2: same time, no
    # tactic (stays out); 3: tactic alert long after (stays out); 4: tactic alert just before (joins)
    t = ("TA0040",)
    f = feats(["x", "cpu", "login", "cpu", "dns"], [0, 1, 1, 2, 3], [1000, 1500, 1500, 2000 + 3 * ABSORB_MARGIN,
              1000 - ABSORB_MARGIN / 2], end=[2000, 1500, 1500, 9000, 1000], tactics=[(), t, (), t, t])
    disp = np.array([ESCALATE, MONITOR, MONITOR, MONITOR, DEFER], dtype=object)
    out = _concurrent([[0]], f, disp)
    assert out == [[4, 0, 1]]
    assert disp.tolist() == [ESCALATE, ESCALATE, MONITOR, MONITOR, ESCALATE]


def test_concurrent_activity_bridges_the_gap_between_two_escalations_of_one_host() -> None:
    # host 0 escalated over [1000, 2000] and again from 2000 + BRIDGE_GAP / 2: the tactic alert on host 1
    # in between (beyond ABSORB_MARGIN of both) joins the first; with the second escalation on another
    # host, or too late, it stays out
    t = ("TA0040",)
    gap_start = 2000 + BRIDGE_GAP / 2
    cpu = 2000 + BRIDGE_GAP / 4
    assert cpu > 2000 + ABSORB_MARGIN and cpu < gap_start - ABSORB_MARGIN
    for second_host, second_start, joins in ((0, gap_start, True), (2, gap_start, False),
                                             (0, 2000 + 2 * BRIDGE_GAP, False)):
        f = feats(["x", "y", "cpu"], [0, second_host, 1], [1000, second_start, cpu],
                  end=[2000, second_start + 100, cpu], tactics=[(), (), t])
        disp = np.array([ESCALATE, ESCALATE, MONITOR], dtype=object)
        out = _concurrent([[0], [1]], f, disp)
        assert (out == [[0, 2], [1]]) is joins
        assert (disp[2] == ESCALATE) is joins
