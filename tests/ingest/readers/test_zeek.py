"""Zeek reader: the real JSON sample logs, hand-written TSV/JSON fixtures, bad input and fuzzing."""

from __future__ import annotations

import codecs
import gzip
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.jsondocs import looks_like_json_array
from phagocyte.ingest.readers.zeek import ZeekReader, log_type_from_name
from tests.conftest import FIXTURES, assert_event, evaldata, rows, run_ingest

FIX = FIXTURES / "zeek"
SKIP_COLS = {"event.original", "event.id", "event.ingested", "log.file.path", "log.file.line", "log.offset"}


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _by_line(store, path_suffix: str) -> dict[int, dict[str, object]]:
    out = rows(store, f"""select * from events where "log.file.path" like '%{path_suffix}'""")
    return {r["log.file.line"]: r for r in out}


def _quarantine(store) -> list[dict[str, object]]:
    return rows(store, "select * from quarantine order by line")


# --- real data ------------------------------------------------------------------------------------


@pytest.mark.evaldata
def test_every_sample_log_is_stored_whole(settings) -> None:
    root = evaldata("zeek_sample_data") / "zeek-json"
    files = sorted(root.glob("*.json.gz"))
    assert len(files) == 30
    expected = {}
    for f in files:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            expected[str(f)[: -len(".gz")]] = sum(1 for line in fh if line.strip())
    report, store = run_ingest([root], settings)
    assert report.quarantined == 0
    assert {r.reader for r in report.results} == {"zeek"}
    got = {r["p"]: r["n"] for r in rows(store, 'select "log.file.path" p, count(*) n from events group by 1')}
    assert got == expected
    ds = {r["p"]: r["d"] for r in rows(store, 'select distinct "log.file.path" p, "event.dataset" d from events')}
    assert ds == {p: "zeek." + Path(p).name.split(".")[0] for p in expected}
    ids = rows(store, 'select count(*) n, count(distinct "event.id") d, count("@timestamp") t from events')[0]
    assert ids["n"] == ids["d"] == sum(expected.values())
    assert ids["t"] == ids["n"] - expected[str(root / "loaded_scripts.json")]  # loaded_scripts has no ts


@pytest.mark.evaldata
def test_known_sample_records(settings) -> None:
    root = evaldata("zeek_sample_data") / "zeek-json"
    names = ["ssh", "notice", "ntlm", "smb_files", "rdp", "kerberos", "known_services", "weird", "syslog", "ftp"]
    _, store = run_ingest([root / f"{n}.json.gz" for n in names], settings)
    common = {"event.module": "zeek", "observer.product": "Zeek", "observer.vendor": "Zeek"}
    ssh = _by_line(store, "/ssh.json")[1]
    assert_event(ssh, {
        **common, "event.dataset": "zeek.ssh", "event.code": "ssh", "event.kind": "event",
        "@timestamp": _ts("2018-03-24T17:16:39.739898Z"),
        "source.ip": "10.0.0.227", "source.port": 59849, "destination.ip": "10.47.8.50", "destination.port": 22,
        "network.protocol": "ssh", "event.outcome": "success",
        "event.category": ["network", "authentication"], "related.ip": ["10.0.0.227", "10.47.8.50"],
        "log.file.line": 1, "log.offset": 0,
    })
    assert '"host_key":"2d:37:6b:11:43:f8:96:08:fe:60:42:20:98:9f:75:af"' in ssh["event.original"]
    assert_event(_by_line(store, "/notice.json")[5], {
        "event.kind": "alert", "event.dataset": "zeek.notice", "event.category": ["intrusion_detection"],
        "rule.name": "SSL::Invalid_Server_Cert",
        "message": "SSL certificate validation failed with (unable to get local issuer certificate)",
        "source.ip": "10.47.2.152", "source.port": 2208, "destination.ip": "13.92.82.125",
        "destination.port": 443, "network.transport": "tcp", "@timestamp": _ts("2018-03-24T17:15:23.800012Z"),
    })
    assert_event(_by_line(store, "/ntlm.json")[24], {
        "user.name": "Administrator", "user.domain": "JERRY", "source.ip": "10.128.0.233",
        "destination.port": 135, "network.protocol": "ntlm",
    })
    assert_event(_by_line(store, "/smb_files.json")[7], {
        "event.action": "SMB::FILE_OPEN", "file.path": "\\\\10.47.21.82\\ADMIN$", "file.name": "Temp\\wdszAPrV.tmp",
        "network.protocol": "smb", "event.category": ["network", "file"],
    })
    assert_event(_by_line(store, "/rdp.json")[256], {"user.name": "nessus", "destination.port": 3389})
    assert_event(_by_line(store, "/kerberos.json")[1], {
        "event.action": "AS", "user.name": None, "user.domain": "NM", "destination.port": 808,
    })
    assert_event(_by_line(store, "/known_services.json")[3], {
        "host.ip": "10.47.3.200", "network.transport": "tcp", "network.protocol": "ssl", "source.ip": None,
        "related.ip": ["10.47.3.200"],
    })
    assert_event(_by_line(store, "/weird.json")[24108], {
        "event.action": "x509_cert_parse_error", "observer.name": "zeek", "source.ip": None,
    })
    assert_event(_by_line(store, "/syslog.json")[1], {
        "log.level": "info", "network.transport": "udp", "network.protocol": "syslog", "destination.port": 514,
    })
    assert_event(_by_line(store, "/ftp.json")[1], {"user.name": "anonymous", "event.action": "PASV"})


