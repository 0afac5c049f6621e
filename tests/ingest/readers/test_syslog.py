"""Syslog reader: hand-written auth.log / RFC 3164 / RFC 5424 / ISO-timestamp files, exact fields
of every variant, the year guess, real log lines from the Wazuh rule tests, bad input, hostile
lines and fuzzing through the real pipeline."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from phagocyte.config import load_settings
from phagocyte.ingest.reader import choose
from phagocyte.ingest.readers.syslog import Clock, SyslogReader, parse_line, reference_time
from phagocyte.ingest.source import Source
from tests.conftest import FIXTURES, assert_event, evaldata, ingest_bytes, rows, run_ingest

FIX = FIXTURES / "syslog"
REF = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


def _us(s: str) -> int:
    return (_ts(s) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _copy(tmp_path: Path, name: str, when: datetime) -> Path:
    """The fixture copied with a chosen mtime (the year of year-less dates comes from it)."""
    dst = tmp_path / name
    shutil.copy(FIX / name, dst)
    os.utime(dst, (when.timestamp(), when.timestamp()))
    return dst


def _nonempty(data: bytes) -> int:
    return sum(1 for p in data.split(b"\n") if p.strip())


def _by_line(store) -> dict[int, dict]:
    return {r["log.file.line"]: r for r in rows(store, "select * from events")}


def _source(data: bytes, path: str = "mem") -> Source:
    return Source(path=path, id="0" * 64, opener=lambda: io.BytesIO(data), head=data[:65536])


# --- fixtures through the pipeline ----------------------------------------------------------------


def test_auth_log_every_line_stored_with_security_fields(tmp_path, settings) -> None:
    path = _copy(tmp_path, "auth.log", datetime(2024, 1, 2, 12, 0, tzinfo=UTC))
    report, store = run_ingest([path], settings)
    data = path.read_bytes()
    assert report.quarantined == 0
    assert report.by_reader() == {"syslog": _nonempty(data)} == {"syslog": 28}
    ev = _by_line(store)
    text = data.decode().split("\n")
    for no, e in ev.items():
        assert e["event.original"] == text[no - 1]
        assert e["log.offset"] == len("\n".join(text[: no - 1]).encode()) + (1 if no > 1 else 0)
        assert e["host.name"] == "bastion" and e["event.kind"] == "event"
    base = {"event.dataset": "system.auth", "event.module": "system"}
    # December lines take the year before the file's January mtime.
    assert_event(ev[1], {**base, "@timestamp": _ts("2023-12-31T23:58:01Z"), "process.name": "CRON",
                         "event.provider": "CRON", "process.pid": 20111, "event.category": ["session"],
                         "event.type": ["start"], "event.action": "session_opened", "user.name": "root",
                         "source.user.name": None, "log.file.line": 1})
    assert_event(ev[2], {"event.type": ["end"], "event.action": "session_closed", "user.name": "root"})
    assert_event(ev[3], {**base, "event.category": ["authentication"], "event.type": ["info"],
                         "event.action": "ssh_invalid_user", "event.outcome": "failure", "user.name": "admin",
                         "source.ip": "203.0.113.45", "source.port": 51022, "related.ip": ["203.0.113.45"],
                         "network.protocol": "ssh"})
    assert_event(ev[4], {"event.action": "ssh_login", "event.outcome": "failure", "user.name": "admin",
                         "source.ip": "203.0.113.45", "source.port": 51022})
    assert_event(ev[5], {"@timestamp": _ts("2023-12-31T23:59:20Z"), "event.action": "ssh_login",
                         "event.outcome": "failure", "user.name": "root", "source.port": 51030,
                         "message": "Failed password for root from 203.0.113.45 port 51030 ssh2"})
    assert_event(ev[6], {"event.action": "authentication_failure", "event.outcome": "failure",
                         "user.name": "root", "source.ip": "203.0.113.45", "source.user.name": None})
    assert_event(ev[7], {"@timestamp": _ts("2024-01-01T00:00:03Z"), "event.action": "ssh_login",
                         "event.outcome": "failure", "user.name": "root"})
    assert_event(ev[8], {"event.action": "ssh_max_tries", "user.name": "root", "source.port": 51030})
    assert_event(ev[9], {**base, "event.action": None, "event.category": None, "user.name": None})
    assert_event(ev[11], {"@timestamp": _ts("2024-01-01T08:14:55Z"),
                          "event.category": ["authentication", "session"], "event.type": ["start"],
                          "event.action": "ssh_login", "event.outcome": "success", "user.name": "alice",
                          "source.ip": "198.51.100.23", "source.port": 60222,
                          "process.pid": 21001})
    assert_event(ev[13], {"process.name": "systemd-logind", "event.action": "session_opened",
                          "user.name": "alice"})
    assert_event(ev[14], {"process.name": "sudo", "process.pid": None, "event.category": ["process"],
                          "event.type": ["start"], "event.action": "sudo", "event.outcome": "success",
                          "user.name": "alice", "user.effective.name": "root",
                          "process.command_line": "/usr/bin/systemctl restart nginx",
                          "process.working_directory": "/home/alice",
                          "message": "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
                                     "COMMAND=/usr/bin/systemctl restart nginx"})
    assert_event(ev[15], {"event.action": "session_opened", "user.name": "root", "source.user.name": "alice"})
    assert_event(ev[17], {"event.category": ["authentication"], "event.outcome": "failure",
                          "user.name": "bob", "user.effective.name": "root",
                          "process.command_line": "/bin/cat /etc/shadow"})
    assert_event(ev[18], {"event.type": ["denied"], "event.outcome": "failure", "user.name": "mallory",
                          "process.command_line": "/bin/bash"})
    assert_event(ev[19], {"event.action": "su", "event.outcome": "success", "user.name": "alice",
                          "user.effective.name": "root"})
    assert_event(ev[21], {"event.action": "su", "event.outcome": "failure", "user.name": "bob",
                          "user.effective.name": "postgres"})
    assert_event(ev[22], {"event.category": ["iam"], "event.type": ["user", "creation"],
                          "event.action": "user_created", "user.target.name": "backdoor",
                          "process.pid": 21100})
    assert_event(ev[23], {"event.action": "password_changed", "user.target.name": "backdoor"})
    assert_event(ev[24], {"event.type": ["user", "deletion"], "event.action": "user_deleted",
                          "user.target.name": "backdoor"})
    assert_event(ev[25], {**base, "event.action": None})
    assert_event(ev[26], {"event.category": ["session"], "event.type": ["end"],
                          "event.action": "ssh_disconnect", "user.name": "alice",
                          "source.ip": "198.51.100.23"})
    assert_event(ev[27], {"event.action": "session_closed", "user.name": None})
    assert_event(ev[28], {"event.outcome": "success", "user.name": "deploy", "source.ip": "2001:db8::17",
                          "source.port": 40100})
    assert_event(ev[29], {"event.dataset": "syslog", "event.module": "syslog", "process.name": "kernel",
                          "event.category": None, "@timestamp": _ts("2024-01-01T09:10:00Z")})


def test_rfc5424_fixture(tmp_path, settings) -> None:
    path = _copy(tmp_path, "rfc5424.log", REF)
    report, store = run_ingest([path], settings)
    assert report.quarantined == 0 and report.by_reader() == {"syslog": 7}
    ev = _by_line(store)
    assert_event(ev[1], {"@timestamp": _ts("2003-10-11T22:14:15.003Z"), "host.name": "mymachine.example.com",
                         "process.name": "su", "process.pid": None, "event.code": "ID47",
                         "log.level": "critical", "message": "'su root' failed for lonvick on /dev/pts/8",
                         "event.dataset": "system.auth"})
    assert_event(ev[2], {"@timestamp": _ts("2003-08-24T12:14:15.000003Z"), "host.name": "192.0.2.1",
                         "process.name": "myproc", "process.pid": 8710, "event.code": None,
                         "log.level": "notice", "message": "%% It's time to make the do-nuts.",
                         "event.dataset": "syslog"})
    assert_event(ev[3], {"message": "An application event log entry...", "event.provider": "evntslog"})
    assert ev[3]["event.original"].startswith("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com ")
    assert_event(ev[4], {"message": "", "event.code": "ID47"})
    assert_event(ev[5], {"@timestamp": _ts("2024-01-15T10:22:01.123456Z"), "process.pid": 4242,
                         "log.level": "informational", "event.action": "ssh_login", "user.name": "carol",
                         "source.ip": "192.0.2.99", "message": "Accepted password for carol from 192.0.2.99 "
                                                               "port 50000 ssh2"})
    assert_event(ev[6], {"@timestamp": None, "host.name": None, "process.name": None,
                         "message": "every header field is nil", "log.level": "informational"})
    assert_event(ev[7], {"@timestamp": _ts("2024-01-15T16:25:50Z"), "host.name": "fw01",
                         "process.name": "CheckPoint", "process.pid": 19710, "log.level": None})


def test_iso_timestamp_fixture(tmp_path, settings) -> None:
    report, store = run_ingest([FIX / "messages_iso.log"], settings)
    assert report.quarantined == 0 and report.by_reader() == {"syslog": 6}
    ev = _by_line(store)
    assert_event(ev[1], {"@timestamp": _ts("2024-01-15T09:22:01.123456Z"), "host.name": "deb12",
                         "process.name": "sshd", "process.pid": 1234, "event.dataset": "system.auth",
                         "event.outcome": "success", "user.name": "carol", "source.port": 50000})
    assert_event(ev[2], {"event.action": "session_opened", "user.name": "carol"})
    assert_event(ev[3], {"event.dataset": "syslog", "process.name": "systemd", "process.pid": 1})
    assert_event(ev[4], {"@timestamp": _ts("2024-01-15T09:25:00.5Z"), "process.name": "kernel"})
    assert_event(ev[5], {"@timestamp": _ts("2024-01-15T09:30:00Z"), "process.name": "CRON",
                         "event.dataset": "syslog"})
    assert_event(ev[6], {"@timestamp": _ts("2024-01-15T09:26:00Z"), "log.level": "informational",
                         "process.name": "dhclient", "message": "DHCPACK of 192.0.2.10 from 192.0.2.1"})


def test_rfc3164_variants_fixture(tmp_path, settings) -> None:
    path = _copy(tmp_path, "rfc3164.log", REF)
    report, store = run_ingest([path], settings)
    assert report.quarantined == 0 and report.by_reader() == {"syslog": 8}
    ev = _by_line(store)
    assert_event(ev[1], {"@timestamp": _ts("2023-10-11T22:14:15Z"), "host.name": "mymachine",
                         "process.name": "su", "log.level": "critical",
                         "message": "'su root' failed for lonvick on /dev/pts/8"})
    assert_event(ev[2], {"@timestamp": _ts("2024-02-05T17:32:18Z"), "host.name": "10.0.0.99",
                         "process.name": None, "message": "Use the BFG!"})
    assert_event(ev[3], {"log.level": "emergency", "process.name": "sched", "process.pid": 0})
    assert_event(ev[4], {"host.name": None, "process.name": "myapp", "process.pid": 321,
                         "message": "no host field in this local message"})
    assert_event(ev[5], {"@timestamp": _ts("2024-03-01T12:00:00Z"), "host.name": "core-rtr",
                         "log.level": "notice"})
    assert_event(ev[6], {"@timestamp": _ts("2015-11-13T13:40:01Z"), "host.name": "ether",
                         "process.name": "rsyslogd-2177"})
    assert_event(ev[7], {"@timestamp": _ts("2024-02-29T10:22:01.25Z"), "process.name": "nginx"})
    assert_event(ev[8], {"process.name": None, "message": "-- MARK --"})


# --- parse level ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("<13>Jan  5 01:02:03 h prog: m", {"@timestamp": _us("2024-01-05T01:02:03Z"), "host.name": "h",
                                       "process.name": "prog", "process.pid": None, "message": "m"}),
    ("Jan 15 10:22:01 h postfix/smtpd[77]: connect from x",
     {"process.name": "postfix/smtpd", "process.pid": 77}),
    ("Jan 15 10:22:01 h su(pam_unix)[23164]: x", {"process.name": "su(pam_unix)", "process.pid": 23164}),
    ("Jan 15 10:22:01 h app[abc]: x", {"process.name": "app", "process.pid": None, "message": "x"}),
    ("Jan 15 10:22:01 h", {"host.name": "h", "message": ""}),
    ("<200>Jan 15 10:22:01 h p: x", {"log.level": None, "message": "x"}),
    ("2024-01-15 10:22:01.5-0700  mac sshd[9]: x", {"@timestamp": _us("2024-01-15T17:22:01.5Z"),
                                                    "host.name": "mac"}),
    ("Jan 15 10:22:01 h sshd[1]: Failed publickey for root from fe80::1%eth0 port 22 ssh2",
     {"user.name": "root", "source.ip": "fe80::1", "source.port": 22, "event.outcome": "failure"}),
    ("Jan 15 10:22:01 h sshd[1]: Accepted password for bob from 192.0.2.1 port 99999 ssh2",
     {"source.ip": "192.0.2.1", "source.port": None}),
    ("Jan 15 10:22:01 h sshd[1]: Invalid user  from 192.0.2.1 port 4", {"user.name": "", "source.port": 4}),
    ("Jan 15 10:22:01 h sshd[1]: Illegal user dcid from 192.168.1.2",
     {"user.name": "dcid", "source.port": None}),
    ("Jan 15 10:22:01 h sudo: bob : command not allowed ; TTY=pts/3 ; PWD=/ ; USER=root ; "
     "COMMAND=/bin/sh -c a ; b",
     {"event.outcome": "failure", "process.command_line": "/bin/sh -c a ; b",
      "process.working_directory": "/"}),
    ("Jan 15 10:22:01 h sudo: something unrelated", {"event.dataset": "system.auth", "event.action": None}),
    ("Jan 15 10:22:01 h su: Successful su for root by alice",
     {"user.name": "alice", "user.effective.name": "root", "event.outcome": "success"}),
    ("Jan 15 10:22:01 h groupadd[5]: new group: name=devs, GID=1003",
     {"event.type": ["group", "creation"], "user.target.name": None}),
    ("Jan 15 10:22:01 h userdel[5]: delete user `logr'", {"user.target.name": "logr"}),
    ("Jan 15 10:22:01 h sshd[2]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
     "ruser=x rhost=host.example.org user=bob",
     {"user.name": "bob", "source.user.name": "x", "source.ip": None, "source.domain": "host.example.org"}),
])
def test_parse_variants(line: str, expected: dict) -> None:
    row = parse_line(line, Clock(REF))
    assert row is not None
    assert_event(row, expected)


@pytest.mark.parametrize("line", [
    "", "hello world", "Jan 15 10:22", "Foo 15 10:22:01 h p: x", "Jan 32 10:22:01 h p: x",
    "Jan 15 25:22:01 h x",
    "<13", "<13>", "<x>Jan 15 10:22:01 h p: x", "<34>1 not-a-time h a p m - x", "{\"a\": 1}",
    "2024-13-45T00:00:00Z h x",
])
def test_not_syslog(line: str) -> None:
    assert parse_line(line, Clock(REF)) is None


def test_year_guess() -> None:
    c = Clock(datetime(2024, 1, 2, 12, 0, tzinfo=UTC))
    assert c.bsd("Dec", "31", None, "23", "59", "59") == _us("2023-12-31T23:59:59Z")
    assert c.bsd("Jan", "3", None, "10", "00", "00") == _us("2024-01-03T10:00:00Z")  # a day ahead: kept
    assert c.bsd("Jan", "4", None, "00", "00", "00") == _us("2023-01-04T00:00:00Z")
    assert c.bsd("Jun", "1", "2019", "00", "00", "00") == _us("2019-06-01T00:00:00Z")  # an explicit year wins
    c = Clock(datetime(2025, 3, 1, tzinfo=UTC))
    assert c.bsd("Feb", "29", None, "08", "00", "00") == _us("2024-02-29T08:00:00Z")
    assert c.bsd("Feb", "30", None, "08", "00", "00") is None


def test_reference_time_from_file_or_its_gz(tmp_path) -> None:
    when = datetime(2019, 6, 1, tzinfo=UTC)
    plain = _copy(tmp_path, "auth.log", when)
    assert reference_time(_source(b"", str(plain))) == when
    gz = tmp_path / "old.log.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    os.utime(gz, (when.timestamp(), when.timestamp()))
    assert reference_time(_source(b"", str(tmp_path / "old.log"))) == when
    member = reference_time(_source(b"", f"{gz}!inner.log"))
    assert abs((member - datetime.now(UTC)).total_seconds()) < 60


def test_gzipped_auth_log_takes_year_from_the_gz(tmp_path, settings) -> None:
    gz = tmp_path / "auth.log.2.gz"
    gz.write_bytes(gzip.compress((FIX / "auth.log").read_bytes()))
    when = datetime(2019, 1, 5, tzinfo=UTC)
    os.utime(gz, (when.timestamp(), when.timestamp()))
    report, store = run_ingest([gz], settings)
    assert report.quarantined == 0 and report.events == 28
    years = rows(store, 'select distinct year("@timestamp") y from events order by 1')
    assert [r["y"] for r in years] == [2018, 2019]


# --- sniffing -------------------------------------------------------------------------------------------


def test_sniff_scores() -> None:
    r = SyslogReader()
    for name in ("auth.log", "rfc5424.log", "messages_iso.log", "rfc3164.log"):
        head = (FIX / name).read_bytes()
        assert 50 <= r.sniff(head, name) <= 70, name
        reader, _ = choose(_source(head))
        assert reader is not None and reader.name == "syslog"
    assert r.sniff(b'{"timestamp": "2024-01-15T10:22:01Z", "a": 1}\n', "x.log") == 0
    assert r.sniff(b"", "x") == 0
    assert r.sniff(b"2024-01-15T10:22:01Z INFO starting\n2024-01-15T10:22:02Z INFO ready\n", "app.log") == 0
    assert r.sniff(b"hello\nworld\nJan 15 10:22:01 h p: x\n", "x") == 0
    # A head cut inside its last line still counts its complete lines.
    head = ((FIX / "auth.log").read_bytes() * 200)[:65536]
    assert r.sniff(head, "auth.log") == 60


def test_cef_inside_syslog_goes_to_cef() -> None:
    head = b"<134>Jan 15 10:22:01 fw CEF:0|V|P|1|100|n|5|src=10.0.0.1\n" * 3
    reader, score = choose(_source(head))
    assert reader is not None and reader.name == "cef" and score > SyslogReader().sniff(head, "x")


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_lines_quarantined_good_kept(tmp_path, settings) -> None:
    good = (FIX / "auth.log").read_bytes().split(b"\n")[:3]
    data = b"\n".join([
        good[0], b"garbage line without a header", good[1],
        b"Jan 15 10:22:01 h\xe9te prog: caf\xe9 Latin-1", b"\x00\x01\x02\xff\xfe binary \x00 blob",
        b"Jan 15 10:2", good[2], b"",
    ])
    path = tmp_path / "mixed.log"
    path.write_bytes(data)
    report, store = run_ingest([path], settings, format="syslog")
    assert report.events == 4 and report.quarantined == 3
    q = rows(store, "select line, reason, excerpt from quarantine order by line")
    assert [r["line"] for r in q] == [2, 5, 6]
    assert all("not a syslog line" in r["reason"] for r in q)
    assert q[0]["excerpt"] == "garbage line without a header"
    latin = rows(store, 'select "host.name" h, message from events where "log.file.line" = 4')[0]
    assert latin == {"h": "h\xe9te", "message": "caf\xe9 Latin-1"}
    assert report.results[0].warnings == {"lines not UTF-8, decoded as Latin-1": 2}


def test_utf16_and_empty(tmp_path, settings) -> None:
    text = (FIX / "rfc3164.log").read_text()
    u16 = tmp_path / "u16.log"
    u16.write_bytes(text.encode("utf-16"))
    report, store = run_ingest([u16], settings)
    assert report.by_reader() == {"syslog": 8} and report.quarantined == 0
    assert rows(store, 'select message from events where "log.file.line" = 2')[0]["message"] == "Use the BFG!"
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    with tempfile.TemporaryDirectory() as d:
        report, _ = run_ingest([empty], load_settings(d), format="syslog")
    assert report.events == 0 and report.quarantined == 0 and report.count("failed") == 0


HOSTILE = [
    "<" + "1" * 100_000,
    "<13>" + "Jan 15 10:22:01 " * 6000,
    "Jan 15 10:22:01 h " + "a[" * 50_000,
    "Jan 15 10:22:01 h " + "p" * 100_000 + "[1]",
    "Jan 15 10:22:01 h sshd[1]: Failed password for " + "x from " * 15_000,
    "Jan 15 10:22:01 h sshd[1]: Accepted " + " " * 100_000,
    "Jan 15 10:22:01 h sudo: u : " + "A=" * 30_000 + " ; " * 10_000,
    "Jan 15 10:22:01 h su: pam_unix(" + "a" * 100_000,
    "Jan 15 10:22:01 h sshd[2]: pam_unix(sshd:auth): authentication failure;" + " a=" * 30_000,
    "<1>1 2024-01-01T00:00:00Z h a p m [" + '"\\' * 40_000,
    "<1>1 2024-01-01T00:00:00Z h a p m " + "[x " * 30_000,
    "<1>1 2024-01-01T00:00:00Z h a p m " + '[x a="' + "\\]" * 40_000,
    "2024-01-01T00:00:00" + "." + "1" * 100_000 + " h p: x",
    "1 " + "- " * 50_000,
]


@pytest.mark.parametrize("line", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_line_is_linear(line: str) -> None:
    t0 = time.process_time()  # CPU time: a loaded machine makes wall time meaningless
    parse_line(line, Clock(REF))
    assert time.process_time() - t0 < 5.0  # linear: ~0.2 s CPU for 100 k characters; quadratic: minutes


# --- fuzzing through the pipeline ------------------------------------------------------------------------

_SEED = (FIX / "auth.log").read_text().split("\n")[13]


def _ingest_bytes(data: bytes) -> tuple[int, int]:
    report, _ = ingest_bytes(data, "syslog", "in.log")
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
                          st.text(alphabet="<>[]:;= -|\\\"'\t0123456789aZ\u00e9\x00", max_size=6)),
                max_size=6))
def test_fuzz_mutated_lines(edits) -> None:
    lines = []
    for pos, cut, insert in edits:
        lines.append(_SEED[:pos] + insert + _SEED[pos + cut:])
    lines.append(_SEED)
    data = "\n".join(lines).encode()
    stored, bad = _ingest_bytes(data)
    assert stored + bad == _nonempty(data) and stored >= 1


# --- real data: syslog lines of the Wazuh rule unit tests (GPLv2, read in place) ---------------------

_WAZUH_SYSLOG_TESTS = ("sshd", "macos-sshd", "sudo", "su", "pam", "systemd", "doas", "dovecot", "named",
                       "proftpd", "opensmtpd", "exim", "samba", "apparmor")


@pytest.mark.evaldata
def test_real_wazuh_test_lines(tmp_path, settings) -> None:
    root = evaldata("wazuh_ruleset") / "tools" / "rules-testing" / "tests"
    lines = []
    for name in _WAZUH_SYSLOG_TESTS:
        for raw in (root / f"{name}.ini").read_text(encoding="utf-8").splitlines():
            m = re.match(r"log \d+ \w+ = (.*)", raw)
            if m and m.group(1).strip():
                lines.append(m.group(1))
    assert len(lines) >= 120
    path = tmp_path / "wazuh_syslog.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report, store = run_ingest([path], settings)
    assert report.quarantined == 0 and report.by_reader() == {"syslog": len(lines)}
    assert rows(store, 'select count(*) n from events where "@timestamp" is null')[0]["n"] == 0
    ev = {r["event.original"]: r for r in rows(store, "select * from events")}
    mac = ev["2020-03-24 08:38:44.727732-0700  localhost sshd[2519]: Accepted password for user from "
             "172.18.1.100 port 43042 ssh2"]
    assert_event(mac, {"@timestamp": _ts("2020-03-24T15:38:44.727732Z"), "host.name": "localhost",
                       "process.pid": 2519, "event.outcome": "success", "user.name": "user",
                       "source.ip": "172.18.1.100", "source.port": 43042, "event.dataset": "system.auth"})
    inv = ev["2013-10-30T14:51:30.267401+01:00 srv sshd[12671]: Invalid user opcione from 192.241.237.101"]
    assert_event(inv, {"@timestamp": _ts("2013-10-30T13:51:30.267401Z"), "host.name": "srv",
                       "event.action": "ssh_invalid_user", "user.name": "opcione",
                       "source.ip": "192.241.237.101"})
    sudo = ev["Jun 25 15:51:13 precise32 sudo:     mike : 1 incorrect password attempt ; TTY=pts/0 ; "
              "PWD=/root ; USER=root ; COMMAND=/bin/ls"]
    assert_event(sudo, {"host.name": "precise32", "user.name": "mike", "user.effective.name": "root",
                        "event.outcome": "failure", "process.command_line": "/bin/ls",
                        "process.working_directory": "/root"})
    assert sudo["@timestamp"].strftime("%m-%d %H:%M:%S") == "06-25 15:51:13"
    outcomes = {r["a"]: r["n"] for r in rows(
        store, """select "event.action" || '/' || "event.outcome" a, count(*) n from events
                  where "event.outcome" is not null group by 1""")}
    assert outcomes["ssh_login/failure"] == 4 and outcomes["ssh_login/success"] == 3
