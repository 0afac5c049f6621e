"""LEEF reader: hand-written LEEF 1.0 / 2.0 records (custom delimiters, devTime formats, syslog
headers), real Panda Adaptive Defense records from the Wazuh rule tests, bad input, hostile lines
and fuzzing through the pipeline."""

from __future__ import annotations

import io
import re
import tempfile
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.reader import choose
from phagocyte.ingest.readers.leef import LeefReader, attributes, java_format, parse_leef
from phagocyte.ingest.readers.syslog import Clock
from phagocyte.ingest.source import Source
from tests.conftest import FIXTURES, assert_event, evaldata, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "leef"
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
    row = parse_leef(line, Clock(REF))
    assert isinstance(row, dict), row
    return row


# --- the fixture through the pipeline -----------------------------------------------------------------


def test_fixture_every_record_with_fields(settings) -> None:
    path = FIX / "events.leef"
    report, store = run_ingest([path], settings)
    data = path.read_bytes()
    assert report.quarantined == 0 and report.by_reader() == {"leef": _nonempty(data)} == {"leef": 8}
    ev = {r["log.file.line"]: r for r in rows(store, "select * from events")}
    text = data.decode().split("\n")
    for no, e in ev.items():
        assert e["event.original"] == text[no - 1]
        assert_event(e, {"event.kind": "event", "event.dataset": "leef", "event.module": "leef"})
    assert_event(ev[1], {"observer.vendor": "Microsoft", "observer.product": "MSExchange", "rule.id": "15345",
                         "event.code": "15345", "source.ip": "192.0.2.0", "destination.ip": "172.50.123.1",
                         "source.port": 81, "destination.port": 21, "event.severity": 5,
                         "log.level": "medium",
                         "rule.category": "anomaly", "user.name": "joe.black", "@timestamp": None,
                         "related.ip": ["192.0.2.0", "172.50.123.1"]})
    assert_event(ev[2], {"@timestamp": _ts("2024-01-18T11:07:53.123Z"), "observer.name": "qradar-gw",
                         "observer.vendor": "IBM", "rule.id": "UserLogin", "user.name": "admin",
                         "user.domain": "CORP", "host.name": "ws-042", "source.ip": "10.0.0.42",
                         "rule.category": "Authentication", "event.category": ["authentication"],
                         "event.type": ["start"]})
    assert_event(ev[3], {"observer.vendor": "Lancope", "observer.product": "StealthWatch", "rule.id": "41",
                         "source.ip": "10.0.1.8", "destination.ip": "10.0.0.5", "source.port": 81,
                         "destination.port": 21, "network.transport": "udp", "event.severity": 5})
    assert_event(ev[4], {"@timestamp": _ts("2024-01-18T11:07:53Z"), "user.name": "svc_backup",
                         "source.ip": "10.0.0.7",
                         "message": "read \\\\share\\finance\tpart two of the message",
                         "url.full": "https://files.example.com/?a=1&b=2"})
    assert_event(ev[5], {"rule.id": "Blocked", "source.ip": "10.0.0.8", "destination.ip": "10.0.0.9",
                         "network.transport": "tcp", "rule.name": "Block SMB", "event.severity": 9,
                         "log.level": "very-high"})
    assert_event(ev[6], {"rule.id": "NoDelim", "destination.ip": "10.0.0.11", "user.name": "carol",
                         "event.category": ["authentication"], "event.type": ["end"]})
    assert_event(ev[7], {"@timestamp": _ts("2024-01-18T11:05:00.123456Z"), "observer.name": "edr01",
                         "observer.vendor": "Panda Security", "rule.id": "exec", "event.severity": 4,
                         "user.name": "SYSTEM", "user.domain": "NT AUTHORITY", "source.ip": "10.20.30.40"})
    assert_event(ev[8], {"@timestamp": _ts("2024-01-18T10:09:00Z"), "observer.name": "sensor7",
                         "rule.id": "Scan|Detected", "source.ip": "198.51.100.9",
                         "destination.ip": "192.0.2.50",
                         "destination.port": 22, "network.transport": "tcp", "rule.category": "Recon"})


# --- parse level --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "fmt"), [
    ("MMM dd yyyy HH:mm:ss", "%b %d %Y %H:%M:%S"),
    ("yyyy-MM-dd'T'HH:mm:ss.SSSZ", "%Y-%m-%dT%H:%M:%S.%f%z"),
    ("dd/MM/yy hh:mm:ss a z", "%d/%m/%y %I:%M:%S %p %Z"),
    ("EEE, d MMM yyyy HH:mm:ss X", "%a, %d %b %Y %H:%M:%S %z"),
    ("'at' HH 'o''clock' 100%", "at %H o'clock 100%%"),
])
def test_java_format(pattern: str, fmt: str) -> None:
    assert java_format(pattern) == fmt


