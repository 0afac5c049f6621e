"""Suricata EVE reader: real alert exports (JSON arrays), hand-written JSON lines of every event
type, bad input, and fuzzing through the real pipeline."""

from __future__ import annotations

import codecs
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.ingest.reader import get_reader
from tests.conftest import FIXTURES, assert_event, evaldata, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "suricata_eve"
EVE = FIX / "eve.json"


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


def _by_line(store, path: Path | str) -> dict[int, dict]:
    out = rows(store, f"select * from events where \"log.file.path\" = '{path}'")
    return {r["log.file.line"]: r for r in out}


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.evaldata
def test_real_alert_exports_every_record_stored(settings) -> None:
    root = evaldata("suricata_sample_data")
    files = sorted(root.glob("samples/*/alerts-only.json"))
    assert len(files) == 4
    report, store = run_ingest(files, settings)
    assert report.quarantined == 0 and report.by_reader() == {"suricata_eve": report.events}
    expected = {str(f): len(json.loads(f.read_text())) for f in files}
    assert sum(expected.values()) == 548
    got = {r["p"]: r["n"] for r in rows(store, 'select "log.file.path" p, count(*) n from events group by 1')}
    assert got == expected
    kinds = rows(store, 'select "event.kind" k, "event.dataset" d, count(*) n from events group by all')
    assert kinds == [{"k": "alert", "d": "suricata.eve", "n": 548}]
    assert rows(store, 'select count(*) n from events where "rule.id" is null or "@timestamp" is null '
                       'or "source.ip" is null or "event.original" is null')[0]["n"] == 0


@pytest.mark.evaldata
def test_real_alert_fields(settings) -> None:
    root = evaldata("suricata_sample_data") / "samples"
    wr18 = root / "wrccdc-2018/alerts-only.json"
    first = root / "first-org-conf-2015/alerts-only.json"
    honey = root / "honeypot-2018/alerts-only.json"
    _, store = run_ingest([wr18, first, honey], settings)
    ssh_scan = _by_line(store, wr18)[2]
    assert_event(ssh_scan, {
        "@timestamp": _ts("2018-03-24T14:37:19.037299-06:00"),
        "event.kind": "alert", "event.module": "suricata", "event.code": "alert",
        "event.category": ["network", "intrusion_detection"], "event.type": ["allowed"],
        "event.action": "allowed", "event.severity": 2,
        "source.ip": "0.0.0.0", "source.port": 26078, "destination.ip": "10.47.8.150", "destination.port": 22,
        "network.transport": "tcp", "rule.id": "2001219", "rule.name": "ET SCAN Potential SSH Scan",
        "rule.category": "Attempted Information Leak", "message": "ET SCAN Potential SSH Scan",
        "observer.product": "Suricata", "related.ip": ["0.0.0.0", "10.47.8.150"],
    })
    assert json.loads(ssh_scan["event.original"])["flow_id"] == 928532049924531
    by_line = _by_line(store, first)
    assert_event(by_line[4332], {
        "@timestamp": _ts("2015-03-09T03:21:01.184624-06:00"),
        "source.ip": "192.168.0.54", "source.port": 52328, "destination.ip": "37.59.31.55",
        "destination.port": 80, "network.protocol": "http", "rule.id": "2221001",
        "rule.name": "SURICATA HTTP gzip decompression failed", "event.severity": 3,
        "url.domain": "wall4all.me", "destination.domain": "wall4all.me",
        "url.path": "/thumbs/cartoon-comics/krusty-the-clown-the-simpsons-1021745-480x320.gif",
        "url.full": "http://wall4all.me/thumbs/cartoon-comics/krusty-the-clown-the-simpsons-1021745-480x320.gif",
        "http.request.method": "GET", "http.response.status_code": 206,
        "user_agent.original": "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
                               "Chrome/41.0.2272.76 Safari/537.36",
    })
    assert_event(by_line[4987], {
        "@timestamp": _ts("2015-03-11T03:57:49.425143-06:00"),
        "source.ip": "192.168.0.51", "source.port": 35736, "destination.ip": "108.175.144.81",
        "destination.port": 443, "destination.domain": "www.arvixe.com", "network.protocol": "tls",
        "rule.id": "2230015", "rule.name": "SURICATA TLS invalid record version",
        "rule.category": "Generic Protocol Command Decode",
    })
    # Honeypot timestamps carry no offset: read as UTC.
    assert_event(_by_line(store, honey)[2], {
        "@timestamp": datetime(2019, 1, 2, 3, 50, 11, 315110, tzinfo=UTC),
        "source.ip": "8.42.77.171", "source.port": 49678, "destination.ip": "138.68.3.71",
        "destination.port": 22, "rule.id": "2001219",
    })


