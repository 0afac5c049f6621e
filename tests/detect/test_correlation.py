"""Sigma correlation rules: windows, groups and ordering on hand-written events, then brute force
and password spraying on real Windows logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from phagocyte.config import load_settings
from phagocyte.detect.engine import Detector, Engine
from tests.conftest import evaldata, run_ingest
from tests.detect.helpers import ruleset, table, win

BASE = """
title: Failed logon
id: 11111111-1111-4111-8111-111111111111
name: failed
logsource:
    product: windows
    service: security
detection:
    sel:
        EventID: 4625
    condition: sel
level: low
---
title: Success logon
id: 22222222-2222-4222-8222-222222222222
name: success
logsource:
    product: windows
    service: security
detection:
    sel:
        EventID: 4624
    condition: sel
level: low
"""


def corr(kind: str, cond: str, *, rules: str = "        - failed", group: str = "        - IpAddress",
         span: str = "5m", generate: str = "false") -> str:
    return (f"title: C {kind}\nid: 33333333-3333-4333-8333-333333333333\ncorrelation:\n    type: {kind}\n"
            f"    rules:\n{rules}\n    group-by:\n{group}\n    timespan: {span}\n{cond}    generate: {generate}\n"
            "level: high\n")


def logon(eid: int, n: int, seconds: float, ip: str = "10.0.0.9", user: str = "bob") -> dict[str, object]:
    return win(eid, {"IpAddress": ip, "TargetUserName": user}, channel="Security", n=n, seconds=seconds)


def _alerts(rs_yaml: list[str], events: list[dict[str, object]], tmp: Path) -> list[dict[str, object]]:
    rs = ruleset(tmp, *rs_yaml)
    assert not rs.errors, rs.errors
    det = Detector(Engine(rs))
    det(table(events))
    return det.alerts()


def test_event_count_per_group_within_the_timespan(tmp_path: Path) -> None:
    events = [logon(4625, i, i * 10) for i in range(6)]  # 6 failures in 50 s from 10.0.0.9
    events += [logon(4625, 100 + i, i * 200, ip="10.0.0.7") for i in range(6)]  # 6 spread over 17 min
    alerts = _alerts([BASE, corr("event_count", "    condition:\n        gte: 5\n")], events, tmp_path)
    corr_alerts = [a for a in alerts if a["rule.name"] == "C event_count"]
    assert len(corr_alerts) == 1  # the 10.0.0.7 failures never reach 5 within 5 minutes
    assert "IpAddress=10.0.0.9" in corr_alerts[0]["message"]
    assert corr_alerts[0]["rule.level"] == "high"
    # generate: false -> the base rule raises no alert of its own
    assert not [a for a in alerts if a["rule.name"] == "Failed logon"]


def test_value_count_counts_distinct_values(tmp_path: Path) -> None:
    same_user = [logon(4625, i, i, user="bob") for i in range(10)]
    sprayed = [logon(4625, 50 + i, i, ip="10.0.0.8", user=f"u{i}") for i in range(5)]
    alerts = _alerts([BASE, corr("value_count", "    condition:\n        gte: 5\n        field: TargetUserName\n")],
                     same_user + sprayed, tmp_path)
    assert [a["message"].split(" for ")[1].split(" ")[0] for a in alerts] == ["IpAddress=10.0.0.8"]


def test_temporal_needs_all_rules_and_temporal_ordered_their_order(tmp_path: Path) -> None:
    both = "        - failed\n        - success"
    fail_then_ok = [logon(4625, 1, 0), logon(4624, 2, 60)]
    ok_then_fail = [logon(4624, 3, 0, ip="10.0.0.5"), logon(4625, 4, 60, ip="10.0.0.5")]
    only_fail = [logon(4625, 5, 0, ip="10.0.0.6")]
    events = fail_then_ok + ok_then_fail + only_fail
    temporal = _alerts([BASE, corr("temporal", "", rules=both)], events, tmp_path)
    assert sorted(a["message"].split("IpAddress=")[1].split(" ")[0] for a in temporal) == ["10.0.0.5", "10.0.0.9"]
    ordered = _alerts([BASE, corr("temporal_ordered", "", rules=both)], events, tmp_path)
    assert [a["message"].split("IpAddress=")[1].split(" ")[0] for a in ordered] == ["10.0.0.9"]


def test_a_correlation_on_a_missing_rule_is_a_rule_error_and_the_rest_run(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, BASE, corr("event_count", "    condition:\n        gte: 5\n", rules="        - nosuch"))
    assert len(rs.rules) == 2 and not rs.correlations
    assert len(rs.errors) == 1 and "nosuch" in rs.errors[0].reason


SPRAY_RULES = [
    BASE,
    corr("event_count", "    condition:\n        gte: 20\n", group="        - IpAddress\n        - TargetUserName",
         span="1m", generate="true"),
    """
title: Explicit credentials
id: 44444444-4444-4444-8444-444444444444
name: explicit
logsource:
    product: windows
    service: security
detection:
    sel:
        EventID: 4648
    condition: sel
level: informational
---
title: Spraying
id: 55555555-5555-4555-8555-555555555555
correlation:
    type: value_count
    rules:
        - explicit
    group-by:
        - IpAddress
    timespan: 5m
    condition:
        gte: 10
        field: TargetUserName
level: high
""",
]


@pytest.mark.evaldata
def test_brute_force_and_password_spraying_on_real_windows_logs(tmp_path: Path) -> None:
    evtx = evaldata("deepbluecli_evtx") / "evtx"
    settings = load_settings(tmp_path / "home")
    _, store = run_ingest([evtx / "smb-password-guessing-security.evtx", evtx / "password-spray.evtx"], settings)
    with store:
        events = store.query("SELECT * FROM events ORDER BY \"@timestamp\"")
    alerts = _alerts(SPRAY_RULES, events.to_pylist(), tmp_path)
    brute = [a for a in alerts if a["rule.name"] == "C event_count"]
    spray = [a for a in alerts if a["rule.name"] == "Spraying"]
    # 3,561 failed logons in under three minutes from 192.168.198.149: one alert per minute-window.
    assert brute and all("IpAddress=192.168.198.149" in a["message"] for a in brute)
    assert all(a["log.file.path"].endswith("smb-password-guessing-security.evtx") for a in brute)
    assert 2 <= len(brute) <= 10
    # 4648 logons with explicit credentials for 41 accounts from one address within 5 minutes.
    assert len(spray) == 2 and all("IpAddress=172.16.144.128" in a["message"] for a in spray)
    # Base rule alerts are kept when the correlation generates (event_count has generate: true).
    assert len([a for a in alerts if a["rule.name"] == "Failed logon"]) == 3561