@pytest.mark.parametrize(("text", "delim", "expected"), [
    ("", "\t", {}),
    ("a=1\tb=x=y", "\t", {"a": "1", "b": "x=y"}),
    ("a=1\tpart\tb=2", "\t", {"a": "1\tpart", "b": "2"}),
    ("a=1^^b=2^", "^", {"a": "1", "b": "2"}),
    ("junk\ta=1\t=novalue\tbad key=3", "\t", {"a": "1\t=novalue\tbad key=3"}),
])
def test_attributes(text: str, delim: str, expected: dict) -> None:
    assert attributes(text, delim) == expected


@pytest.mark.parametrize(("line", "expected"), [
    ("LEEF:2.0|V|P|1|e|x5E|src=10.0.0.1^dst=10.0.0.2",
     {"source.ip": "10.0.0.1", "destination.ip": "10.0.0.2"}),
    ("LEEF:2.0|V|P|1|e|0X7c|src=10.0.0.1|dst=10.0.0.2", {"destination.ip": "10.0.0.2"}),
    ("LEEF:2.0|V|P|1|e|\\t|src=10.0.0.1\tdst=10.0.0.2", {"destination.ip": "10.0.0.2"}),
    ("LEEF:2.0|V|P|1|e||src=10.0.0.1\tdst=10.0.0.2", {"destination.ip": "10.0.0.2"}),
    ("LEEF:2.0|V|P|1|e|src=a|b\tdst=10.0.0.2", {"destination.ip": "10.0.0.2"}),
    ("LEEF:1.0|V|P|1|e|src=10.0.0.1^dst=10.0.0.2", {"source.ip": None}),
    ("LEEF:1.0|V|P|1|e|devTime=1705576073000", {"@timestamp": _us("2024-01-18T11:07:53Z")}),
    ("LEEF:1.0|V|P|1|e|devTime=Jan 18 2024 11:07:53", {"@timestamp": _us("2024-01-18T11:07:53Z")}),
    ("LEEF:1.0|V|P|1|e|devTime=18.01.2024 11:07\tdevTimeFormat=dd.MM.yyyy HH:mm",
     {"@timestamp": _us("2024-01-18T11:07:00Z")}),
    ("LEEF:1.0|V|P|1|e|devTime=Jan 18 2024 11:07:53 EST\tdevTimeFormat=MMM dd yyyy HH:mm:ss z",
     {"@timestamp": _us("2024-01-18T11:07:53Z")}),
    ("LEEF:1.0|V|P|1|e|devTime=never\tdevTimeFormat=yyyy", {"@timestamp": None}),
    ("LEEF:1.0|V|P|1|e|devTime=10 10\tdevTimeFormat=HH HH", {"@timestamp": None}),
    ("<13>Jan 18 11:00:00 h LEEF:1.0|V|P|1|e|devTime=never", {"@timestamp": _us("2024-01-18T11:00:00Z")}),
    ("LEEF:1.0|V|P|1|e|sev=high\tsrcPort=99999\tproto=17\taccountName=acct",
     {"event.severity": None, "source.port": None, "network.transport": "udp", "user.name": "acct"}),
    ("LEEF:1.0|V|P|1|e|", {"rule.id": "e", "source.ip": None}),
    ("LEEF:1.0||||e|", {"observer.vendor": None, "observer.product": None}),
])
def test_parse_variants(line: str, expected: dict) -> None:
    assert_event(_parse(line), expected)


@pytest.mark.parametrize(("line", "reason"), [
    ("nothing", "not a LEEF record: no 'LEEF:' marker"),
    ("LEEF:1.0|V|P|1", "LEEF header incomplete: 3 of 5 '|'-terminated fields"),
    ("LEEF:one|V|P|1|e|", "LEEF version 'one' is not a number"),
])
def test_not_leef(line: str, reason: str) -> None:
    assert parse_leef(line, Clock(REF)) == reason


def test_sniff() -> None:
    r = LeefReader()
    head = (FIX / "events.leef").read_bytes()
    assert r.sniff(head, "x") == 85
    reader, _ = choose(_source(head))
    assert reader is not None and reader.name == "leef"
    assert r.sniff((FIXTURES / "cef" / "alerts.cef").read_bytes(), "x") == 0
    assert r.sniff((FIXTURES / "syslog" / "auth.log").read_bytes(), "x") == 0
    assert r.sniff(b'{"m": "LEEF:1.0|V|P|1|e|"}\n', "x") == 0


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_records_quarantined_good_kept(tmp_path, settings) -> None:
    good = (FIX / "events.leef").read_bytes().split(b"\n")
    data = b"\n".join([good[0], b"LEEF:1.0|cut", b"plain text", b"LEEF:1.0|V|P|1|e|usrName=j\xf6rg",
                       b"\x00\xff\xfe\x01", good[2], b""])
    path = tmp_path / "mixed.leef"
    path.write_bytes(data)
    report, store = run_ingest([path], settings, format="leef")
    assert report.events == 3 and report.quarantined == 3
    q = rows(store, "select line, reason from quarantine order by line")
    assert [(r["line"], r["reason"]) for r in q] == [
        (2, "LEEF header incomplete: 1 of 5 '|'-terminated fields"),
        (3, "not a LEEF record: no 'LEEF:' marker"),
        (5, "not a LEEF record: no 'LEEF:' marker"),
    ]
    assert rows(store, 'select "user.name" u from events where "log.file.line" = 4')[0]["u"] == "j\xf6rg"