# --- hand-written fixtures: one record per event type ---------------------------------------------


@pytest.fixture
def eve_rows(settings) -> dict[int, dict]:
    report, store = run_ingest([EVE], settings)
    assert report.quarantined == 0 and report.by_reader() == {"suricata_eve": 14}
    return _by_line(store, EVE)


def test_flow(eve_rows) -> None:
    assert_event(eve_rows[1], {
        "@timestamp": datetime(2024, 5, 1, 10, 0, 0, 100, tzinfo=UTC), "event.kind": "event",
        "event.category": ["network"], "event.type": ["connection", "end"], "event.code": "flow",
        "event.dataset": "suricata.eve", "source.ip": "192.0.2.10", "source.port": 51000,
        "destination.ip": "198.51.100.20", "destination.port": 443, "network.transport": "tcp",
        "network.protocol": "tls", "network.community_id": "1:AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "rule.id": None, "event.severity": None, "log.offset": 0,
    })


def test_dns_three_versions(eve_rows) -> None:
    assert_event(eve_rows[2], {  # v1 query, -0600 offset
        "@timestamp": datetime(2024, 5, 1, 10, 0, 1, 200, tzinfo=UTC), "event.type": ["protocol"],
        "event.action": "query", "network.protocol": "dns", "network.transport": "udp",
        "dns.question.name": "www.example.com", "dns.question.type": "A", "dns.response_code": None,
    })
    assert_event(eve_rows[3], {  # v2 answer with an answers array
        "event.action": "answer", "dns.question.name": "www.example.com", "dns.response_code": "NOERROR",
        "dns.answers": "edge.example.net, 203.0.113.7",
    })
    assert_event(eve_rows[4], {  # v3 request: the question is in queries[]
        "dns.question.name": "mail.example.org", "dns.question.type": "MX",
    })


def test_http_and_tls(eve_rows) -> None:
    assert_event(eve_rows[5], {
        "event.category": ["network", "web"], "event.type": ["protocol"], "network.protocol": "http",
        "url.domain": "www.example.com", "url.path": "/login.php?next=%2Fadmin",
        "url.full": "http://www.example.com:8080/login.php?next=%2Fadmin", "http.request.method": "POST",
        "http.response.status_code": 401, "user_agent.original": "curl/8.5.0",
        "destination.domain": "www.example.com",
    })
    assert_event(eve_rows[6], {"network.protocol": "tls", "destination.domain": "secure.example.com"})
    # A proxy-style absolute URL is kept whole; an IP host is not a domain.
    assert_event(eve_rows[14], {
        "url.full": "http://203.0.113.90/a/b?c=d", "url.path": "/a/b?c=d", "url.domain": "203.0.113.90",
        "destination.domain": None,
    })


