"""The shared alert model and ATT&CK table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from phagocyte.alerts import AlertRef, alerts_to_table, level_from_severity, level_rank, make_alert, to_json
from phagocyte.attack import TACTICS, attack_from_tags, tactic, tactic_rank
from phagocyte.schema import EVENT_SCHEMA


def test_sigma_tags_give_techniques_and_tactics_in_order() -> None:
    tech, tac = attack_from_tags(["attack.credential_access", "attack.t1003.001", "attack.T1003.001",
                                  "attack.s0002", "cve.2021-1234", "attack.lateral-movement"])
    assert tech == ["T1003.001"]
    assert [t.id for t in tac] == ["TA0006", "TA0008"]


def test_tactic_lookup_and_rank() -> None:
    assert tactic("TA0010") == tactic("exfiltration") == tactic("Exfiltration")
    assert tactic_rank("credential-access") < tactic_rank("discovery") < tactic_rank("exfiltration")
    assert tactic_rank("reconnaissance") == 0 and tactic_rank("impact") == len(TACTICS) - 1
    assert tactic_rank("nonsense") == -1


def test_alert_copies_the_event_and_points_back() -> None:
    ts = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = {"@timestamp": ts, "event.id": "abc:7", "event.kind": "event", "host.name": "ws1",
             "log.file.path": "/data/x.zip!Security.evtx", "winlog.record_id": 4242, "event.original": "<xml/>"}
    a = make_alert(source="sigma", rule_id="r1", rule_name="Mimikatz", level="high", event=event,
                   tags=["attack.t1003", "attack.credential-access"])
    assert a["event.kind"] == "alert" and a["event.reference"] == "abc:7" and a["host.name"] == "ws1"
    assert "event.original" not in a
    assert a["threat.tactic.name"] == ["Credential Access"] and a["threat.technique.id"] == ["T1003"]
    assert a["event.id"] == make_alert(source="sigma", rule_id="r1", rule_name="x", level=None, event=event)["event.id"]
    assert a["event.id"] != make_alert(source="sigma", rule_id="r2", rule_name="x", level=None, event=event)["event.id"]
    assert str(AlertRef.of(a)) == "Security.evtx:4242"
    j = to_json(a)
    assert j["@timestamp"] == "2024-01-02T03:04:05Z" and j["alert_ref"] == "Security.evtx:4242"


def test_alert_rejects_fields_outside_the_schema() -> None:
    with pytest.raises(ValueError, match="not in the event schema"):
        make_alert(source="email", rule_id="x", rule_name="x", level="low", fields={"email.nope": 1})


def test_alerts_to_table_has_the_event_schema() -> None:
    a = make_alert(source="suricata", rule_id="2001", rule_name="ET SCAN", level=level_from_severity("suricata", 2),
                   fields={"source.ip": "10.0.0.1", "log.file.path": "eve.json", "log.file.line": 3})
    t = alerts_to_table([a, a])
    assert t.schema == EVENT_SCHEMA and t.num_rows == 2
    assert t.column("rule.level").to_pylist() == ["medium", "medium"]
    assert str(AlertRef.of(a)) == "eve.json:3"


@pytest.mark.parametrize(("scale", "value", "level"), [("wazuh", 12, "high"), ("wazuh", 2, "informational"),
                                                       ("suricata", 1, "high"), ("cvss", 9.8, "critical")])
def test_severity_scales(scale: str, value: int, level: str) -> None:
    assert level_from_severity(scale, value) == level
    assert level_rank(level) >= 0