# --- fixtures -------------------------------------------------------------------------------------


def test_sniff_scores() -> None:
    r = ZeekReader()
    for name in ("conn.log", "dns.log", "http.log", "ssl.rotated.log"):
        assert r.sniff((FIX / name).read_bytes(), name) == 100
    assert r.sniff((FIX / "streaming.json").read_bytes(), "x.json") == 95
    assert r.sniff((FIX / "conn.json").read_bytes(), "conn.json") == 90
    assert r.sniff(b'{"ts":1.5,"fuid":"Fx","md5":"00"}\n', "files.json") == 70
    assert r.sniff(codecs.BOM_UTF16_LE + "#separator \\x09\n".encode("utf-16-le"), "x") == 100
    assert r.sniff(b'{"timestamp":"2024","event_type":"alert","src_ip":"1.2.3.4"}\n', "eve.json") == 0
    assert r.sniff(b'{"name":"x"}\n', "x.json") == 0
    assert r.sniff(b"hello\n", "conn.log") == 0
    assert r.sniff(b"", "conn.log") == 0


def test_log_type_from_file_name() -> None:
    assert log_type_from_name("/a/conn.log") == "conn"
    assert log_type_from_name("x/DNS.json") == "dns"
    assert log_type_from_name("logs.zip!2024-05-01/http.10:00:00-11:00:00.log") == "http"
    assert log_type_from_name("/a/-odd.log") == "unknown"


def test_tsv_and_json_give_identical_rows(settings) -> None:
    report, store = run_ingest([FIX / "conn.log", FIX / "conn.json"], settings)
    assert report.events == 6 and report.quarantined == 0
    tsv, js = _by_line(store, "/conn.log"), _by_line(store, "/conn.json")
    assert sorted(tsv) == [9, 10, 11] and sorted(js) == [1, 2, 3]
    for t_line, j_line in zip(sorted(tsv), sorted(js), strict=True):
        a = {k: v for k, v in tsv[t_line].items() if k not in SKIP_COLS}
        b = {k: v for k, v in js[j_line].items() if k not in SKIP_COLS}
        assert a == b
    raw = (FIX / "conn.log").read_text().splitlines()
    assert [tsv[n]["event.original"] for n in (9, 10, 11)] == raw[8:11]
    assert_event(tsv[10], {
        "@timestamp": datetime(2024, 5, 1, 10, 0, 1, 1, tzinfo=UTC), "event.dataset": "zeek.conn",
        "event.type": ["connection"], "event.category": ["network"], "source.ip": "192.168.1.10",
        "source.port": 51515, "destination.ip": "93.184.216.34", "destination.port": 443,
        "network.transport": "tcp", "network.protocol": "ssl,http",
    })
    assert_event(tsv[11], {"source.ip": "2001:db8::1", "network.transport": "icmp", "network.protocol": None,
                           "@timestamp": datetime(2024, 5, 1, 10, 0, 2, 999999, tzinfo=UTC)})
    assert tsv[9]["log.offset"] == len("\n".join(raw[:8])) + 1


