"""Wazuh alerts.json reader: real AIT-LDS alerts, hand-written alerts of each kind, bad input, fuzz."""

from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.reader import get_reader
from tests.conftest import FIXTURES, assert_event, evaldata, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "wazuh" / "alerts.json"
_GOOD = FIX.read_text().splitlines()


def _by_line(store, path: Path | str) -> dict[int, dict]:
    out = rows(store, f"select * from events where \"log.file.path\" = '{path}'")
    return {r["log.file.line"]: r for r in out}


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.evaldata
def test_real_alerts_every_line_stored(settings) -> None:
    files = sorted((evaldata("ait_ldsv1_wazuh_alerts") / "data" / "ossec").glob("*.json"))
    assert [f.name for f in files] == ["ossec_insect.json", "ossec_spiral.json"]
    report, store = run_ingest(files, settings)
    expected = {str(f): sum(1 for ln in f.read_bytes().split(b"\n") if ln.strip()) for f in files}
    assert sum(expected.values()) == 1362
    assert report.quarantined == 0 and report.by_reader() == {"wazuh": 1362}
    got = {r["p"]: r["n"] for r in rows(store, 'select "log.file.path" p, count(*) n from events group by 1')}
    assert got == expected
    agg = rows(store, 'select count(*) n, count("@timestamp") ts, count("rule.id") rid, count("message") msg '
                      'from events where "event.kind" = \'alert\' and "event.dataset" = \'wazuh.alerts\'')[0]
    assert agg == {"n": 1362, "ts": 1362, "rid": 1362, "msg": 1362}
    # No destination.ip keeps a ':port' suffix (fast.log alerts write "ip:port").
    assert rows(store, 'select count(*) n from events where "destination.ip" like \'%:%\'')[0]["n"] == 0


@pytest.mark.evaldata
def test_real_alert_fields(settings) -> None:
    root = evaldata("ait_ldsv1_wazuh_alerts") / "data" / "ossec"
    insect, spiral = root / "ossec_insect.json", root / "ossec_spiral.json"
    _, store = run_ingest([insect, spiral], settings)
    ins = _by_line(store, insect)
    assert_event(ins[1], {  # Suricata fast.log through the snort decoder: dstip "192.168.10.21:80"
        "@timestamp": datetime(2020, 3, 4, 13, 55, 5, 224939, tzinfo=UTC),
        "event.kind": "alert", "event.module": "wazuh", "event.severity": 8,
        "rule.id": "20100", "rule.name": "First time this IDS alert is generated.", "rule.ruleset": "wazuh",
        "rule.category": "ids,fts", "tags": ["ids", "fts"],
        "event.category": ["intrusion_detection", "network"],
        "source.ip": "192.168.10.18", "destination.ip": "192.168.10.21", "destination.port": 80,
        "host.name": "user-0", "observer.name": "user-0", "observer.product": "Wazuh",
        "related.ip": ["192.168.10.18", "192.168.10.21"],
    })
    assert ins[1]["message"].startswith("03/04/2020-13:55:05.224939  [**] [1:2221028:1]")
    assert_event(ins[3], {  # Suricata EVE through the JSON decoder
        "rule.id": "86601", "event.severity": 3, "source.ip": "192.168.10.18", "source.port": 41410,
        "destination.ip": "192.168.10.21", "destination.port": 80, "network.transport": "tcp",
        "url.domain": "mail.insect.com", "url.path": "/./cfide/./Administrator/./startstop.html",
        "http.request.method": "GET", "http.response.status_code": 302,
        "user_agent.original": "Mozilla/5.00 (Nikto/2.1.5) (Evasions:2) (Test:001013)",
    })
    assert_event(ins[16], {
        "@timestamp": datetime(2020, 3, 4, 14, 14, 30, tzinfo=UTC), "rule.id": "5503",
        "rule.name": "PAM: User login failed.", "event.severity": 5,
        "event.category": ["authentication", "network"], "event.outcome": "failure", "event.provider": "auth",
        "user.name": "violet", "source.user.name": "violet", "source.ip": "127.0.0.1",
        "message": "Mar  4 14:14:30 mail auth: pam_unix(dovecot:auth): authentication failure; "
                   "logname= uid=0 euid=0 tty=dovecot ruser=violet rhost=127.0.0.1  user=violet",
    })
    spi = _by_line(store, spiral)
    assert_event(spi[24], {"rule.id": "5551", "event.severity": 10, "event.outcome": "failure",
                           "@timestamp": datetime(2020, 3, 4, 18, 23, 46, tzinfo=UTC)})
    assert_event(spi[53], {"rule.id": "9705", "user.name": "giovanni", "source.ip": "127.0.0.1",
                           "destination.ip": "127.0.0.1", "event.provider": "dovecot"})
    assert json.loads(spi[53]["event.original"])["id"] == "1588005836.10140971"