def test_fileinfo_anomaly_stats(eve_rows) -> None:
    assert_event(eve_rows[7], {
        "event.category": ["network", "file"], "event.type": ["info"], "file.path": "/files/setup.exe",
        "file.name": "setup.exe", "file.hash.md5": "d41d8cd98f00b204e9800998ecf8427e",
        "file.hash.sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "file.hash.sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "url.full": "http://www.example.com/files/setup.exe",
    })
    assert_event(eve_rows[8], {
        "event.kind": "event", "event.action": "decoder.udp.pkt_too_small",
        "message": "decode: decoder.udp.pkt_too_small", "event.type": ["info"],
    })
    stats = eve_rows[9]
    assert_event(stats, {"event.kind": "metric", "event.code": "stats", "event.category": None,
                         "source.ip": None, "related.ip": None})
    assert json.loads(stats["event.original"])["stats"]["uptime"] == 60


def test_alert_with_mitre_metadata(eve_rows) -> None:
    assert_event(eve_rows[10], {
        "event.kind": "alert", "event.action": "blocked", "event.type": ["denied"], "event.severity": 1,
        "rule.id": "2024217", "rule.name": "ET MALWARE Example Reverse Shell Inbound",
        "rule.category": "A Network Trojan was detected", "threat.technique.id": ["T1071", "T1095"],
        "threat.tactic.name": ["Command_And_Control"], "network.protocol": None,  # app_proto "failed"
        "observer.name": "sensor-1", "network.community_id": "1:BBBBBBBBBBBBBBBBBBBBBBBBBBB=",
    })


def test_ssh_smb_netflow(eve_rows) -> None:
    assert_event(eve_rows[11], {"network.protocol": "ssh", "event.type": ["protocol"]})
    assert_event(eve_rows[12], {"network.protocol": "smb", "user.name": "alice", "user.domain": "EXAMPLE"})
    assert_event(eve_rows[13], {
        "event.type": ["connection", "end"], "network.transport": "ipv6-icmp", "source.ip": "2001:db8::1",
        "related.ip": ["2001:db8::1", "2001:db8::2"],
    })


def test_json_array_lines_and_offsets(settings) -> None:
    f = FIX / "eve_array.json"
    report, store = run_ingest([f], settings)
    assert report.events == 2 and report.quarantined == 0
    got = _by_line(store, f)
    assert sorted(got) == [2, 17]
    assert_event(got[2], {"@timestamp": datetime(2024, 5, 2, 14, 30, 0, 123456, tzinfo=UTC),
                          "rule.id": "2100498", "url.full": "http://intranet.example.com/cgi-bin/test.cgi"})
    assert got[17]["event.code"] == "flow"
    assert json.loads(got[2]["event.original"])["flow_id"] == 1234


def test_sniff() -> None:
    r = get_reader("suricata_eve")
    assert r.sniff(EVE.read_bytes()[:65536], "x") == 95
    assert r.sniff((FIX / "eve_array.json").read_bytes(), "x") == 95
    assert r.sniff(b'{"timestamp": "2024-01-01T00:00:00Z", "event_type": "custom"}\n', "x") == 70
    assert r.sniff(b'{"ts": 1.0, "uid": "C1", "id.orig_h": "192.0.2.1"}\n', "x") == 0  # Zeek
    assert r.sniff(b'{"timestamp":"x","rule":{"level":3,"id":"1"},"agent":{}}\n', "x") == 0  # Wazuh
    assert r.sniff(b"<xml/>", "eve.json") == 0
    assert r.sniff(b"", "eve.json") == 0


# --- bad input ---------------------------------------------------------------------------------

_GOOD = EVE.read_text().splitlines()


