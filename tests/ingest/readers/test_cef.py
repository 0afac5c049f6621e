"""CEF reader: hand-written records of several vendors (escapes, syslog headers, time formats),
exact fields of each mapping branch, bad input, hostile lines and fuzzing through the pipeline."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.reader import choose
from phagocyte.ingest.readers.cef import CefReader, event_time, extension, parse_cef, split_pipes
from phagocyte.ingest.readers.syslog import Clock
from phagocyte.ingest.source import Source
from tests.conftest import FIXTURES, assert_event, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "cef"
REF = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


def _us(s: str) -> int:
    return (_ts(s) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _nonempty(data: bytes) -> int:
    return sum(1 for p in data.split(b"\n") if p.strip())


def _source(data: bytes) -> Source:
    return Source(path="mem", id="0" * 64, opener=lambda: io.BytesIO(data), head=data[:65536])


def _parse(line: str) -> dict:
    row = parse_cef(line, Clock(REF))
    assert isinstance(row, dict), row
    return row


# --- the fixture through the pipeline -----------------------------------------------------------------


def test_fixture_every_record_with_fields(tmp_path, settings) -> None:
    path = tmp_path / "alerts.cef"
    shutil.copy(FIX / "alerts.cef", path)
    os.utime(path, (REF.timestamp(), REF.timestamp()))
    report, store = run_ingest([path], settings)
    data = path.read_bytes()
    assert report.quarantined == 0 and report.by_reader() == {"cef": _nonempty(data)} == {"cef": 10}
    ev = {r["log.file.line"]: r for r in rows(store, "select * from events")}
    text = data.decode().split("\n")
    for no, e in ev.items():
        assert e["event.original"] == text[no - 1]
        assert_event(e, {"event.kind": "alert", "event.dataset": "cef", "event.module": "cef"})
    assert_event(ev[1], {"observer.vendor": "Security", "observer.product": "threatmanager", "rule.id": "100",
                         "event.code": "100", "rule.name": "worm successfully stopped",
                         "message": "worm successfully stopped", "event.severity": 10,
                         "log.level": "very-high", "source.ip": "10.0.0.1", "destination.ip": "2.1.2.2",
                         "source.port": 1232, "destination.port": None, "related.ip": ["10.0.0.1", "2.1.2.2"],
                         "@timestamp": None, "observer.name": None})
    assert_event(ev[2], {"observer.product": "threat|manager", "rule.name": "detected a | in message",
                         "event.action": "blocked a =", "destination.ip": "1.1.1.1"})
    assert_event(ev[3], {"rule.name": "detected a \\ in packet", "event.action": "blocked a \\"})
    assert_event(ev[4], {"@timestamp": _ts("2024-01-15T10:22:00Z"), "observer.vendor": "Palo Alto Networks",
                         "observer.product": "PAN-OS", "observer.name": "pafw01", "rule.id": "end",
                         "rule.name": "TRAFFIC", "event.severity": 1, "log.level": "low",
                         "source.ip": "192.168.10.25", "source.port": 51544, "destination.ip": "203.0.113.80",
                         "destination.port": 443, "network.transport": "tcp", "network.protocol": "ssl",
                         "network.direction": "outbound", "user.name": "corp\\alice",
                         "source.user.name": "corp\\alice", "event.action": "allow"})
    # No rt: the syslog header's time (year from the file's mtime) and host.
    assert_event(ev[5], {"@timestamp": _ts("2024-01-15T10:23:11Z"), "observer.name": "fgt-edge",
                         "network.transport": "tcp", "destination.port": 3389,
                         "rule.category": "traffic:forward",
                         "message": "Denied by forward policy check (policy 0)", "event.action": "deny"})
    assert_event(ev[6], {"@timestamp": _ts("2024-01-15T10:24:00Z"), "observer.name": "WIN-FS01",
                         "rule.id": "4000000", "rule.name": "Eicar_test_file", "event.severity": 6,
                         "log.level": "medium", "file.name": "eicar.com",
                         "file.path": "C:\\Users\\bob\\Downloads\\eicar.com",
                         "file.hash.md5": "44d88612fea8a8f36de82e1278abb02f", "event.action": "Quarantine",
                         "message": "Realtime", "process.name": "explorer.exe", "process.pid": 4312})
    assert_event(ev[7], {"@timestamp": _ts("2018-12-12T18:52:58Z"), "network.protocol": None,
                         "user.name": "krbtgt", "source.user.name": "krbtgt",
                         "message": "krbtgt has uncharacteristically modified sensitive group memberships."})
    assert_event(ev[8], {"@timestamp": _ts("2024-01-15T10:25:00.123Z"), "event.severity": 8,
                         "log.level": "high",
                         "user.name": "app_svc", "source.user.name": "webuser",
                         "url.full": "https://shop.example.com/item?id=1 OR 1=1",
                         "http.request.method": "GET",
                         "user_agent.original": "sqlmap/1.7.2#stable (https://sqlmap.org)",
                         "event.action": "blocked", "destination.port": 443})
    assert_event(ev[9], {"@timestamp": _ts("2024-01-15T09:25:00.25Z"), "event.severity": 10,
                         "network.transport": "udp", "message": "line one\nline two\r",
                         "event.action": "Drop",
                         "observer.product": "VPN-1 & FireWall-1"})
    assert_event(ev[10], {"event.severity": None, "log.level": "unknown", "event.outcome": "failure",
                          "user.name": "eve", "user.domain": "CORP",
                          "destination.domain": "dc01.corp.example.com",
                          "message": "bad password", "@timestamp": None})


# --- parse level --------------------------------------------------------------------------------------


def test_split_pipes_fast_and_escaped_paths() -> None:
    assert split_pipes("a|b|c|rest", 0, 3) == (["a", "b", "c"], 6)
    assert split_pipes("a\\|b|c\\\\|d|rest|x", 0, 3) == (["a|b", "c\\", "d"], 11)
    assert split_pipes("a|b", 0, 3) is None
    assert split_pipes("a\\|b|c", 0, 3) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("a=1", {"a": "1"}),
    ("msg=hello world  src=1.2.3.4 ", {"msg": "hello world", "src": "1.2.3.4"}),
    ("a= b=2", {"a": "", "b": "2"}),
    ("act=x \\= y k=v", {"act": "x = y", "k": "v"}),
    ("k=C:\\\\dir\\\\file n=line\\nnext\\r", {"k": "C:\\dir\\file", "n": "line\nnext\r"}),
    ("request=http://x/?a=1&b=2 c=3", {"request": "http://x/?a=1&b=2", "c": "3"}),
    ("leading junk a=1", {"a": "1"}),
    ("ad.field[0]=v cs1Label=My Label cs1=v 2", {"ad.field[0]": "v", "cs1Label": "My Label", "cs1": "v 2"}),
    ("k=unknown \\x escape", {"k": "unknown \\x escape"}),
])
def test_extension(text: str, expected: dict) -> None:
    assert extension(text) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("1705314300123", "2024-01-15T10:25:00.123Z"),
    ("1705314300", "2024-01-15T10:25:00Z"),
    ("Jan 15 2024 10:22:00", "2024-01-15T10:22:00Z"),
    ("Jan 15 2024 10:22:00.5", "2024-01-15T10:22:00.5Z"),
    ("Jan 15 2024 10:22:00 UTC", "2024-01-15T10:22:00Z"),
    ("Jan 15 2024 10:22:00 +0130", "2024-01-15T08:52:00Z"),
    ("Jan 15 2024 10:22:00 GMT-05:00", "2024-01-15T15:22:00Z"),
    ("Jan 15 10:22:00.250", "2024-01-15T10:22:00.25Z"),
    ("Dec 31 23:00:00", "2023-12-31T23:00:00Z"),
    ("2024-01-15T10:22:00.123456789+02:00", "2024-01-15T08:22:00.123456Z"),
])
def test_event_time(value: str, expected: str) -> None:
    assert event_time(value, Clock(REF), None) == _us(expected)


def test_event_time_unknown_zone_is_utc_with_a_warning() -> None:
    from phagocyte.config import Limits
    from phagocyte.ingest.reader import ReadContext

    ctx = ReadContext(_source(b""), Limits())
    assert event_time("Jan 15 2024 10:22:00 EST", Clock(REF), ctx) == _us("2024-01-15T10:22:00Z")
    assert list(ctx.warnings) == ["time zone 'EST' not understood, taken as UTC"]
    assert event_time("yesterday", Clock(REF), None) is None


@pytest.mark.parametrize(("line", "expected"), [
    ("CEF:0|V|P|1|s|n|Medium|", {"event.severity": 6, "log.level": "medium"}),
    ("CEF:0|V|P|1|s|n|Very-High|", {"event.severity": 10, "log.level": "very-high"}),
    ("CEF:0|V|P|1|s|n|low|", {"event.severity": 3, "log.level": "low"}),
    ("CEF:0|V|P|1|s|n|7|", {"event.severity": 7, "log.level": "high"}),
    ("CEF:0|V|P|1|s|n||", {"event.severity": None, "log.level": None, "message": "n"}),
    ("CEF:0||||||5|", {"observer.vendor": None, "rule.id": None, "rule.name": None, "message": None}),
    ("CEF:0|V|P|1|s|n|5|proto=17 src=999.1.1.1 dst=2001:db8::1 spt=70000 dpt=x",
     {"network.transport": "udp", "source.ip": None, "destination.ip": "2001:db8::1",
      "related.ip": ["2001:db8::1"], "source.port": None, "destination.port": None}),
    ("CEF:0|V|P|1|s|n|5|proto=ICMP deviceDirection=0 app=HTTP outcome=success",
     {"network.transport": "icmp", "network.direction": "inbound", "network.protocol": "http",
      "event.outcome": "success"}),
    ("CEF:0|V|P|1|s|n|5|suser=a duser=b dntdom=D sntdom=S duid=42 suid=7",
     {"user.name": "b", "user.domain": "D", "user.id": "42", "source.user.name": "a"}),
    ("CEF:0|V|P|1|s|n|5|suser=a sntdom=S suid=7", {"user.name": "a", "user.domain": "S", "user.id": "7"}),
    ("CEF:0|V|P|1|s|n|5|fileHash=" + "A" * 40, {"file.hash.sha1": "a" * 40, "file.hash.md5": None}),
    ("CEF:0|V|P|1|s|n|5|fileHash=" + "b" * 64, {"file.hash.sha256": "b" * 64}),
    ("CEF:0|V|P|1|s|n|5|fileHash=abc outcome=maybe", {"file.hash.md5": None, "event.outcome": "unknown"}),
    ("CEF:0|V|P|1|s|n|5|rt=garbage start=Jan 15 2024 10:00:00", {"@timestamp": _us("2024-01-15T10:00:00Z")}),
    ("CEF:0|V|P|1|s|n|5|end=1705312800000", {"@timestamp": _us("2024-01-15T10:00:00Z")}),
    ("<13>Jan 15 10:00:00 host CEF:0|V|P|1|s|n|5|rt=1705312801000",
     {"@timestamp": _us("2024-01-15T10:00:01Z"), "observer.name": "host"}),
    ("2024-01-15T10:00:00Z relay app[1]: CEF:0|V|P|1|s|n|5|dvchost=dev",
     {"@timestamp": _us("2024-01-15T10:00:00Z"), "observer.name": "dev"}),
    ("CEF:1.2|V|P|1|s|n|5|", {"rule.id": "s"}),
])
def test_parse_variants(line: str, expected: dict) -> None:
    assert_event(_parse(line), expected)


@pytest.mark.parametrize(("line", "reason"), [
    ("no marker here", "not a CEF record: no 'CEF:' marker"),
    ("CEF:0|V|P|1|s|n", "CEF header incomplete: 5 of 7 '|'-terminated fields"),
    ("CEF:0|V|P|1|s|n\\|5|x", "CEF header incomplete: 6 of 7 '|'-terminated fields"),
    ("CEF:x|V|P|1|s|n|5|", "CEF version 'x' is not a number"),
])
def test_not_cef(line: str, reason: str) -> None:
    assert parse_cef(line, Clock(REF)) == reason


# --- sniffing -------------------------------------------------------------------------------------------


def test_sniff() -> None:
    r = CefReader()
    head = (FIX / "alerts.cef").read_bytes()
    assert r.sniff(head, "x") == 85
    reader, _ = choose(_source(head))
    assert reader is not None and reader.name == "cef"
    framed = b"<134>Jan 15 10:22:01 fw CEF:0|V|P|1|100|n|5|src=10.0.0.1\n" * 5
    assert r.sniff(framed, "x") == 85
    assert r.sniff(b"custom-prefix: CEF:0|V|P|1|100|n|5|src=10.0.0.1\n" * 5, "x") == 45
    assert r.sniff(b'{"message": "CEF:0|V|P|1|100|n|5|"}\n', "x") == 0
    assert r.sniff((FIXTURES / "syslog" / "auth.log").read_bytes(), "auth.log") == 0
    assert r.sniff(b"CEF:0|V|P|1|100|n|5|\n" + b"Jan 15 10:22:01 h p: x\n" * 3, "x") == 0
    # A syslog file where CEF is only 3 lines of 5: the syslog reader (60) keeps every line.
    ssh = b"<134>Jan 15 10:22:01 fw sshd[1]: Accepted password for a from 10.0.0.1 port 2\n"
    mixed = framed.split(b"\n")[0] + b"\n"
    mixed = mixed * 3 + ssh * 2
    assert r.sniff(mixed, "x") == 55
    reader, _ = choose(_source(mixed))
    assert reader is not None and reader.name == "syslog"
    assert r.sniff(b"", "x") == 0


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_records_quarantined_good_kept(tmp_path, settings) -> None:
    good = (FIX / "alerts.cef").read_bytes().split(b"\n")
    data = b"\n".join([
        good[0], b"just some text", b"CEF:0|truncated|rec", good[3],
        b"CEF:0|V|P|1|s|caf\xe9|5|msg=Latin-1 \xe9", b"\x00\x01\xff binary \x00",
        b"odd prefix CEF:0|V|P|1|s|n|5|",
        good[4], b"",
    ])
    path = tmp_path / "mixed.cef"
    path.write_bytes(data)
    report, store = run_ingest([path], settings, format="cef")
    assert report.events == 5 and report.quarantined == 3
    q = rows(store, "select line, reason, excerpt from quarantine order by line")
    assert [(r["line"], r["reason"]) for r in q] == [
        (2, "not a CEF record: no 'CEF:' marker"),
        (3, "CEF header incomplete: 2 of 7 '|'-terminated fields"),
        (6, "not a CEF record: no 'CEF:' marker"),
    ]
    assert q[1]["excerpt"] == "CEF:0|truncated|rec"
    ev = {r["log.file.line"]: r for r in rows(store, "select * from events")}
    assert_event(ev[5], {"rule.name": "caf\xe9", "message": "Latin-1 \xe9"})
    assert_event(ev[7], {"rule.id": "s", "observer.name": None, "@timestamp": None})
    assert report.results[0].warnings == {
        "lines not UTF-8, decoded as Latin-1": 2,
        "text before the CEF/LEEF marker is not a syslog header (kept in event.original)": 1,
    }


def test_utf16_and_empty(tmp_path, settings) -> None:
    u16 = tmp_path / "u16.cef"
    u16.write_bytes((FIX / "alerts.cef").read_text().encode("utf-16"))
    report, store = run_ingest([u16], settings)
    assert report.by_reader() == {"cef": 10} and report.quarantined == 0
    assert rows(store, 'select "rule.name" n from events where "log.file.line" = 2')[0]["n"] == \
        "detected a | in message"
    empty = tmp_path / "empty.cef"
    empty.write_bytes(b"")
    with tempfile.TemporaryDirectory() as d:
        report, _ = run_ingest([empty], load_settings(d), format="cef")
    assert report.events == 0 and report.quarantined == 0 and report.count("failed") == 0


HOSTILE = [
    "CEF:" + "|" * 100_000,
    "CEF:0|" + "\\" * 100_000,
    "CEF:0|" + "\\|" * 50_000,
    "CEF:0|a|b|c|d|e|f|" + " a=" * 33_000,
    "CEF:0|a|b|c|d|e|f|" + "=" * 100_000,
    "CEF:0|a|b|c|d|e|f|" + "k" * 100_000 + "=v",
    "CEF:0|a|b|c|d|e|f|" + " " + "k" * 100 + " " * 10 + "k" * 100_000,
    "CEF:0|a|b|c|d|e|f|msg=" + "\\" * 100_000,
    "CEF:0|a|b|c|d|e|f|rt=" + "1" * 100_000,
    "CEF:0|a|b|c|d|e|f|rt=Jan 15 2024 10:22:00." + "9" * 100_000,
    "CEF:" * 25_000,
    "<13>Jan 15 10:22:01 " + "h " * 50_000 + "CEF:0|a|b|c|d|e|f|",
]


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_line_is_linear(line: str) -> None:
    t0 = time.process_time()  # CPU time: a loaded machine makes wall time meaningless
    parse_cef(line, Clock(REF))
    assert time.process_time() - t0 < 5.0  # linear: ~0.2 s CPU for 100 k characters; quadratic: minutes


# --- fuzzing through the pipeline ------------------------------------------------------------------------

_SEED = (FIX / "alerts.cef").read_text().split("\n")[3]


def _ingest_bytes(data: bytes) -> tuple[int, int]:
    report, _ = ingest_bytes(data, "cef", "in.cef")
    assert report.count("failed") == 0
    return report.events, report.quarantined


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_binary(data: bytes) -> None:
    # Byte-order marks change the line count; archive magic makes the source an archive.
    assume(not data.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf", b"PK\x03\x04", b"PK\x05\x06",
                                b"\x1f\x8b")))
    stored, bad = _ingest_bytes(data)
    assert stored + bad == _nonempty(data)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SEED)), st.integers(0, 8),
                          st.text(alphabet="|\\= \tCEF:<>0123456789rtsrcdpt\u00e9\x00\n", max_size=6)),
                max_size=6))
def test_fuzz_mutated_records(edits) -> None:
    lines = [_SEED[:pos] + insert + _SEED[pos + cut:] for pos, cut, insert in edits] + [_SEED]
    data = "\n".join(lines).encode()
    stored, bad = _ingest_bytes(data)
    assert stored + bad == _nonempty(data) and stored >= 1


def test_shost_is_the_source_domain(tmp_path, settings) -> None:
    f = tmp_path / "a.cef"
    f.write_text("CEF:0|Acme|Gate|1.0|100|Login|5|src=10.0.0.1 shost=ws-7.corp.example suser=alice\n")
    from tests.conftest import rows, run_ingest

    _, store = run_ingest([f], settings)
    (ev,) = rows(store, 'select "source.domain", "source.ip" from events')
    assert ev == {"source.domain": "ws-7.corp.example", "source.ip": "10.0.0.1"}