def test_tsv_dns_http_markers_and_sets(settings) -> None:
    report, store = run_ingest([FIX / "dns.log", FIX / "http.log"], settings)
    assert report.events == 5 and report.quarantined == 0
    dns = _by_line(store, "/dns.log")
    assert_event(dns[9], {
        "event.dataset": "zeek.dns", "dns.question.name": "www.example.com", "dns.question.type": "A",
        "dns.response_code": "NOERROR", "dns.answers": "www.example.com.cdn.test,93.184.216.34",
        "network.protocol": "dns", "network.transport": "udp", "event.type": ["protocol", "info"],
    })
    assert_event(dns[10], {"dns.answers": None, "dns.response_code": "NXDOMAIN", "dns.question.type": "AAAA",
                           "@timestamp": datetime(2024, 5, 1, 10, 0, 5, 500000, tzinfo=UTC)})
    assert_event(dns[11], {"dns.question.name": None, "dns.question.type": None, "source.ip": "192.168.1.12"})
    http = _by_line(store, "/http.log")
    assert_event(http[9], {
        "event.dataset": "zeek.http", "url.domain": "www.example.org", "url.path": "/index.php?id=1\tunion",
        "http.request.method": "GET", "http.response.status_code": 200,
        "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) curl-ish", "event.category": ["network", "web"],
    })
    assert "\\x09union" in http[9]["event.original"]  # the raw line, escapes and all
    assert_event(http[10], {"user_agent.original": "", "http.response.status_code": 403,
                            "url.domain": "203.0.113.80:8080", "destination.port": 8080})


def test_tsv_rotated_file_with_two_header_blocks(settings) -> None:
    report, store = run_ingest([FIX / "ssl.rotated.log"], settings)
    assert report.events == 3 and report.quarantined == 0
    got = _by_line(store, "/ssl.rotated.log")
    assert sorted(got) == [9, 19, 20]  # header lines of both blocks and #close are counted
    assert_event(got[9], {"destination.domain": "login.example.net", "event.dataset": "zeek.ssl",
                          "network.protocol": "tls", "destination.ip": "198.51.100.7"})
    assert_event(got[19], {"destination.domain": "mail.example.net", "source.ip": "192.168.1.14",
                           "@timestamp": datetime(2024, 5, 1, 11, 1, 40, tzinfo=UTC)})
    assert_event(got[20], {"destination.domain": None, "source.port": 52002})


def test_streaming_json_mapping_branches(settings) -> None:
    report, store = run_ingest([FIX / "streaming.json"], settings)
    assert report.events == 18 and report.quarantined == 0
    ev = _by_line(store, "/streaming.json")
    assert_event(ev[1], {"event.kind": "alert", "rule.name": "SSH::Password_Guessing", "source.ip": "192.168.1.20",
                         "message": "192.168.1.20 appears to be guessing SSH passwords (seen in 30 connections).",
                         "@timestamp": datetime(2024, 5, 1, 10, 0, 59, 500000, tzinfo=UTC)})
    assert_event(ev[2], {"rule.name": "Scan::Port_Scan", "source.ip": "192.168.1.21", "destination.ip": "10.0.0.6",
                         "destination.port": 8080, "observer.name": "worker-1", "source.port": None})
    assert_event(ev[3], {"event.dataset": "zeek.files", "event.category": ["file"], "file.name": "setup.exe",
                         "file.hash.md5": "0123456789abcdef0123456789abcdef",
                         "file.hash.sha1": "0123456789abcdef0123456789abcdef01234567",
                         "file.hash.sha256": "0123456789abcdef" * 4,
                         "source.ip": "203.0.113.80", "destination.ip": "192.168.1.10"})
    assert_event(ev[4], {"user.name": "alice", "user.domain": "CORP.EXAMPLE", "event.action": "TGS",
                         "event.outcome": "failure", "network.protocol": "kerberos"})
    assert_event(ev[5], {"user.name": "bob", "user.domain": "CORP", "event.outcome": "success"})
    assert_event(ev[6], {"user.name": "carol", "network.protocol": "rdp"})
    assert_event(ev[7], {"file.path": "\\\\FS01\\ADMIN$", "file.name": "evil.exe", "event.action": "SMB::FILE_WRITE"})
    assert_event(ev[8], {"source.ip": "192.168.1.40", "destination.ip": "192.168.1.1",
                         "event.action": "REQUEST,ACK", "network.protocol": "dhcp"})
    assert_event(ev[9], {"user.name": "anonymous", "event.action": "RETR", "network.protocol": "ftp"})
    assert_event(ev[10], {"url.domain": "downloads.example.com", "url.path": "/files/setup.exe",
                          "http.request.method": "GET", "http.response.status_code": 200,
                          "user_agent.original": "Wget/1.21"})
    assert_event(ev[11], {"dns.question.name": "mail.example.com", "dns.question.type": "MX",
                          "dns.answers": "10 mx1.example.com,20 mx2.example.com"})
    assert_event(ev[12], {"destination.domain": "portal.example.net", "network.protocol": "tls",
                          "network.community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="})
    assert_event(ev[13], {"event.outcome": "failure", "event.category": ["network", "authentication"]})
    assert_event(ev[14], {"event.action": "truncated_header", "observer.name": "worker-2", "related.ip": []})
    assert_event(ev[15], {"log.level": "warning", "message": ev[15]["message"], "network.transport": "udp"})
    assert ev[15]["message"].startswith("sshd[123]: Failed password")
    assert_event(ev[16], {"host.ip": "10.0.0.14", "network.protocol": "ftp", "network.transport": "tcp"})
    assert_event(ev[17], {"@timestamp": None, "event.dataset": "zeek.loaded_scripts"})
    assert_event(ev[18], {"user_agent.original": "Thunderbird 115", "file.path": None, "network.protocol": "smtp"})


