"""Generic JSON-lines reader: ECS nested and dotted records, plain application logs, bad input, fuzz."""

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
from phagocyte.ingest.readers.jsonl import MAPPING, first_json_object
from phagocyte.schema import EVENT_SCHEMA
from tests.conftest import FIXTURES, assert_event, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "jsonl"


def _by_line(store, path: Path | str) -> dict[int, dict]:
    out = rows(store, f"select * from events where \"log.file.path\" = '{path}'")
    return {r["log.file.line"]: r for r in out}


def _ingest(settings, name: str) -> dict[int, dict]:
    f = FIX / name
    report, store = run_ingest([f], settings)
    n = sum(1 for ln in f.read_text().splitlines() if ln.strip())
    assert report.quarantined == 0 and report.by_reader() == {"jsonl": n}, report.to_dict()
    got = _by_line(store, f)
    assert all(json.loads(r["event.original"]) == json.loads(f.read_text().splitlines()[i - 1])
               for i, r in got.items())
    return got


def test_every_schema_field_is_mapped_from_records() -> None:
    provenance = {"event.id", "event.ingested", "log.file.path"}
    assert set(MAPPING.columns) == {f.name for f in EVENT_SCHEMA} - provenance


def test_ecs_nested(settings) -> None:
    got = _ingest(settings, "ecs_nested.ndjson")
    assert_event(got[1], {
        "@timestamp": datetime(2024, 7, 1, 9, 0, 0, 250000, tzinfo=UTC), "event.kind": "event",
        "event.category": ["process"], "event.type": ["start"], "event.action": "exec",
        "event.outcome": "success", "event.code": "4688", "event.dataset": "endpoint.process",
        "event.module": "endpoint", "host.name": "ws-7", "host.ip": "192.0.2.77",  # first of an ECS array
        "user.name": "erin", "user.domain": "EXAMPLE", "user.id": "S-1-5-21-1-2-3-1107", "process.pid": 3412,
        "process.name": "powershell.exe", "process.command_line": "powershell -enc SQBFAFgA",
        "process.executable": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "process.hash.sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "process.parent.pid": 1200, "process.parent.name": "explorer.exe", "tags": ["edr", "windows"],
        "log.file.line": 1, "log.offset": 0,
    })
    assert_event(got[2], {
        "event.kind": "alert", "event.category": ["intrusion_detection"],  # a scalar becomes a list
        "event.severity": 73, "source.ip": "198.51.100.3", "source.port": 4444, "destination.port": 49700,
        "destination.domain": "ws-7.example.local", "network.direction": "inbound",
        "network.protocol": "http",
        "url.full": "http://ws-7.example.local/x", "url.path": "/x", "http.request.method": "GET",
        "http.response.status_code": 200, "user_agent.original": "Mozilla/5.0", "rule.id": "R-17",
        "rule.ruleset": "custom", "threat.technique.id": ["T1059.001"], "threat.tactic.name": ["Execution"],
        "related.ip": ["198.51.100.3", "192.0.2.77"], "message": "Detection fired", "log.level": "warning",
    })
    assert_event(got[3], {
        "@timestamp": datetime(2024, 7, 1, 9, 0, 2, tzinfo=UTC),  # epoch seconds
        "dns.question.name": "example.org", "dns.question.type": "AAAA", "dns.response_code": "NOERROR",
        "dns.answers": '[{"data":"2001:db8::1","type":"AAAA"}]', "process.pid": None,  # "not a number"
        "event.dataset": "dns.custom", "event.kind": "event",
    })


def test_ecs_dotted(settings) -> None:
    got = _ingest(settings, "ecs_dotted.ndjson")
    assert_event(got[1], {
        "@timestamp": datetime(2024, 7, 1, 8, 0, 0, tzinfo=UTC), "event.kind": "alert",
        "event.dataset": "firewall.custom", "event.category": ["network"],
        "event.type": ["denied", "connection"],
        "event.action": "drop", "event.severity": 3, "source.ip": "203.0.113.9", "source.port": 51515,
        "destination.ip": "192.0.2.1", "destination.port": 22, "network.transport": "tcp",
        "observer.product": "ExampleFW", "observer.vendor": "Example", "rule.name": "block-ssh",
        "message": "dropped ssh",
    })
    assert_event(got[2], {
        "host.name": "srv-2", "user.name": "frank", "process.pid": 42, "process.name": "sshd",
        "file.path": "/tmp/x.sh", "file.hash.md5": "d41d8cd98f00b204e9800998ecf8427e",
        "registry.path": "HKLM\\Software\\Example", "tags": ["single-tag"], "log.level": "error",
        "event.dataset": "json", "event.kind": "event",
    })
    # The record's own event.original stays inside the verbatim record.
    assert json.loads(got[2]["event.original"])["event.original"] == "the source's own original text"