# --- hand-written fixtures ---------------------------------------------------------------------


@pytest.fixture
def alerts(settings) -> dict[int, dict]:
    report, store = run_ingest([FIX], settings)
    assert report.quarantined == 0 and report.by_reader() == {"wazuh": len(_GOOD)}
    return _by_line(store, FIX)


def test_file_integrity_and_mitre(alerts) -> None:
    assert_event(alerts[1], {
        "@timestamp": datetime(2024, 6, 1, 8, 0, 0, 123000, tzinfo=UTC), "rule.id": "550",
        "event.severity": 7, "threat.technique.id": ["T1565.001"], "threat.tactic.name": ["Impact"],
        "file.path": "/etc/passwd", "file.name": "passwd",
        "file.hash.md5": "0cc175b9c0f1b6a831c399e269772661",
        "file.hash.sha1": "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8",
        "file.hash.sha256": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
        "event.action": "modified", "event.type": ["change"], "event.category": ["file"],
        "user.name": "root", "host.name": "web-01", "host.ip": "192.0.2.21", "observer.name": "wazuh-manager",
    })


def test_sshd_success_with_offset(alerts) -> None:
    assert_event(alerts[2], {
        "@timestamp": datetime(2024, 6, 1, 12, 0, 1, tzinfo=UTC), "event.outcome": "success",
        "event.category": ["authentication", "network"], "user.name": "deploy", "source.ip": "198.51.100.9",
        "source.port": 50122, "threat.technique.id": ["T1078", "T1021"], "event.provider": "sshd",
        "threat.tactic.name": ["Defense Evasion", "Persistence", "Privilege Escalation", "Initial Access",
                               "Lateral Movement"],
    })


def test_windows_eventchannel(alerts) -> None:
    ev = alerts[3]
    assert_event(ev, {
        "threat.technique.id": ["T1059.003"], "threat.tactic.name": ["Execution"],  # scalars, not arrays
        "winlog.event_id": 1, "event.code": "1", "winlog.channel": "Microsoft-Windows-Sysmon/Operational",
        "winlog.provider_name": "Microsoft-Windows-Sysmon", "winlog.computer_name": "WS-042.example.local",
        "event.provider": "Microsoft-Windows-Sysmon",
        "process.executable": "C:\\Windows\\System32\\cmd.exe", "process.name": "cmd.exe",
        "process.command_line": "cmd.exe /c whoami", "process.pid": 4242,
        "process.entity_id": "{11111111-2222-3333-4444-555555555555}",
        "process.working_directory": "C:\\Users\\bob\\Documents\\",
        "process.parent.executable": "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
        "process.parent.name": "WINWORD.EXE", "process.parent.pid": 0x1A4,
        "user.name": "bob", "user.domain": "EXAMPLE",
        "message": "Sysmon - Suspicious Process - cmd.exe spawned by winword",
    })
    assert json.loads(ev["winlog.event_data"])["utcTime"] == "2024-06-01 12:00:01.998"


def test_web_access_log(alerts) -> None:
    assert_event(alerts[4], {
        "event.category": ["web", "network"], "http.request.method": "GET", "http.response.status_code": 404,
        "url.path": "/wp-login.php?x=1", "source.ip": "203.0.113.50", "rule.category": "web,accesslog,attack",
    })


def test_firewall_and_bracketed_ipv6_port(alerts) -> None:
    assert_event(alerts[5], {
        "event.action": "DROP", "network.transport": "udp", "source.ip": "203.0.113.77", "source.port": 5353,
        "destination.ip": "2001:db8::5", "destination.port": 161,  # explicit dstport wins over the suffix
        "event.type": ["info"], "http.request.method": None,
    })


def test_suricata_through_json_decoder(alerts) -> None:
    assert_event(alerts[6], {
        "source.ip": "192.0.2.60", "source.port": 40000, "destination.ip": "198.51.100.61",
        "destination.port": 80, "network.transport": "tcp", "network.protocol": "http",
        "url.domain": "intranet.example.com", "url.path": "/admin", "http.response.status_code": 403,
        "user_agent.original": "Mozilla/5.0", "event.category": ["intrusion_detection", "network"],
    })


def test_host_from_predecoder_and_port_suffix(alerts) -> None:
    assert_event(alerts[7], {
        "host.name": "mail", "user.name": "carol", "source.user.name": "carol",
        "destination.ip": "192.0.2.25", "destination.port": 993, "event.outcome": "failure",
        "related.ip": ["192.0.2.70", "192.0.2.25"],
    })


def test_indexer_timestamp_and_empty_groups(alerts) -> None:
    assert_event(alerts[8], {
        "@timestamp": datetime(2024, 6, 1, 12, 0, 7, tzinfo=UTC), "rule.category": None, "tags": None,
        "message": "Example rule without a full_log", "event.category": None, "threat.technique.id": None,
        "host.name": "db-01",
    })


