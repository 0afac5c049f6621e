"""EVTX reader on real files: counts equal the evtx parser's own iteration, fields on known events."""

from __future__ import annotations

import json
from pathlib import Path

import evtx
import pytest

from tests.conftest import assert_event, evaldata, rows, run_ingest


def _parser_count(path: Path) -> int:
    """The independent count: records the bare parser yields (skipping corrupt chunks)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sum(1 for _ in evtx.PyEvtxParser(str(path), skip_errors=True).records_json())


@pytest.mark.evaldata
@pytest.mark.parametrize("dataset", ["evtx_attack_samples", "deepbluecli_evtx", "evtx_parser_samples"])
def test_every_record_of_every_file_is_stored(dataset: str, settings) -> None:
    root = evaldata(dataset)
    files = sorted(root.rglob("*.evtx"))
    assert files, f"no .evtx under {root}"
    report, store = run_ingest([root], settings)
    expected = {str(f): _parser_count(f) for f in files}
    got = {r["path"]: r["n"] for r in rows(store, 'select "log.file.path" path, count(*) n from events group by 1')}
    # Files whose content is identical are stored once (idempotency by content).
    dupes = {r.path for r in report.results if r.status == "duplicate"}
    missing = {p: n for p, n in expected.items() if p not in got and p not in dupes and n}
    assert not missing
    wrong = {p: (got[p], n) for p, n in expected.items() if p in got and got[p] != n}
    assert not wrong, f"stored vs parser count differ: {wrong}"
    ids = rows(store, 'select count(*) n, count(distinct "event.id") d from events')[0]
    assert ids["n"] == ids["d"] == sum(got.values())


@pytest.mark.evaldata
def test_corrupt_chunks_are_quarantined_and_the_rest_is_read(settings) -> None:
    root = evaldata("evtx_parser_samples") / "samples"
    report, store = run_ingest([root / "sample_with_a_bad_chunk_magic.evtx"], settings)
    assert report.events == _parser_count(root / "sample_with_a_bad_chunk_magic.evtx") == 270
    q = rows(store, "select reason, record, \"offset\" from quarantine order by record")
    assert [r["record"] for r in q] == [6, 10]
    assert all("chunk header magic" in r["reason"] for r in q)
    assert q[0]["offset"] == 4096 + 6 * 65536
    assert report.exit_code == 3


@pytest.mark.evaldata
def test_sysmon_process_creation_fields(settings) -> None:
    f = evaldata("deepbluecli_evtx") / "evtx" / "metasploit-sysmon.evtx"
    _, store = run_ingest([f], settings)
    ev = rows(store, 'select * from events where "winlog.record_id" = 30451')[0]
    assert_event(ev, {
        "event.dataset": "windows.sysmon",
        "event.category": ["process"],
        "event.type": ["start"],
        "event.code": "1",
        "winlog.event_id": 1,
        "winlog.channel": "Microsoft-Windows-Sysmon/Operational",
        "host.name": "VALKYRIE.galactica.cc",
        "process.executable": "C:\\Windows\\System32\\wevtutil.exe",
        "process.name": "wevtutil.exe",
        "process.command_line": '"C:\\WINDOWS\\system32\\wevtutil.exe" cl security',
        "process.pid": 9044,
        "process.entity_id": "0FD50764-28F3-6440-E008-000000001800",
        "process.parent.executable": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "process.parent.name": "powershell.exe",
        "process.parent.pid": 7820,
        "process.working_directory": "C:\\labs\\",
        "process.hash.md5": "53748b0cd4c78af5ef1d4e77f3c873af",
        "process.hash.sha256": "e16b9d201ec1d7e29b3ad532a9ad8f1ae0cb5821bb916a79f6dbeb1c6e6b85fa",
        "user.name": "fgaeta",
        "user.domain": "VALKYRIE",
        "user.id": None,  # Sysmon names the user, not its SID (System UserID is the logging account)
    })
    assert str(ev["@timestamp"]).startswith("2023-04-19 17:46:27.021276")
    data = json.loads(ev["winlog.event_data"])  # every EventData field is kept
    assert data["IntegrityLevel"] == "High" and data["LogonId"] == "0x6cdfe"
    assert ev["log.file.path"] == str(f)
    assert ev["event.original"] is None  # EVTX: the record lives in winlog.*, not as text


@pytest.mark.evaldata
def test_logon_4624_fields(settings) -> None:
    root = evaldata("evtx_attack_samples")
    files = sorted(root.rglob("*.evtx"))
    _, store = run_ingest(files, settings)
    ev = rows(store, 'select * from events where "winlog.event_id" = 4624 and "source.ip" is not null '
                     'and "winlog.channel" = \'Security\' order by "@timestamp", "event.id" limit 1')[0]
    data = {k: (None if v in ("-", "") else v) for k, v in json.loads(ev["winlog.event_data"]).items()}
    assert_event(ev, {
        "event.dataset": "windows.security",
        "event.category": ["authentication"],
        "event.type": ["start"],
        "event.action": "logged-in",
        "event.outcome": "success",
        "user.name": data["TargetUserName"],
        "user.domain": data["TargetDomainName"],
        "user.id": data["TargetUserSid"],
        "source.ip": data["IpAddress"],
        "source.user.name": data["SubjectUserName"],
    })
    assert ev["source.port"] == (int(data["IpPort"]) or None)


@pytest.mark.evaldata
def test_security_4688_maps_new_process_and_creator(settings) -> None:
    root = evaldata("evtx_attack_samples")
    _, store = run_ingest(sorted(root.rglob("*.evtx")), settings)
    got = rows(store, 'select * from events where "winlog.event_id" = 4688 and "winlog.channel" = \'Security\' '
                      'and "process.executable" is not null limit 5')
    assert got
    for ev in got:
        data = json.loads(ev["winlog.event_data"])
        assert ev["process.executable"] == data["NewProcessName"]
        assert ev["process.pid"] == int(data["NewProcessId"], 16)
        assert ev["process.parent.pid"] == int(data["ProcessId"], 16)
        assert ev["event.category"] == ["process"]


@pytest.mark.evaldata
def test_fuzzed_evtx_never_crashes_the_run(tmp_path) -> None:
    """Real EVTX files, truncated and bit-flipped at random: records are kept or quarantined."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from phagocyte.config import load_settings

    original = (evaldata("deepbluecli_evtx") / "evtx" / "metasploit-sysmon.evtx").read_bytes()
    runs = iter(range(10**6))

    @hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cut=st.integers(0, len(original)), flips=st.lists(st.tuples(st.integers(0, len(original) - 1),
                                                                        st.integers(1, 255)), max_size=20))
    def run(cut: int, flips: list[tuple[int, int]]) -> None:
        data = bytearray(original[:cut])
        for pos, x in flips:
            if pos < len(data):
                data[pos] ^= x
        n = next(runs)
        f = tmp_path / f"f{n}.evtx"
        f.write_bytes(bytes(data))
        report, store = run_ingest([f], load_settings(tmp_path / f"home{n}"))
        (res,) = report.results
        assert res.status in ("ingested", "failed", "unrecognised", "duplicate")
        assert res.events <= 59
        stored = rows(store, "select count(*) n from events")[0]["n"]
        assert stored == res.events

    run()


