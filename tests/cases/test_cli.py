"""`phago token` and `phago cases` from the shell (in-process, real SQLite store)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from phagocyte.cases.service import CaseStore
from phagocyte.cli.app import app

runner = CliRunner()


def test_token_create_list_revoke(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path)]
    res = runner.invoke(app, ["token", "create", "--role", "analyst", "--name", "alice", *home])
    assert res.exit_code == 0, res.output
    token = res.output.strip()
    assert token.startswith("phago_") and len(token) > 40
    p = CaseStore(f"sqlite:///{tmp_path / 'cases.db'}").verify_token(token)
    assert p is not None and (p.name, p.role) == ("alice", "analyst")
    listed = runner.invoke(app, ["token", "list", *home]).output
    assert "alice" in listed and token not in listed
    assert runner.invoke(app, ["token", "create", "--role", "root", *home]).exit_code == 1
    assert runner.invoke(app, ["token", "revoke", "1", *home]).exit_code == 0
    assert CaseStore(f"sqlite:///{tmp_path / 'cases.db'}").verify_token(token) is None


def test_cases_import_and_list(tmp_path: Path) -> None:
    f = tmp_path / "incidents.jsonl"
    f.write_text(json.dumps({"id": "i1", "score": 0.8, "disposition": "escalate", "summary": "s",
                             "title": "Brute force on web1", "alert_refs": ["auth.log:3"]}) + "\n")
    home = ["--home", str(tmp_path)]
    res = runner.invoke(app, ["cases", "import", str(f), *home])
    assert res.exit_code == 0 and "1 incidents created" in res.output
    assert "Brute force on web1" in runner.invoke(app, ["cases", "list", *home]).output
    f.write_text("{broken\n")
    assert runner.invoke(app, ["cases", "import", str(f), *home]).exit_code == 1


def test_run_ends_with_incidents_in_the_case_store_and_an_html_report(tmp_path: Path) -> None:
    from tests.conftest import DEMO

    res = runner.invoke(app, ["run", "--home", str(tmp_path), str(DEMO)])
    assert res.exit_code == 0, res.output
    reports = list((tmp_path / "reports").glob("run-*.html"))
    assert len(reports) == 1 and "Report:" in res.output
    incidents = [json.loads(x) for x in (tmp_path / "reports" / "incidents.jsonl").read_text().splitlines()]
    queue = CaseStore(f"sqlite:///{tmp_path / 'cases.db'}").queue(limit=500)
    assert incidents and sorted(i["alert_count"] for i in queue) == sorted(i["alert_count"] for i in incidents)
    html = reports[0].read_text()
    assert all(f'id="{i["id"]}"' in html for i in incidents)
    again = runner.invoke(app, ["run", "--home", str(tmp_path), str(DEMO)])  # nothing new: same cases
    assert again.exit_code == 0 and CaseStore(f"sqlite:///{tmp_path / 'cases.db'}").count() == len(queue)
    assert all(ref in html for i in incidents for ref in i["alert_refs"][:3])


def test_verdicts_in_the_case_store_teach_triage_on_the_next_run(tmp_path: Path) -> None:
    from phagocyte.cases.service import JsonlVerdictSink
    from phagocyte.triage.score import RiskModel
    from tests.conftest import DEMO

    home = ["--home", str(tmp_path)]
    assert runner.invoke(app, ["run", *home, str(DEMO)]).exit_code == 0
    cases = CaseStore(f"sqlite:///{tmp_path / 'cases.db'}", verdicts=JsonlVerdictSink(tmp_path / "verdicts.jsonl"))
    queue = cases.queue(limit=100)
    assert len(queue) >= 2
    cases.verdict(queue[0]["id"], "ana", "true_positive")
    cases.verdict(queue[-1]["id"], "ana", "false_positive")
    res = runner.invoke(app, ["run", *home, str(DEMO)])
    assert res.exit_code == 0 and "learned" in res.output, res.output
    model = RiskModel.load(tmp_path / "triage-model")
    assert model.verdicts >= 2
    again = runner.invoke(app, ["run", *home, str(DEMO)])
    assert "learned" not in again.output  # each verdict is learned once
    assert RiskModel.load(tmp_path / "triage-model").verdicts == model.verdicts