def test_json_without_path_takes_the_file_name(settings, tmp_path: Path) -> None:
    f = tmp_path / "dns.2024-05-01.log"
    f.write_text('{"ts":1714557600.5,"uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":5353,'
                 '"id.resp_h":"10.0.0.53","id.resp_p":53,"query":"a.example"}\n')
    _, store = run_ingest([f], settings)
    assert_event(rows(store, "select * from events")[0], {
        "event.dataset": "zeek.dns", "dns.question.name": "a.example",
        "@timestamp": datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)})


def test_log_type_is_sanitised(settings, tmp_path: Path) -> None:
    f = tmp_path / "odd.json"
    f.write_text('{"_path":"../Evil Path/x","ts":"2024-05-01T10:00:00Z","uid":"C1"}\n'
                 '{"_path":"CONN","ts":"2024-05-01T10:00:00Z","uid":"C2"}\n')
    _, store = run_ingest([f], settings)
    got = [r["d"] for r in rows(store, 'select "event.dataset" d from events order by "log.file.line"')]
    assert got == ["zeek._evil_path_x", "zeek.conn"]


# --- bad input ------------------------------------------------------------------------------------

GOOD = b'{"_path":"conn","ts":"2024-05-01T10:00:00Z","uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":1}'


def test_bad_json_lines_are_quarantined(settings, tmp_path: Path) -> None:
    f = tmp_path / "conn.json"
    f.write_bytes(b"\n".join([
        GOOD,
        b"this is not json",
        GOOD[:40],                                   # truncated record
        GOOD.replace(b'"C1"', b'"C\xe9"'),           # Latin-1 byte: kept, decoded as Latin-1
        b"[1, 2]",                                   # JSON, but not an object
        b"",
        GOOD,
    ]) + b"\n")
    report, store = run_ingest([f], settings)
    assert report.events == 3 and report.quarantined == 3
    assert sorted(_by_line(store, "/conn.json")) == [1, 4, 7]
    q = _quarantine(store)
    assert [r["line"] for r in q] == [2, 3, 5]
    assert all(r["reason"].startswith(("not JSON", "JSON list")) for r in q), q
    assert q[2]["reason"] == "JSON list, not an object"


def test_utf16_empty_and_binary_sources(settings, tmp_path: Path) -> None:
    u16 = tmp_path / "u16.json"
    u16.write_bytes(codecs.BOM_UTF16_LE + (GOOD.decode() + "\n" + GOOD.decode() + "\n").encode("utf-16-le"))
    tsv16 = tmp_path / "conn16.log"
    tsv16.write_bytes(codecs.BOM_UTF16_LE + (FIX / "conn.log").read_text().encode("utf-16-le"))
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    report, store = run_ingest([u16, tsv16], settings)
    assert report.events == 5 and report.quarantined == 0
    assert sorted(_by_line(store, "/conn16.log")) == [9, 10, 11]
    report, store = run_ingest([empty, blob], load_settings(tmp_path / "h2"), format="zeek")
    assert report.events == 0
    assert {r.status for r in report.results} == {"ingested"}
    q = _quarantine(store)
    assert q and all(r["path"].endswith("blob.bin") and r["reason"].startswith("not JSON") for r in q)


