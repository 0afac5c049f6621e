"""The case store on SQLite and on a live PostgreSQL: incidents, audit, verdicts, merge, split, tokens."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phagocyte.cases.service import CaseError, CaseStore, JsonlVerdictSink, NotFound


def incident(i: str, score: float, disposition: str = "escalate", **kw: Any) -> dict[str, Any]:
    return {"id": i, "score": score, "disposition": disposition, "alert_refs": [f"{i}.log:{n}" for n in (1, 2)],
            "entities": {"host.name": [f"h-{i}"], "source.ip": ["45.33.32.156"]}, "tactics": ["Discovery"],
            "first_seen": "2024-05-01T10:00:00Z", "last_seen": "2024-05-01T11:00:00Z", "summary": f"incident {i}",
            "reasons": [{"text": "rare rule for this host", "weight": 0.3}], **kw}


@pytest.fixture
def cases(case_url: str, tmp_path: Path) -> CaseStore:
    return CaseStore(case_url, verdicts=JsonlVerdictSink(tmp_path / "verdicts.jsonl"))


def test_queue_is_in_priority_order_and_import_keeps_analyst_work(cases: CaseStore) -> None:
    cases.import_incidents([incident("a", 0.4), incident("b", 0.9), incident("c", 0.99, "monitor"),
                            incident("d", 0.1, "auto_close")], "triage")
    assert [i["id"] for i in cases.queue()] == ["b", "a", "c", "d"]
    cases.update("a", "alice", status="in_progress", assignee="alice")
    res = cases.import_incidents([incident("a", 0.95)], "triage")
    assert res == {"created": 0, "updated": 1}
    a = cases.get("a")
    assert a["status"] == "in_progress" and a["assignee"] == "alice" and a["score"] == 0.95
    assert [i["id"] for i in cases.queue(status="new")] == ["b", "c", "d"]
    assert cases.count() == 4


def test_every_change_is_audited(cases: CaseStore) -> None:
    cases.import_incidents([incident("a", 0.5)], "triage")
    cases.update("a", "bob", status="in_progress")
    cases.comment("a", "bob", "looking")
    actions = [a["action"] for a in cases.audit(incident_id="a")]
    assert actions == ["incident.comment", "incident.status", "incident.created"]
    assert cases.audit(incident_id="a")[1]["detail"] == {"old": "new", "new": "in_progress"}


def test_verdict_resolves_and_reaches_the_learning_sink(cases: CaseStore, tmp_path: Path) -> None:
    cases.import_incidents([incident("a", 0.5)], "triage")
    doc = cases.verdict("a", "carol", "false_positive", "scanner of the IT team")
    assert doc["status"] == "resolved" and doc["verdict"] == "false_positive" and doc["resolved"]
    line = json.loads((tmp_path / "verdicts.jsonl").read_text().splitlines()[0])
    assert line["incident"] == "a" and line["verdict"] == "false_positive"
    assert line["alert_refs"] == ["a.log:1", "a.log:2"]
    with pytest.raises(CaseError):
        cases.verdict("a", "carol", "maybe")
    with pytest.raises(NotFound):
        cases.verdict("zzz", "carol", "true_positive")


def test_merge_and_split(cases: CaseStore) -> None:
    cases.import_incidents([incident("a", 0.5, "monitor"), incident("b", 0.8)], "triage")
    merged = cases.merge(["a", "b"], "dan")
    assert merged["id"] == "a" and merged["disposition"] == "escalate" and merged["score"] == 0.8
    assert merged["alert_refs"] == ["a.log:1", "a.log:2", "b.log:1", "b.log:2"] and merged["alert_count"] == 4
    assert merged["entities"]["host.name"] == ["h-a", "h-b"]
    assert [i["id"] for i in cases.queue()] == ["a"]
    with pytest.raises(CaseError, match="already merged"):
        cases.merge(["a", "b"], "dan")
    new = cases.split("a", ["b.log:1", "b.log:2"], "dan")
    assert new["alert_refs"] == ["b.log:1", "b.log:2"] and cases.get("a")["alert_count"] == 2
    with pytest.raises(CaseError):
        cases.split("a", ["a.log:1", "a.log:2"], "dan")  # all of it: not a split


def test_tokens_are_stored_hashed_and_can_be_revoked(cases: CaseStore) -> None:
    token = cases.create_token("viewer", "wall screen")
    p = cases.verify_token(token)
    assert p is not None and p.role == "viewer" and not p.can("analyst")
    assert cases.verify_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    listed = cases.list_tokens()
    assert token not in json.dumps(listed) and listed[0]["prefix"] == token[:12]
    cases.revoke_token(listed[0]["id"], "admin")
    assert cases.verify_token(token) is None
    with pytest.raises(CaseError):
        cases.create_token("root", "x")


def test_dashboard_and_search(cases: CaseStore) -> None:
    cases.import_incidents([incident("a", 0.5), incident("b", 0.2, "auto_close")], "triage")
    cases.verdict("a", "erin", "true_positive")
    d = cases.dashboard()
    assert d["alerts"] == 4 and d["analyst_items"] == 1 and d["workload_reduction"] == 0.75
    assert d["by_verdict"] == {"true_positive": 1} and d["median_hours_to_resolve"] is not None
    assert [i["id"] for i in cases.search("H-B")] == ["b"]


def test_bad_incident_documents_are_refused(cases: CaseStore) -> None:
    with pytest.raises(CaseError):
        cases.import_incidents([{"score": 1}], "x")
    with pytest.raises(CaseError):
        cases.import_incidents([incident("a", 0.1, "ignore")], "x")
    with pytest.raises(CaseError):
        cases.import_incidents([incident("a", 0.1, first_seen="yesterday")], "x")
    assert cases.count() == 0


def test_schema_is_migrated_once(case_url: str) -> None:
    CaseStore(case_url).import_incidents([incident("a", 0.5)], "x")
    assert CaseStore(case_url).count() == 1  # a second open finds the schema at head, data intact