def test_bad_lines_quarantined_with_line_numbers(tmp_path, settings) -> None:
    f = tmp_path / "eve.json"
    f.write_bytes(
        (_GOOD[0] + "\n").encode()
        + b"this is not json\n"
        + (_GOOD[1][:40] + "\n").encode()  # truncated record
        + b"\n   \n"  # blank lines: neither stored nor quarantined
        + b'["a JSON array", "not an object"]\n'
        + _GOOD[2].replace("www.example.com", "caf\u00e9.example").encode("latin-1") + b"\n"  # Latin-1 bytes
        + b"\x00\x01\x02\xff\xfe binary\n"
        + _GOOD[4].encode()  # last line without a newline
    )
    report, store = run_ingest([f], settings, format="suricata_eve")
    assert report.events == 3 and report.quarantined == 4
    assert sorted(_by_line(store, f)) == [1, 7, 9]
    assert _by_line(store, f)[7]["dns.question.name"] == "caf\u00e9.example"
    assert report.results[0].warnings == {"lines not UTF-8, decoded as Latin-1": 2}
    q = {r["line"]: r for r in rows(store, "select * from quarantine")}
    assert sorted(q) == [2, 3, 6, 8]
    assert q[2]["reason"].startswith("not JSON") and q[3]["reason"].startswith("not JSON")
    assert q[6]["reason"] == "JSON list, not an object"
    assert q[3]["excerpt"] == _GOOD[1][:40]


def test_utf16_with_bom(tmp_path, settings) -> None:
    f = tmp_path / "eve16.json"
    f.write_bytes(codecs.BOM_UTF16_LE + "\n".join(_GOOD[:3]).encode("utf-16-le"))
    report, store = run_ingest([f], settings)
    assert report.by_reader() == {"suricata_eve": 3} and report.quarantined == 0
    assert _by_line(store, f)[2]["dns.question.name"] == "www.example.com"


def test_binary_blob_and_empty_file(tmp_path, settings) -> None:
    blob = tmp_path / "blob.json"
    blob.write_bytes(bytes(range(256)) * 64)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    report, _store = run_ingest([blob, empty], settings, format="suricata_eve")
    assert report.events == 0
    n_lines = sum(1 for ln in blob.read_bytes().split(b"\n") if ln.strip())
    assert report.quarantined == n_lines
    assert {r.status for r in report.results} == {"ingested"}


def test_truncated_json_array(tmp_path, settings) -> None:
    f = tmp_path / "arr.json"
    text = (FIX / "eve_array.json").read_text()
    f.write_text(text[: text.index('"event_type": "flow"')])
    report, store = run_ingest([f], settings)
    assert report.events == 1 and report.quarantined == 1
    (q,) = rows(store, "select * from quarantine")
    assert q["line"] == 17 and "rest of the array not read" in q["reason"]


# --- fuzz --------------------------------------------------------------------------------------


def _nonempty_lines(data: bytes) -> int:
    return sum(1 for ln in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if ln.strip())


def _ingest_bytes(data: bytes, fmt: str = "suricata_eve"):
    return ingest_bytes(data, fmt, "in.json")


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    report, stored = _ingest_bytes(data)
    assert stored == report.events
    (res,) = report.results
    if res.status == "failed":  # archive magic bytes (PK.., gzip): a source-level failure, recorded
        assert res.reason and res.reader is None
        return
    head = data.lstrip(b" \t\r\n")
    if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(b"["):
        assert report.events + report.quarantined == _nonempty_lines(data)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
    | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)
_KEYS = ["timestamp", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "app_proto",
         "alert", "dns", "http", "tls", "fileinfo", "anomaly", "smb", "krb5", "host", "community_id"]


@st.composite
def _mutated_records(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        rec = json.loads(draw(st.sampled_from(_GOOD)))
        for _ in range(draw(st.integers(0, 4))):
            key = draw(st.sampled_from(_KEYS + list(rec)))
            sub = rec.get(key)
            if isinstance(sub, dict) and sub and draw(st.booleans()):
                sub[draw(st.sampled_from(sorted(sub)))] = draw(_json_values)
            else:
                rec[key] = draw(_json_values)
        text = json.dumps(rec, allow_nan=True)
        if draw(st.integers(0, 5)) == 0:
            text = text[: draw(st.integers(0, len(text)))]
        lines.append(text)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_records())
def test_fuzz_mutated_records(data: bytes) -> None:
    report, stored = _ingest_bytes(data)
    assert stored == report.events
    assert report.events + report.quarantined == _nonempty_lines(data)