def test_bad_tsv_rows_are_quarantined(settings, tmp_path: Path) -> None:
    lines = (FIX / "conn.log").read_text().splitlines()
    f = tmp_path / "conn.log"
    f.write_text("\n".join([
        lines[0], lines[1],
        lines[8],                                 # 3: data before #fields
        *lines[2:8],                              # 4-9: rest of the header
        lines[8],                                 # 10: good
        "\t".join(lines[9].split("\t")[:5]),      # 11: too few fields
        lines[9].replace("\t51515\t", "\tabc\t"),  # 12: a port that is not a number: kept, port empty
        "\xff garbage \x00",                      # 13: one field
        lines[10],                                # 14: good
    ]) + "\n")
    report, store = run_ingest([f], settings)
    assert report.events == 3 and report.quarantined == 3
    got = _by_line(store, "/conn.log")
    assert sorted(got) == [10, 12, 14]
    assert got[12]["source.port"] is None and got[12]["source.ip"] == "192.168.1.10"
    q = _quarantine(store)
    assert [(r["line"], r["reason"]) for r in q] == [
        (3, "Zeek TSV: data line before a #fields header"),
        (11, "Zeek TSV: 5 fields, #fields names 21"),
        (13, "Zeek TSV: 1 fields, #fields names 21"),
    ]


# --- fuzzing --------------------------------------------------------------------------------------


def _nonempty_lines(data: bytes) -> list[bytes]:
    return [p for p in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if p.strip()]


def _ingest_many(datas: list[bytes], suffix: str) -> list[tuple[str, int, list[dict[str, object]]]]:
    """Ingest each input as its own file in one pipeline run (a run has a fixed cost that would
    dominate one tiny input); per input: its status, stored count and quarantine rows."""
    with tempfile.TemporaryDirectory() as d:
        paths = [Path(d) / f"in{i}{suffix}" for i in range(len(datas))]
        for f, data in zip(paths, datas, strict=True):
            f.write_bytes(data)
        report, store = run_ingest(paths, load_settings(Path(d) / "home"), format="zeek")
        status = {r.path: r.status for r in report.results}
        stored = {r["p"]: r["n"] for r in rows(store, 'select "log.file.path" p, count(*) n from events group by 1')}
        q = _quarantine(store)
    return [(status[str(f)], stored.get(str(f), 0), [r for r in q if r["path"] == str(f)]) for f in paths]


def _usable(data: bytes) -> bool:
    """Inputs the accounting below covers: not an archive, a UTF-16 text or a JSON array."""
    return not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"\x1f\x8b", b"PK")) \
        and not looks_like_json_array(data)


def _check(datas: list[bytes], suffix: str) -> None:
    for data, (status, n, q) in zip(datas, _ingest_many(datas, suffix), strict=True):
        assert status == "ingested"
        assert n + len(q) == _expected_records(data), (data, n, q)
        assert not any("reader failed" in r["reason"] or "reading stopped" in r["reason"] for r in q)


def _expected_records(data: bytes) -> int:
    """Records the reader must account for: every non-empty line, except, in TSV mode, the
    header lines from the first ``#separator`` line on."""
    lines = [p.removesuffix(b"\r") for p in _nonempty_lines(data)]
    if not data.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n").startswith(b"#separator "):
        return len(lines)
    n, header = 0, False
    for p in lines:
        if p.startswith(b"#separator "):
            header = True
        elif not (header and p.startswith(b"#")):
            n += 1
    return n


FUZZ = hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SEEDS = [(FIX / n).read_bytes() for n in ("streaming.json", "conn.log", "http.log", "ssl.rotated.log")]


@FUZZ
@given(st.lists(st.binary(max_size=600).filter(_usable), min_size=1, max_size=6, unique=True))
def test_fuzz_arbitrary_bytes(datas: list[bytes]) -> None:
    _check(datas, ".json")


def _mutate(seed: int, edits: list[tuple[int, bytes]]) -> bytes:
    data = bytearray(_SEEDS[seed])
    for pos, junk in edits:
        pos %= len(data)
        data[pos : pos + len(junk)] = junk  # overwrite, or extend at the end
    return bytes(data)


_MUTATED = st.builds(_mutate, st.sampled_from(range(len(_SEEDS))),
                     st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
                              min_size=1, max_size=6))


@FUZZ
@given(st.lists(_MUTATED.filter(_usable), min_size=1, max_size=6, unique=True))
def test_fuzz_mutated_records(datas: list[bytes]) -> None:
    _check(datas, ".log")