def test_sniff() -> None:
    r = get_reader("wazuh")
    assert r.sniff(FIX.read_bytes(), "alerts.json") == 95
    assert r.sniff(b'[{"rule": {"level": 3, "id": "1"}, "agent": {"id": "0"}}]', "x") == 95
    assert r.sniff(b'{"rule": {"level": 3, "description": "d"}}\n', "x") == 60
    assert r.sniff(b'{"rule": "not an object", "agent": {}}\n', "x") == 0
    assert r.sniff(b'{"timestamp": "x", "event_type": "alert", "src_ip": "1.2.3.4"}\n', "x") == 0
    assert r.sniff(b"", "alerts.json") == 0


# --- bad input ---------------------------------------------------------------------------------


def test_bad_lines_quarantined(tmp_path, settings) -> None:
    f = tmp_path / "alerts.json"
    f.write_bytes(
        (_GOOD[0] + "\n" + _GOOD[1][:100] + "\n").encode()  # 2: truncated
        + b"** Alert 1717243200.1: - syslog,\n"  # 3: the plain-text alerts.log format
        + _GOOD[6].replace("carol", "j\u00f6rg").encode("latin-1") + b"\n"  # 4: Latin-1
        + b"null\n"  # 5
        + b"\n"
        + _GOOD[3].encode() + b"\r\n"  # 7: CRLF
    )
    report, store = run_ingest([f], settings, format="wazuh")
    got = _by_line(store, f)
    assert sorted(got) == [1, 4, 7] and got[4]["user.name"] == "j\u00f6rg"
    q = {r["line"]: r["reason"] for r in rows(store, "select line, reason from quarantine")}
    assert sorted(q) == [2, 3, 5]
    assert q[2].startswith("not JSON") and q[3].startswith("not JSON")
    assert q[5] == "JSON NoneType, not an object"
    assert report.quarantined == 3 and report.exit_code == 3


def test_utf16_bom_binary_and_empty(tmp_path, settings) -> None:
    u16 = tmp_path / "u16.json"
    u16.write_bytes(codecs.BOM_UTF16_BE + "\n".join(_GOOD[:2]).encode("utf-16-be"))
    blob = tmp_path / "blob.json"
    blob.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    report, store = run_ingest([u16], settings)
    assert report.by_reader() == {"wazuh": 2}
    assert _by_line(store, u16)[2]["user.name"] == "deploy"
    report2, _ = run_ingest([blob, empty], load_settings(tmp_path / "h2"), format="wazuh")
    assert report2.events == 0
    assert report2.quarantined == sum(1 for ln in blob.read_bytes().split(b"\n") if ln.strip())


# --- fuzz --------------------------------------------------------------------------------------


def _ingest_bytes(data: bytes):
    return ingest_bytes(data, "wazuh", "alerts.json")


def _nonempty_lines(data: bytes) -> int:
    return sum(1 for ln in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if ln.strip())


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_bytes(data: bytes) -> None:
    report, stored = _ingest_bytes(data)
    assert stored == report.events
    (res,) = report.results
    if res.status == "failed":  # archive magic bytes: a recorded source-level failure
        return
    if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not data.lstrip().startswith(b"["):
        assert report.events + report.quarantined == _nonempty_lines(data)


_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
    | st.text(max_size=25)
    | st.sampled_from(["1.2.3.4:99999", "[::1]:80", "<x>", "0xffffffffffffffff", "1e400", "infinity"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)
_PATHS = [("timestamp",), ("@timestamp",), ("rule",), ("rule", "level"), ("rule", "groups"),
          ("rule", "mitre"), ("rule", "mitre", "id"), ("data",), ("data", "srcip"), ("data", "dstip"),
          ("data", "srcport"),
          ("data", "win"), ("data", "win", "eventdata"), ("syscheck",), ("syscheck", "path"), ("agent",)]


@st.composite
def _mutated(draw) -> bytes:
    out = []
    for _ in range(draw(st.integers(1, 5))):
        rec = json.loads(draw(st.sampled_from(_GOOD)))
        for _ in range(draw(st.integers(0, 4))):
            path = draw(st.sampled_from(_PATHS))
            node = rec
            for p in path[:-1]:
                node = node.setdefault(p, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node[path[-1]] = draw(_values)
        text = json.dumps(rec, allow_nan=True)
        if draw(st.integers(0, 5)) == 0:
            text = text[: draw(st.integers(0, len(text)))]
        out.append(text)
    return "\n".join(out).encode()


@hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_fuzz_mutated_alerts(data: bytes) -> None:
    report, stored = _ingest_bytes(data)
    assert stored == report.events
    assert report.events + report.quarantined == _nonempty_lines(data)