@pytest.mark.evaldata
def test_sysmon_process_access_maps_the_source_process(settings) -> None:
    f = evaldata("deepbluecli_evtx") / "evtx" / "metasploit-sysmon.evtx"
    _, store = run_ingest([f], settings)
    ev = rows(store, 'select * from events where "winlog.record_id" = 30456')[0]
    data = json.loads(ev["winlog.event_data"])
    assert_event(ev, {
        "winlog.event_id": 10,
        "event.category": ["process"],
        "event.type": ["access"],
        "process.executable": data["SourceImage"],
        "process.name": "powershell.exe",
        "process.pid": data["SourceProcessId"],
        "process.entity_id": data["SourceProcessGUID"],
    })


def test_only_the_parsers_own_warnings_quarantine_a_chunk(settings, tmp_path: Path, monkeypatch) -> None:
    """``catch_warnings`` is process-wide: a warning another thread raises while the parser runs
    (a detector on a worker, a ResourceWarning from the GC) is passed on, not counted as a bad chunk."""
    import warnings

    from phagocyte.ingest.readers import evtx as reader_mod

    record = json.dumps({"Event": {"System": {
        "EventID": 4624, "Channel": "Security", "Computer": "pc1", "EventRecordID": 1,
        "TimeCreated": {"#attributes": {"SystemTime": "2024-01-02T03:04:05Z"}}},
        "EventData": {"TargetUserName": "bob"}}})

    class FakeParser:
        def __init__(self, path: str, **kw: object) -> None:
            pass

        def records_json(self):
            yield {"data": record}
            warnings.warn("unclosed file <_io.TextIOWrapper>", ResourceWarning, stacklevel=1)
            warnings.warn("Skipping EVTX data: RuntimeError: Failed to parse chunk number 2: bad magic",
                          RuntimeWarning, stacklevel=1)
            yield {"data": record}

    monkeypatch.setattr(reader_mod.evtx, "PyEvtxParser", FakeParser)
    f = tmp_path / "a.evtx"
    f.write_bytes(b"ElfFile\x00" + b"\x00" * 5000)
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        report, store = run_ingest([f], settings)
    assert report.events == 2 and report.quarantined == 1
    q = rows(store, "select reason, record, \"offset\" from quarantine")
    assert [(r["record"], r["offset"]) for r in q] == [(2, 4096 + 2 * 65536)]
    assert [w.category for w in outer if "unclosed file" in str(w.message)] == [ResourceWarning]