def test_plain_application_logs(settings) -> None:
    got = _ingest(settings, "app.log.json")

    def ts(*a: int) -> datetime:
        return datetime(2024, 7, 2, *a, tzinfo=UTC)

    assert {i: r["@timestamp"] for i, r in got.items()} == {
        1: ts(12, 0, 0, 500000), 2: ts(12, 0, 1, 250000), 3: ts(12, 0, 2, 123000), 4: ts(12, 0, 3),
        5: ts(12, 0, 4), 6: ts(12, 0, 5), 7: ts(12, 0, 6), 8: ts(12, 0, 7), 9: None, 10: ts(12, 0, 9),
    }
    assert_event(got[1], {"message": "service started", "log.level": "info", "event.dataset": "json",
                          "event.kind": "event"})
    assert_event(got[3], {"message": "payment failed", "log.level": "ERROR"})
    assert json.loads(got[3]["event.original"])["order"] == {"id": 991, "amount": 12.5}
    assert_event(got[9], {"message": "no time at all", "log.level": "debug"})


def test_json_array(settings) -> None:
    f = FIX / "array.json"
    report, store = run_ingest([f], settings)
    assert report.by_reader() == {"jsonl": 2}
    got = _by_line(store, f)
    assert_event(got[2], {"host.name": "a", "message": "first"})
    assert_event(got[3], {"host.name": "b", "message": "second",  # dotted spelling
                          "@timestamp": datetime(2024, 7, 3, 0, 0, 1, tzinfo=UTC)})


def test_sniff() -> None:
    r = get_reader("jsonl")
    assert r.sniff((FIX / "app.log.json").read_bytes(), "x") == 10
    assert r.sniff((FIX / "array.json").read_bytes(), "x") == 10
    assert r.sniff(codecs.BOM_UTF16_LE + '{"a": 1}\n'.encode("utf-16-le"), "x") == 10
    assert r.sniff(b'{"a": "' + b"x" * 70000, "x") == 10  # first line longer than the head
    assert r.sniff(b"{\n  \"pretty\": true\n}\n", "x") == 0  # one pretty-printed document
    assert r.sniff(b"[1, 2, 3]\n", "x") == 0
    assert r.sniff(b"<14>Jun  1 12:00:00 host app: text\n", "x") == 0
    assert r.sniff(b"", "x") == 0
    assert first_json_object(b'\xef\xbb\xbf{"k": 1}\r\n{"k": 2}') == {"k": 1}


# --- bad input ---------------------------------------------------------------------------------


def test_bad_lines(tmp_path, settings) -> None:
    f = tmp_path / "log.json"
    f.write_bytes(
        b'{"msg": "ok 1", "time": "2024-07-02T00:00:00Z"}\n'
        b'{"msg": "truncated", "ti\n'
        b"plain text line\n"
        b'{"msg": "caf\xe9 latin-1"}\n'
        b"42\n"
        b'{"msg": "big numbers", "@timestamp": 1e300, "source.port": 99999999999999999999999, '
        b'"process.pid": "0xffffffffffffffff", "event.severity": "NaN", "event.category": {"a": 1}}\n'
        b"\x00\x00\x00\n"
        b'{"msg": "ok 2", "ts": "Infinity"}'
    )
    _, store = run_ingest([f], settings, format="jsonl")
    got = _by_line(store, f)
    assert sorted(got) == [1, 4, 6, 8]
    assert got[4]["message"] == "caf\u00e9 latin-1"
    assert_event(got[6], {"@timestamp": None, "source.port": None, "process.pid": None,
                          "event.severity": None, "event.category": ['{"a":1}']})
    assert got[8]["@timestamp"] is None
    q = {r["line"]: r["reason"] for r in rows(store, "select line, reason from quarantine")}
    assert sorted(q) == [2, 3, 5, 7]
    assert q[5] == "JSON int, not an object" and all(q[i].startswith("not JSON") for i in (2, 3, 7))


