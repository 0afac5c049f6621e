"""The `phago` command, driven in-process (nothing mocked): output, formats and exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phagocyte.cli.app import app
from tests.conftest import DEMO

runner = CliRunner()


def _home(tmp_path: Path) -> list[str]:
    return ["--home", str(tmp_path / "home")]


def test_help_lists_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("ingest", "run", "stats", "query", "formats", "version"):
        assert cmd in res.output


def test_run_on_the_demo_stores_everything_and_writes_a_report(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", *_home(tmp_path), str(DEMO)])
    assert res.exit_code == 0, res.output
    assert "Report:" in res.output
    reports = list((tmp_path / "home" / "reports").glob("run-*.md"))
    assert len(reports) == 1 and "events stored" in reports[0].read_text()
    data = json.loads(next((tmp_path / "home" / "reports").glob("run-*.json")).read_text())
    assert data["ingest"]["quarantined"] == 0 and data["ingest"]["unrecognised"] == 0
    logs = [f for f in DEMO.iterdir() if f.suffix != ".eml"]
    lines = sum(1 for f in logs for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#"))
    assert data["ingest"]["events"] == lines
    assert data["ingest"]["analysed"] == 1, "the demo's e-mail goes to the e-mail analyser, not to quarantine"
    verdicts = [json.loads(x) for x in (tmp_path / "home" / "reports" / "artefacts.jsonl").read_text().splitlines()]
    assert [(v["analyser"], v["label"]) for v in verdicts] == [("email", "phishing")]
    incidents = [json.loads(x) for x in (tmp_path / "home" / "reports" / "incidents.jsonl").read_text().splitlines()]
    ws = next(i for i in incidents if "ws-042.corp.example" in i["entities"].get("host.name", []))
    assert "E-mail judged phishing" in ws["rules"], "the phishing mail to j.doe joins the incident on her workstation"
    assert "Malicious powershell code" in ws["rules"], "the encoded PowerShell command line is judged too"
    (html,) = (tmp_path / "home" / "reports").glob("run-*.html")
    assert html.stem == reports[0].stem, "one run, one stamp: the HTML report is named like the run reports"
    assert "Mail and code" in html.read_text() and "mail-j.doe-invoice.eml" in html.read_text()
    assert "mail-j.doe-invoice.eml:1" in ws["alert_refs"], "the mail is referenced by file and line"


def test_query_formats(tmp_path: Path) -> None:
    runner.invoke(app, ["ingest", *_home(tmp_path), str(DEMO)])
    sql = 'select "event.dataset" ds, count(*) n from events group by 1 order by 1'
    res = runner.invoke(app, ["query", *_home(tmp_path), "--format", "json", sql])
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows and all(set(r) == {"ds", "n"} for r in rows)
    res = runner.invoke(app, ["query", *_home(tmp_path), "--format", "csv", sql])
    parsed = list(csv.DictReader(io.StringIO(res.output)))
    assert [int(r["n"]) for r in parsed] == [r["n"] for r in rows]
    res = runner.invoke(app, ["query", *_home(tmp_path), sql])
    assert res.exit_code == 0 and rows[0]["ds"] in res.output


@pytest.mark.parametrize("sql", ["drop view events", "copy events to '/tmp/x.csv'"])
def test_query_refuses_writes(tmp_path: Path, sql: str) -> None:
    runner.invoke(app, ["ingest", *_home(tmp_path), str(DEMO)])
    res = runner.invoke(app, ["query", *_home(tmp_path), sql])
    assert res.exit_code == 1 and "only SELECT" in res.output


def test_exit_code_3_when_something_is_quarantined(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"@timestamp": "2024-01-01T00:00:00Z", "message": "ok"}\n{not json\n')
    res = runner.invoke(app, ["ingest", *_home(tmp_path), "--json", str(bad)])
    assert res.exit_code == 3
    res = runner.invoke(app, ["query", *_home(tmp_path), "--format", "json", "select line, reason from quarantine"])
    (q,) = [json.loads(x) for x in res.output.splitlines()]
    assert q["line"] == 2 and q["reason"].startswith("not JSON")


def test_stats_and_formats(tmp_path: Path) -> None:
    res = runner.invoke(app, ["stats", *_home(tmp_path)])
    assert res.exit_code == 0 and "no store" in res.output
    runner.invoke(app, ["ingest", *_home(tmp_path), str(DEMO)])
    res = runner.invoke(app, ["stats", *_home(tmp_path)])
    assert res.exit_code == 0 and "events from 4 sources" in res.output
    res = runner.invoke(app, ["formats"])
    assert "evtx" in res.output


def test_unknown_format_option_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["ingest", *_home(tmp_path), "--format", "nope", str(DEMO)])
    assert res.exit_code == 2 and "unknown format" in res.output
