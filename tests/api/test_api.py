"""The API end to end on SQLite and PostgreSQL: ingest, alerts, search, incidents, verdicts, playbooks."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import Api, make_api
from tests.conftest import DEMO, FIXTURES

INC = {"id": "inc-1", "score": 0.93, "disposition": "escalate", "alert_refs": ["eve.json:3", "eve.json:9"],
       "entities": {"host.name": ["web1"], "source.ip": ["45.33.32.156"], "user.name": ["admin"]},
       "tactics": ["Credential Access", "Discovery"], "first_seen": "2024-01-01T00:00:00Z",
       "last_seen": "2024-01-01T01:00:00Z", "summary": "Password guessing then a login.",
       "reasons": [{"text": "tactic chain", "weight": 0.4}]}


def _import(api: Api, *docs: dict[str, object]) -> None:
    body = "".join(json.dumps(d) + "\n" for d in docs)
    r = api.client.post("/api/incidents/import", content=body, headers=api.h("analyst"))
    assert r.status_code == 200, r.text


def test_incident_workflow(api: Api) -> None:
    c, h = api.client, api.h("analyst")
    _import(api, INC, {**INC, "id": "inc-2", "score": 0.2, "disposition": "monitor"})
    q = c.get("/api/incidents", headers=api.h("viewer")).json()
    assert q["total"] == 2 and [i["id"] for i in q["items"]] == ["inc-1", "inc-2"]
    assert c.patch("/api/incidents/inc-1", json={"status": "in_progress", "assignee": "analyst-user"},
                   headers=h).json()["status"] == "in_progress"
    assert c.post("/api/incidents/inc-1/comments", json={"text": "on it"}, headers=h).status_code == 200
    v = c.post("/api/incidents/inc-1/verdict", json={"verdict": "true_positive", "note": "confirmed"}, headers=h)
    assert v.status_code == 200 and v.json()["status"] == "resolved"
    tl = c.get("/api/incidents/inc-1/timeline", headers=api.h("viewer")).json()["items"]
    assert [a["action"] for a in tl][:3] == ["incident.verdict", "incident.comment", "incident.assign"]
    assert all(a["actor"] == "analyst-user" for a in tl[:3])
    m = c.post("/api/incidents/merge", json={"incident_ids": ["inc-1", "inc-2"]}, headers=h).json()
    assert m["alert_count"] == 2  # the same two refs: united, not doubled
    assert c.get("/api/incidents/nope", headers=h).status_code == 404
    assert c.get("/api/dashboard", headers=api.h("viewer")).json()["by_verdict"] == {"true_positive": 1}


def test_strict_validation(sqlite_api: Api) -> None:
    c, h = sqlite_api.client, sqlite_api.h("analyst")
    _import(sqlite_api, INC)
    assert c.patch("/api/incidents/inc-1", json={"status": "done"}, headers=h).status_code == 422
    assert c.patch("/api/incidents/inc-1", json={"sneaky": 1}, headers=h).status_code == 422
    assert c.post("/api/incidents/inc-1/verdict", json={"verdict": "maybe"}, headers=h).status_code == 422
    assert c.get("/api/incidents?limit=100000", headers=h).status_code == 422
    r = c.post("/api/incidents/import", content=b'{"id": "x"}\nnot json\n', headers=h)
    assert r.status_code == 422 and "line 2" in r.json()["detail"]
    assert c.get("/api/incidents", headers=h).json()["total"] == 1  # nothing half-imported


def test_body_size_limit(tmp_path: Path) -> None:
    api = make_api(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "h", api_max_body=1000)
    r = api.client.post("/api/ingest", content=b'{"message": "x"}\n' * 200, headers=api.h("analyst"))
    assert r.status_code == 413


def test_ingest_then_alerts_and_search(sqlite_api: Api) -> None:
    c = sqlite_api.client
    body = (FIXTURES / "suricata_eve" / "eve.json").read_bytes()
    r = c.post("/api/ingest", content=body, headers=sqlite_api.h("analyst"))
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["events"] > 0 and not first["duplicate"]
    again = c.post("/api/ingest", content=body, headers=sqlite_api.h("analyst")).json()
    assert again["events"] == 0 and again["duplicate"]  # idempotent
    alerts = c.get("/api/alerts", headers=sqlite_api.h("viewer")).json()["items"]
    expected = sum(1 for line in body.splitlines() if line.strip() and json.loads(line).get("event_type") == "alert")
    assert len(alerts) == expected > 0
    a = alerts[0]
    assert a["rule.name"] and a["log.file.path"].endswith(".ndjson") and a["log.file.line"] >= 1
    ip = a["source.ip"]
    found = c.get("/api/search", params={"q": ip}, headers=sqlite_api.h("viewer")).json()
    assert any(e["source.ip"] == ip or e["destination.ip"] == ip for e in found["events"])
    by_rule = c.get("/api/alerts", params={"rule": a["rule.name"]}, headers=sqlite_api.h("viewer")).json()["items"]
    assert by_rule and all(x["rule.name"] == a["rule.name"] for x in by_rule)


def test_admin_manages_tokens(sqlite_api: Api) -> None:
    c, h = sqlite_api.client, sqlite_api.h("admin")
    new = c.post("/api/tokens", json={"role": "viewer", "name": "soc-wall"}, headers=h).json()["token"]
    assert c.get("/api/me", headers={"Authorization": f"Bearer {new}"}).json() == {"name": "soc-wall",
                                                                                  "role": "viewer"}
    listed = c.get("/api/tokens", headers=h).json()["items"]
    assert new not in json.dumps(listed)
    tid = next(t["id"] for t in listed if t["name"] == "soc-wall")
    assert c.delete(f"/api/tokens/{tid}", headers=h).status_code == 200
    assert c.get("/api/me", headers={"Authorization": f"Bearer {new}"}).status_code == 401
    audit = c.get("/api/audit", headers=h).json()["items"]
    assert [a["action"] for a in audit[:2]] == ["token.revoke", "token.create"]


def test_playbook_run_needs_approval_and_is_idempotent(api: Api) -> None:
    c, h = api.client, api.h("analyst")
    _import(api, INC)
    names = {p["name"] for p in c.get("/api/playbooks", headers=api.h("viewer")).json()["items"]}
    assert {"block-source-ip", "notify-and-export", "disable-account"} <= names
    run = c.post("/api/incidents/inc-1/playbooks/block-source-ip/runs", json={"dry_run": True}, headers=h).json()
    assert run["status"] == "awaiting_approval" and run["dry_run"]
    assert "45.33.32.156" in run["steps"][1]["preview"] and "table inet phagocyte" in run["steps"][1]["preview"]
    again = c.post("/api/incidents/inc-1/playbooks/block-source-ip/runs", json={}, headers=h).json()
    assert again["id"] == run["id"] and again["existing"]
    live = c.post("/api/incidents/inc-1/playbooks/block-source-ip/runs", json={"dry_run": False}, headers=h)
    assert live.status_code == 409  # live response is off unless PHAGO_RESPONSE_LIVE=1
    done = c.post(f"/api/runs/{run['id']}/approve", headers=h).json()
    assert done["status"] == "done" and done["approved_by"] == "analyst-user"
    assert done["steps"][1]["output"]["dry_run"] is True
    assert c.post(f"/api/runs/{run['id']}/approve", headers=h).status_code == 409
    actions = [a["action"] for a in c.get("/api/incidents/inc-1/timeline", headers=h).json()["items"]]
    assert actions[:3] == ["playbook.run", "playbook.approve", "playbook.request"]


def test_alerts_raised_by_detection_are_served(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from phagocyte.cli.app import app

    home = tmp_path / "home"
    res = CliRunner().invoke(app, ["run", "--home", str(home), str(DEMO)])
    assert res.exit_code in (0, 3), res.output
    api = make_api(f"sqlite:///{tmp_path / 'c.db'}", home)
    alerts = api.client.get("/api/alerts", params={"limit": 1000}, headers=api.h("viewer")).json()["items"]
    q = api.app.state.store().query
    raised = q("select count(*) as n from alerts").column("n")[0].as_py()
    imported = q("select count(*) as n from events where \"event.kind\" = 'alert'").column("n")[0].as_py()
    passthrough = q("select count(*) as n from alerts where \"event.reference\" in "
                    "(select \"event.id\" from events where \"event.kind\" = 'alert')").column("n")[0].as_py()
    assert raised > 0 and imported > 0 and passthrough > 0  # the demo has all three kinds
    assert len(alerts) == raised + imported - passthrough  # every alert once
    assert all(a["rule.name"] and a["log.file.path"] for a in alerts)
