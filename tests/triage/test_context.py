"""The lone context of a group and its rule's verdicts there (`lone_prior`), on a hand-written stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from phagocyte.triage.features import BASE_FEATURES, context_key, group_features
from phagocyte.triage.learn import apply_verdicts
from phagocyte.triage.score import RiskModel
from phagocyte.triage.sources import AlertFrame, load_alerts
from phagocyte.triage.suppress import Groups, suppress
from tests.triage.conftest import HEADER

DAY = 86400
T0 = 1_700_006_400  # a midnight (UTC)
RULE = "A-Aud-Com4"
NAME = "AMiner: New service_start parameter combination in Audit logs."
LONE = BASE_FEATURES.index("lone_prior")


def _frame(tmp_path: Path) -> tuple[AlertFrame, Groups]:
    rows = [(t, "Wazuh: Dovecot Authentication Success.", "10.0.0.2", "busy", "W-Sys-Dov", "false_positive", "-")
            for t in range(T0, T0 + 3 * DAY, 600)]
    r_at = [
        (T0 + 600, "quiet"),                      # day 1: the baseline is not learned yet
        (T0 + DAY + 3600 + 60, "busy"),           # on a busy host
        (T0 + DAY + 5, "quiet"), (T0 + DAY + 9, "other"),  # a fleet-wide wave
        (T0 + 2 * DAY + 600, "quiet"),            # at a time of day it fired on this host before
        (T0 + 2 * DAY + 14 * 3600, "quiet"),      # lone
    ]
    rows += [(t, NAME, "10.0.0.9", h, RULE, "false_positive", "-") for t, h in r_at]
    rows.sort()
    p = tmp_path / "ctx_alerts.txt"
    p.write_text(HEADER + "\n" + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n")
    frame, _ = load_alerts([p], "ait-ads")
    groups = suppress(frame, RiskModel.untrained().suppression)
    return frame, groups


def test_only_a_group_alone_on_its_host_outside_waves_and_schedules_is_lone(tmp_path: Path) -> None:
    frame, groups = _frame(tmp_path)
    f = group_features(frame, groups, {})
    mine = np.nonzero(f.rule == f"ait_ads:{RULE}")[0]
    assert len(mine) == 6
    assert [bool(f.lone[i]) for i in mine[np.argsort(f.start[mine])]] == [False, False, False, False, False, True]
    assert not f.X[:, LONE].any()  # no verdicts in the context: no shift


def test_lone_prior_is_the_shift_of_the_rules_verdicts_on_lone_groups(tmp_path: Path) -> None:
    frame, groups = _frame(tmp_path)
    rule = f"ait_ads:{RULE}"
    stats = {rule: (3.0, 30.0)}  # mostly noise overall ...
    f = group_features(frame, groups, stats, context_stats={context_key(rule): (3.0, 0.0)})
    lone = np.nonzero(f.lone)[0]
    assert len(lone) == 1 and f.X[lone[0], LONE] > 2.0  # ... but an attack each time it was lone
    assert (f.X[~f.lone, LONE] == 0).all()
    noise = group_features(frame, groups, stats, context_stats={context_key(rule): (0.0, 5.0)})
    assert noise.X[lone[0], LONE] < 0


def test_verdicts_on_lone_groups_are_counted_and_kept(tmp_path: Path) -> None:
    frame, groups = _frame(tmp_path)
    f = group_features(frame, groups, {})
    lone = int(np.nonzero(f.lone)[0][0])
    busy = int(np.nonzero(f.rule == "ait_ads:W-Sys-Dov")[0][0])
    new, _, X, y = apply_verdicts(RiskModel.untrained(), frame, {lone: "true_positive", busy: "false_positive"})
    assert new.context_stats == {context_key(f"ait_ads:{RULE}"): (1.0, 0.0)}
    new.save(tmp_path / "m", X, y)
    assert RiskModel.load(tmp_path / "m").context_stats == new.context_stats
