"""Playbooks: loading with per-file errors, real webhook and SMTP delivery on loopback, the SSRF guard,
STIX 2.1 / TheHive exports, firewall rendering, local threat intel, approval and audit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import stix2

from phagocyte.cases.service import CaseError, CaseStore, Principal
from phagocyte.respond.adapters import (
    IptablesFirewall,
    NftablesFirewall,
    OutboundPolicy,
    ResponseError,
    ScriptAccountAdmin,
)
from phagocyte.respond.intel import LocalIntel
from phagocyte.respond.playbooks import BUILTIN_DIR, load_playbooks
from phagocyte.respond.service import Responder, ResponseConfig, stix_bundle, thehive_alert

ANALYST = Principal("ana", "analyst")
INC = {"id": "inc-7", "score": 0.9, "disposition": "escalate", "alert_refs": ["Security.evtx:4242"],
       "entities": {"host.name": ["dc01"], "source.ip": ["45.33.32.156", "10.0.0.5"], "user.name": ["CORP\\svc-backup"],
                    "dns.question.name": ["evil-updates.example"],
                    "file.hash.sha256": ["a" * 64]},
       "tactics": ["Credential Access"], "first_seen": "2024-03-01T10:00:00Z", "last_seen": "2024-03-01T10:05:00Z",
       "summary": "Credential dumping on dc01 from 45.33.32.156."}


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}/hook"
    srv.shutdown()


def _responder(tmp_path: Path, **cfg: Any) -> tuple[Responder, CaseStore]:
    cases = CaseStore(f"sqlite:///{tmp_path / 'c.db'}")
    cases.import_incidents([INC], "triage")
    config = ResponseConfig(home=tmp_path, playbook_dirs=[BUILTIN_DIR, tmp_path / "playbooks"], **cfg)
    return Responder(cases, config), cases


def test_builtin_playbooks_load_and_bad_files_are_reported(tmp_path: Path) -> None:
    d = tmp_path / "pb"
    d.mkdir()
    (d / "bad-yaml.yml").write_text("name: [unclosed")
    (d / "bad-action.yml").write_text("name: x\nsteps:\n  - {id: a, action: format-disk}\n")
    (d / "extra.yml").write_text("name: y\nsneaky: 1\nsteps:\n  - {id: a, action: enrich}\n")
    (d / "ok.yml").write_text("name: ok\nsteps:\n  - {id: a, action: enrich}\n")
    books, errors = load_playbooks([BUILTIN_DIR, d])
    assert {"block-source-ip", "notify-and-export", "disable-account", "ok"} <= set(books)
    assert len(errors) == 3 and all(str(d) in e for e in errors)
    assert books["block-source-ip"].destructive and not books["notify-and-export"].destructive


def test_webhook_notification_is_really_delivered(tmp_path: Path, webhook: str) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "tell.yml").write_text(
        f"name: tell\nsteps:\n  - {{id: hook, action: notify, with: {{channel: webhook, url: '{webhook}'}}}}\n")
    allowed = OutboundPolicy(frozenset({"127.0.0.1"}))
    r, _ = _responder(tmp_path, policy=allowed, live=True)
    dry = r.request("inc-7", "tell", ANALYST)
    assert dry["status"] == "done" and not _Hook.received  # dry run: nothing leaves the box
    live = r.request("inc-7", "tell", ANALYST, dry_run=False)
    assert live["status"] == "done", live
    assert _Hook.received == [{"subject": _Hook.received[0]["subject"], "incident": "inc-7", "score": 0.9,
                               "summary": INC["summary"], "tactics": ["Credential Access"]}]


def test_ssrf_guard_refuses_hosts_not_allowed(tmp_path: Path) -> None:
    policy = OutboundPolicy(frozenset({"hooks.example.org"}))
    for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8000/api/tokens",
                "file:///etc/passwd", "http://hooks.example.org.evil.net/", "gopher://hooks.example.org/"):
        with pytest.raises(ResponseError):
            policy.check(url)
    policy.check("https://hooks.example.org/soc")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "meta.yml").write_text(
        "name: meta\nsteps:\n  - {id: hook, action: notify, with: {url: 'http://169.254.169.254/x'}}\n")
    r, _ = _responder(tmp_path, policy=policy, live=True)
    run = r.request("inc-7", "meta", ANALYST, dry_run=False)
    assert run["status"] == "failed" and "not in PHAGO_NOTIFY_ALLOW" in run["steps"][0]["error"]


def test_smtp_notification_is_really_delivered(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    class Keep(Sink):
        mails: ClassVar[list[bytes]] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Keep.mails.append(envelope.content)
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctl = Controller(Keep(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        (tmp_path / "playbooks").mkdir()
        (tmp_path / "playbooks" / "mail.yml").write_text(
            "name: mail\nsteps:\n  - {id: m, action: notify, with: {channel: smtp}}\n")
        r, _ = _responder(tmp_path, policy=OutboundPolicy(frozenset({"127.0.0.1"})), live=True,
                          smtp=f"127.0.0.1:{port}:phago@corp.example:soc@corp.example")
        run = r.request("inc-7", "mail", ANALYST, dry_run=False)
        assert run["status"] == "done", run
        assert b"inc-7" in Keep.mails[0] and b"Subject: [phagocyte] incident inc-7" in Keep.mails[0]
    finally:
        ctl.stop()


def test_stix_bundle_is_valid_stix_2_1() -> None:
    doc = stix_bundle(INC)
    parsed = stix2.parse(json.dumps(doc), allow_custom=False)
    patterns = sorted(o.pattern for o in parsed.objects)
    assert "[ipv4-addr:value = '45.33.32.156']" in patterns
    assert "[domain-name:value = 'evil-updates.example']" in patterns
    assert f"[file:hashes.'SHA-256' = '{'a' * 64}']" in patterns
    assert all(o.spec_version == "2.1" for o in parsed.objects)
    urls = stix_bundle({"id": "x", "entities": {"url.domain": ["evil.example"], "url.full": ["http://evil.example/a"]}})
    assert sorted(o["pattern"] for o in urls["objects"]) == [
        "[domain-name:value = 'evil.example']", "[url:value = 'http://evil.example/a']"], "url.domain is a domain"


def test_thehive_alert_shape() -> None:
    a = thehive_alert(INC)
    assert a["sourceRef"] == "inc-7" and a["severity"] == 4 and a["source"] == "phagocyte"
    assert {"dataType": "ip", "data": "45.33.32.156"} in a["observables"]
    assert {"dataType": "hash", "data": "a" * 64} in a["observables"]


def test_firewall_rendering_and_refusals() -> None:
    nft = NftablesFirewall().render(["45.33.32.156", "2001:db8::1", "45.33.32.156"])
    assert "ip saddr { 45.33.32.156 } drop" in nft and "ip6 saddr { 2001:db8::1 } drop" in nft
    ipt = IptablesFirewall().commands(["45.33.32.156"])
    assert ipt[0] == ["iptables", "-I", "INPUT", "-s", "45.33.32.156", "-j", "DROP", "-m", "comment", "--comment",
                      "phagocyte"]
    for bad in ("127.0.0.1", "0.0.0.0", "1.2.3.4; rm -rf /", "$(reboot)"):
        with pytest.raises(ResponseError):
            NftablesFirewall().render([bad])
    with pytest.raises(ResponseError):
        ScriptAccountAdmin().render("bob'; Remove-Item C:\\ -Recurse; '")
    assert ScriptAccountAdmin().render("CORP\\svc-backup") == "Disable-ADAccount -Identity 'svc-backup'\n"


def test_block_playbook_blocks_only_external_addresses_after_approval(tmp_path: Path) -> None:
    r, cases = _responder(tmp_path)
    run = r.request("inc-7", "block-source-ip", ANALYST)
    assert run["status"] == "awaiting_approval"
    preview = run["steps"][1]["preview"]
    assert "45.33.32.156" in preview and "10.0.0.5" not in preview
    with pytest.raises(CaseError):
        r.approve(run["id"], Principal("viewer", "viewer"))
    with pytest.raises(CaseError, match="live response is disabled"):
        r.request("inc-7", "block-source-ip", ANALYST, dry_run=False)
    done = r.approve(run["id"], ANALYST)
    assert done["status"] == "done" and done["steps"][1]["output"]["would"] == preview
    assert [a["action"] for a in cases.audit(incident_id="inc-7")][:3] == ["playbook.run", "playbook.approve",
                                                                            "playbook.request"]
    rejected = r.request("inc-7", "disable-account", ANALYST)
    assert r.reject(rejected["id"], ANALYST, "not yet")["status"] == "rejected"


def test_local_intel_from_stix_and_misp(tmp_path: Path) -> None:
    intel = tmp_path / "intel"
    intel.mkdir()
    (intel / "feed.json").write_text(json.dumps(stix_bundle({"id": "x", "entities": {"ip": ["45.33.32.156"]}})))
    (intel / "misp.json").write_text(json.dumps({"Event": {"info": "APT test", "Attribute": [
        {"type": "domain", "value": "evil-updates.example"},
        {"type": "filename|sha256", "value": "x.exe|" + "a" * 64}]}}))
    (intel / "broken.json").write_text("{not json")
    li = LocalIntel([intel])
    hits = li.lookup(INC["entities"])
    assert {(h["value"], h["feed"]) for h in hits} == {("45.33.32.156", "feed.json"),
                                                       ("evil-updates.example", "misp.json"), ("a" * 64, "misp.json")}
    assert len(li.errors) == 1 and "broken.json" in li.errors[0]
    r, _ = _responder(tmp_path, intel_paths=[intel])
    run = r.request("inc-7", "notify-and-export", ANALYST)
    assert run["status"] == "done" and len(run["steps"][0]["output"]["hits"]) == 3
    exported = json.loads(Path(run["steps"][1]["output"]["file"]).read_text())
    assert exported["type"] == "bundle"