def test_utf16_binary_empty(tmp_path, settings) -> None:
    u16 = tmp_path / "u16.json"
    u16.write_bytes(codecs.BOM_UTF16_LE + '{"msg": "\u00fcber", "ts": 0}\n{"msg": "2"}\n'.encode("utf-16-le"))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 16)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    report, store = run_ingest([u16, blob, empty], settings, format="jsonl")
    got = _by_line(store, u16)
    assert got[1]["message"] == "\u00fcber" and got[1]["@timestamp"] == datetime(1970, 1, 1, tzinfo=UTC)
    assert report.events == 2
    assert report.quarantined == sum(1 for ln in blob.read_bytes().split(b"\n") if ln.strip())


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_nothing_to_read_is_not_an_error(tmp_path, settings, content: bytes) -> None:
    f = tmp_path / "x.json"
    f.write_bytes(content)
    report, _ = run_ingest([f], settings, format="jsonl")
    assert report.events == 0 and report.quarantined == 0 and report.results[0].status == "ingested"


# --- fuzz --------------------------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
            | st.text(max_size=20) | st.sampled_from(["2024-01-01T00:00:00Z", "1e308", "-1", "0x7f", "inf"]))
_values = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=3)
                       | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=6)
_keys = st.sampled_from([
    "@timestamp", "timestamp", "time", "ts", "date", "eventTime", "msg", "message", "level", "host",
    "host.name", "host.ip", "event", "event.kind", "event.category", "tags", "source.port", "process",
    "process.pid", "related.ip", "threat", "x",
]) | st.text(max_size=8)


def _nonempty_lines(data: bytes) -> int:
    return sum(1 for ln in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if ln.strip())


def _ingest_bytes(data: bytes):
    return ingest_bytes(data, "jsonl", "in.json")


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_keys, _values, max_size=6), min_size=1, max_size=5), st.data())
def test_fuzz_records(records: list[dict], data) -> None:
    lines = [json.dumps(r, allow_nan=True) for r in records]
    lines = [ln[: data.draw(st.integers(0, len(ln)))] if data.draw(st.integers(0, 6)) == 0 else ln
             for ln in lines]
    raw = "\n".join(lines).encode()
    report, stored = _ingest_bytes(raw)
    assert stored == report.events
    assert report.events + report.quarantined == _nonempty_lines(raw)


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1500))
def test_fuzz_bytes(data: bytes) -> None:
    report, stored = _ingest_bytes(data)
    assert stored == report.events
    (res,) = report.results
    if res.status == "failed":  # archive magic bytes: a recorded source-level failure
        return
    if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not data.lstrip().startswith(b"["):
        assert report.events + report.quarantined == _nonempty_lines(data)


def test_records_of_a_one_line_array_keep_their_own_event_id(tmp_path: Path, settings) -> None:
    """An array written on one line: every record starts on line 1, so the line cannot tell them
    apart; they get no line number (their byte offset stays) and distinct ids, run after run."""
    f = tmp_path / "one-line.json"
    recs = [{"message": f"m{i}", "host": {"name": "h"}} for i in range(5)]
    f.write_text(json.dumps(recs) + "\n")
    report, store = run_ingest([f], settings)
    got = rows(store, 'select "event.id" id, "log.file.line" line, "log.offset" off, message from events '
                      "order by message")
    assert report.events == 5 and [r["message"] for r in got] == [f"m{i}" for i in range(5)]
    assert len({r["id"] for r in got}) == 5 and all(r["line"] is None for r in got)
    assert len({r["off"] for r in got}) == 5
    # a pretty-printed array keeps one line per record
    g = tmp_path / "pretty.json"
    g.write_text(json.dumps(recs, indent=1) + "\n")
    report, store = run_ingest([g], settings)
    sql = f"select \"log.file.line\" line from events where \"log.file.path\" = '{g}'"
    lines = [r["line"] for r in rows(store, sql)]
    assert len(lines) == 5 and None not in lines and len(set(lines)) == 5


def test_a_block_is_not_cut_between_records_of_one_line() -> None:
    from phagocyte.config import Limits
    from phagocyte.ingest.jsondocs import _array_blocks

    class Ctx:
        limits = Limits(batch_rows=2)

        def __init__(self, text: str) -> None:
            self.text = text

        def bad(self, *a: object, **k: object) -> None:
            raise AssertionError(a)

    import phagocyte.ingest.jsondocs as jd

    text = '[{"a":1},\n{"a":2}, {"a":3},\n{"a":4},\n{"a":5}]\n'
    orig = jd.read_document
    jd.read_document = lambda ctx: (ctx.text,)  # type: ignore[assignment]
    try:
        blocks = list(_array_blocks(Ctx(text)))  # type: ignore[arg-type]
    finally:
        jd.read_document = orig
    assert [b[1] for b in blocks] == [[1, None, None], [3, 4]]  # records 2 and 3 share line 2