def test_utf16_and_empty(tmp_path, settings) -> None:
    u16 = tmp_path / "u16.leef"
    u16.write_bytes((FIX / "events.leef").read_text().encode("utf-16"))
    report, _ = run_ingest([u16], settings)
    assert report.by_reader() == {"leef": 8} and report.quarantined == 0
    empty = tmp_path / "empty.leef"
    empty.write_bytes(b"")
    with tempfile.TemporaryDirectory() as d:
        report, _ = run_ingest([empty], load_settings(d), format="leef")
    assert report.events == 0 and report.quarantined == 0 and report.count("failed") == 0


HOSTILE = [
    "LEEF:" + "|" * 100_000,
    "LEEF:2.0|" + "\\" * 100_000,
    "LEEF:2.0|a|b|c|d|" + "x09|" * 25_000,
    "LEEF:1.0|a|b|c|d|" + "\t" * 100_000,
    "LEEF:1.0|a|b|c|d|" + "=" * 100_000,
    "LEEF:1.0|a|b|c|d|" + "a=\t" * 33_000,
    "LEEF:1.0|a|b|c|d|devTime=" + "1" * 100_000,
    "LEEF:1.0|a|b|c|d|devTime=" + "1" * 50_000 + "\tdevTimeFormat=" + "y" * 50_000,
    "LEEF:1.0|a|b|c|d|devTime=x\tdevTimeFormat=" + "'" * 100_000,
    "LEEF:1.0|a|b|c|d|sev=" + "9" * 100_000,
]


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_line_is_linear(line: str) -> None:
    t0 = time.process_time()  # CPU time: a loaded machine makes wall time meaningless
    parse_leef(line, Clock(REF))
    assert time.process_time() - t0 < 5.0  # linear: ~0.2 s CPU for 100 k characters; quadratic: minutes


# --- fuzzing through the pipeline ------------------------------------------------------------------------

_SEED = (FIX / "events.leef").read_text().split("\n")[1]


def _ingest_bytes(data: bytes) -> tuple[int, int]:
    report, _ = ingest_bytes(data, "leef", "in.leef")
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
                          st.text(alphabet="|\\=^\tLEF:x09'yMdHmsSz<> \u00e9\x00", max_size=6)),
                max_size=6))
def test_fuzz_mutated_records(edits) -> None:
    lines = [_SEED[:pos] + insert + _SEED[pos + cut:] for pos, cut, insert in edits] + [_SEED]
    data = "\n".join(lines).encode()
    stored, bad = _ingest_bytes(data)
    assert stored + bad == _nonempty(data) and stored >= 1


# --- real data: Panda Adaptive Defense LEEF records of the Wazuh rule tests (GPLv2, read in place) -----


@pytest.mark.evaldata
def test_real_panda_records(tmp_path, settings) -> None:
    ini = evaldata("wazuh_ruleset") / "tools" / "rules-testing" / "tests" / "panda_paps.ini"
    lines = [m.group(1) for raw in ini.read_text(encoding="utf-8").splitlines()
             if (m := re.match(r"log \d+ \w+ = (LEEF:.*)", raw))]
    assert len(lines) == 8
    path = tmp_path / "panda.leef"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report, store = run_ingest([path], settings)
    assert report.quarantined == 0 and report.by_reader() == {"leef": 8}
    assert rows(store, 'select count(*) n from events where "@timestamp" is null or "source.ip" is null '
                       'or "user.name" is null or "event.severity" is null')[0]["n"] == 0
    ev = {r["log.file.line"]: r for r in rows(store, "select * from events")}
    exec_line = next(i for i, t in enumerate(lines, 1) if "|exec|" in t)
    assert_event(ev[exec_line], {
        "@timestamp": _ts("2019-05-09T22:07:36.130735Z"), "observer.vendor": "Panda Security",
        "observer.product": "paps", "rule.id": "exec", "event.severity": 1, "user.name": "hsmartin",
        "user.domain": "PROSAMX", "source.ip": "10.255.16.21", "host.name": "16_2470_21",
        "event.original": lines[exec_line - 1]})
    assert "ParentPath=PROGRAM_FILESX86|\\Google\\Chrome" in ev[exec_line]["event.original"]
