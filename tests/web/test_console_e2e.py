"""The console in a real headless Chromium (Debian's, driven by Playwright): log in with a token, open the
top incident, give a verdict, approve a dry-run playbook, see the audit entries. Screenshots are kept in
`artifacts/screenshots/` (CI keeps that folder)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phagocyte.api.app import create_app
from phagocyte.config import load_settings
from tests.conftest import REPO, missing_service

SHOTS = REPO / "artifacts" / "screenshots"
INCIDENTS = [
    {"id": "inc-top", "score": 0.97, "disposition": "escalate", "alert_refs": ["Security.evtx:4242", "Sysmon.evtx:17"],
     "entities": {"host.name": ["dc01.corp.example"], "source.ip": ["45.33.32.156"], "user.name": ["svc-backup"]},
     "tactics": ["Discovery", "Credential Access", "Lateral Movement"], "first_seen": "2024-03-01T10:00:00Z",
     "last_seen": "2024-03-01T10:05:00Z", "title": "Credential dumping then lateral movement from 45.33.32.156",
     "summary": "An external address logged on to dc01 as svc-backup, dumped LSASS and moved to two hosts.",
     "reasons": [{"text": "tactic chain discovery → credential access → lateral movement", "weight": 0.41}],
     "evidence": [{"ref": "Security.evtx:4242", "@timestamp": "2024-03-01T10:00:00Z", "rule.name": "Logon from "
                   "external address", "rule.level": "medium", "host.name": "dc01.corp.example",
                   "source.ip": "45.33.32.156"},
                  {"ref": "Sysmon.evtx:17", "@timestamp": "2024-03-01T10:02:00Z", "rule.name": "LSASS access",
                   "rule.level": "high", "host.name": "dc01.corp.example"}]},
    {"id": "inc-low", "score": 0.31, "disposition": "monitor", "alert_refs": ["eve.json:5"],
     "entities": {"source.ip": ["10.1.1.9"]}, "tactics": ["Discovery"], "summary": "A port scan inside the LAN."},
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        missing_service("Debian chromium is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing_service("playwright is not installed")
    return str(path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    import uvicorn

    settings = load_settings(tmp_path / "home")
    app = create_app(settings)
    app.state.cases.import_incidents(INCIDENTS, "triage")
    token = app.state.cases.create_token("analyst", "e2e-analyst")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", token
    srv.should_exit = True
    t.join(5)


def test_analyst_journey_in_chromium(server: tuple[str, str]) -> None:
    exe = _chromium()
    from playwright.sync_api import expect, sync_playwright

    base, token = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        page.goto(base + "/")
        assert "/login" in page.url
        page.fill("#token", token)
        page.click("#login")
        page.wait_for_selector("#queue")
        page.screenshot(path=str(SHOTS / "1-queue.png"), full_page=True)
        first = page.locator("#queue a.incident-link").first
        expect(first).to_have_text(INCIDENTS[0]["title"])
        page.keyboard.press("j")  # keyboard: select the top incident, open it
        expect(page.locator("#queue tbody tr.sel")).to_have_count(1)
        page.keyboard.press("o")
        page.wait_for_selector("#summary")
        expect(page.locator("#summary")).to_contain_text("dumped LSASS")
        page.screenshot(path=str(SHOTS / "2-incident.png"), full_page=True)
        page.click("#v-tp")
        expect(page.locator("#verdict")).to_have_text("true positive")
        assert dialogs == ["True positive?"]  # destructive buttons ask first
        page.select_option("#playbook", "block-source-ip")
        page.click("#run-playbook")
        expect(page.locator(".run .run-status").first).to_have_text("awaiting approval")
        page.click(".run button.approve")
        expect(page.locator(".run .run-status").first).to_have_text("done")
        audit = page.locator("#audit-list")
        expect(audit).to_contain_text("playbook.approve")
        expect(audit).to_contain_text("incident.verdict")
        expect(audit).to_contain_text("e2e-analyst")
        page.screenshot(path=str(SHOTS / "3-after-approval.png"), full_page=True)
        page.goto(base + "/dashboard")
        expect(page.locator(".kpis")).to_contain_text("workload reduction")
        page.screenshot(path=str(SHOTS / "4-dashboard.png"), full_page=True)
        browser.close()
    assert (SHOTS / "3-after-approval.png").stat().st_size > 10_000
