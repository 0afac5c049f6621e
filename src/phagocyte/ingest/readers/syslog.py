"""Syslog text: RFC 3164 and RFC 5424 lines, and the Linux auth.log / secure / messages files.

One line is one event. Three header forms are recognised, each by one anchored regex chosen by
the line's first character: RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG``),
BSD / RFC 3164 (``[<PRI>]Mmm dd hh:mm:ss HOST TAG[PID]: MSG``, as in ``/var/log`` files), and the
ISO-8601 form rsyslog writes on current distributions (``2024-01-15T10:22:01.123+01:00 HOST
TAG[PID]: MSG``). RFC 3164 has neither year nor zone: the time is taken as UTC and the year is
guessed (see ``Clock``). Messages of the login-related programs (sshd, sudo, su, PAM, logind,
useradd, ...) also yield ECS security fields through a few anchored regexes.

Every regex here is anchored and built from runs that cannot overlap (or are possessive), so that
a hostile 100 KB line costs linear time. ``Clock`` and ``parse_header`` are also used by the CEF
and LEEF readers, whose records often arrive behind a syslog header.
"""

from __future__ import annotations

import codecs
import ipaddress
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from phagocyte.ingest.reader import ReadContext, Reader, register
from phagocyte.ingest.rows import parsed_lines
from phagocyte.ingest.source import HEAD_BYTES, Source

__all__ = ["Clock", "SyslogReader", "epoch_us", "head_lines", "parse_header", "reference_time",
           "valid_ip"]

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
LEVELS = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
_IPV6: dict[str, str | None] = {}
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000

_BSD = re.compile(  # optional leading year: the "2015 Nov 13 13:40:01 host ..." form of Wazuh/OSSEC
    r"(?:(\d{4}) )?([A-Z][a-z]{2}) {1,2}(\d{1,2}) (?:(\d{4}) )?(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r" +(\S+)(?: +(.*))?", re.S)
_ISO = re.compile(
    r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?) +(\S+)(?: +(.*))?", re.S)
_5424 = re.compile(r"\d{1,2} (\S+) (\S+) (\S+) (\S+) (\S+)(?: (.*))?", re.S)
_SD = re.compile(r'(?:\[(?:[^\]"\\]++|"(?:[^"\\]++|\\.)*+"|\\.)*+\])++ ?', re.S)
_TAG = re.compile(r"([^\s\[\]:]{1,256})(?:\[([^\]\s]{0,32})\])?:(?: +|\Z)(.*)", re.S)
_ISO_FIX = re.compile(r"(\.\d{6})\d+|,")


def valid_ip(text: str | None) -> str | None:
    """`text` if it is an IPv4/IPv6 address (an IPv6 zone ``%eth0`` dropped), else None."""
    if not text or len(text) > 64:
        return None
    if _IPV4.fullmatch(text):
        return text
    if ":" not in text:
        return None
    got = _IPV6.get(text, "")
    if got == "":
        addr = text[:text.index("%")] if "%" in text else text
        try:
            ipaddress.IPv6Address(addr)
            got = addr
        except ValueError:
            got = None
        if len(_IPV6) > 4096:
            _IPV6.clear()
        _IPV6[text] = got
    return got


def reference_time(source: Source) -> datetime:
    """"Now" for a source's year-less dates: the file's mtime if it is a plain file (or the
    ``.gz`` it was decompressed from), else the current time."""
    if "!" not in source.path:
        for p in (source.path, source.path + ".gz"):
            try:
                return datetime.fromtimestamp(os.stat(p).st_mtime, UTC)
            except (OSError, ValueError, OverflowError):
                continue
    return datetime.now(UTC)


def epoch_us(dt: datetime) -> int | None:
    """A datetime (naive = UTC) as epoch microseconds; None when out of range."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return (dt - _EPOCH) // _US
    except OverflowError:
        return None


class Clock:
    """Timestamps as UTC epoch microseconds, with the RFC 3164 year guess.

    A year-less date takes the reference year and goes back one year when it would fall more than
    a day after the reference (a log written in December, read from a file modified in January).
    Feb 29 takes the latest leap year not after that. Day starts and ISO timestamps are cached
    (consecutive lines share them).
    """

    def __init__(self, ref: datetime) -> None:
        self.ref = ref
        self._limit = ref.date() + timedelta(days=1)
        self._days: dict[tuple[int, int, int], int | None] = {}
        self._iso: dict[str, int | None] = {}

    def day(self, month: int, day: int, year: int = 0) -> int | None:
        """Epoch microseconds of that day's midnight UTC (year 0: guessed); None if invalid."""
        key = (year, month, day)
        us = self._days.get(key, -1)
        if us != -1:
            return us
        us = None
        try:
            if year:
                d = date(year, month, day)
            else:
                y = self.ref.year
                while True:
                    try:
                        d = date(y, month, day)
                        break
                    except ValueError:
                        if month != 2 or day != 29 or y < self.ref.year - 8:
                            raise
                        y -= 1
                if d > self._limit:
                    d = date(d.year - 1, month, day) if (month, day) != (2, 29) else date(d.year - 4, 2, 29)
            us = (d.toordinal() - 719163) * _DAY_US
        except ValueError:
            us = None
        if len(self._days) > 4096:
            self._days.clear()
        self._days[key] = us
        return us

    def bsd(self, mon: str, day: str, year: str | None, hh: str, mm: str, ss: str,
            frac: str | None = None) -> int | None:
        m = MONTHS.get(mon)
        if m is None:
            return None
        base = self.day(m, int(day), int(year) if year else 0)
        h, mi, s = int(hh), int(mm), int(ss)
        if base is None or h > 23 or mi > 59 or s > 60:
            return None
        us = base + ((h * 60 + mi) * 60 + s) * 1_000_000
        if frac:
            us += int((frac + "00000")[:6])
        return us

    def iso(self, text: str) -> int | None:
        """An ISO-8601 / RFC 3339 timestamp (any offset, naive = UTC, up to ns) -> epoch us."""
        us = self._iso.get(text, -1)
        if us != -1:
            return us
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(_ISO_FIX.sub(lambda m: m.group(1) or ".", text))
            except ValueError:
                dt = None
        us = None if dt is None else epoch_us(dt)
        if len(self._iso) > 4096:
            self._iso.clear()
        self._iso[text] = us
        return us


Header = tuple[int | None, int | None, str | None, str | None, str | None, str, str | None]


def parse_header(line: str, clock: Clock) -> Header | None:
    """Split a syslog line: (epoch us, PRI, host, program, pid, message, 5424 MSGID), or None if
    it has no header. A 5424 line's structured data stays in the line (``event.original``)."""
    pri = None
    at = 0
    if line[:1] == "<":
        at = line.find(">", 1, 5)
        if at < 2 or not line[1:at].isdigit():
            return None
        pri = int(line[1:at])
        at += 1
    c = line[at:at + 1]
    if line[at + 1:at + 2] == " " and c.isdigit():  # RFC 5424 "1 TIMESTAMP ..." (PRI optional)
        m = _5424.match(line, at)
        if m is None:
            return None
        ts, host, app, procid, msgid, rest = m.groups()
        us = None if ts == "-" else clock.iso(ts)
        if us is None and ts != "-":
            return None
        rest = rest or ""
        if rest.startswith("- ") or rest == "-":
            rest = rest[2:]
        elif rest.startswith("["):
            sd = _SD.match(rest)
            if sd is not None:
                rest = rest[sd.end():]
        if rest.startswith("\ufeff"):
            rest = rest[1:]
        return (us, pri, _nil(host), _nil(app), _nil(procid), rest, _nil(msgid))
    if c.isdigit() and line[at + 4:at + 5] == "-":
        m = _ISO.match(line, at)
        if m is None:
            return None
        ts, host, rest = m.groups()
        us = clock.iso(ts)
    else:
        m = _BSD.match(line, at)
        if m is None:
            return None
        year0, mon, day, year, hh, mm, ss, frac, host, rest = m.groups()
        us = clock.bsd(mon, day, year or year0, hh, mm, ss, frac)
    if us is None:
        return None
    prog = pid = None
    if host.endswith(":") or "[" in host:  # "<13>Jan 15 10:22:01 prog[12]: msg": no host field
        rest = host + (" " + rest if rest else "")
        host = None
    if rest:
        t = _TAG.match(rest)
        if t is not None:
            prog, pid, rest = t.groups()
    return (us, pri, host, prog, pid, rest or "", None)


def _nil(v: str) -> str | None:
    return None if v == "-" else v


def head_lines(head: bytes, limit: int = 50) -> list[str]:
    """The complete non-empty lines of a sniffing head, decoded as the reader will (UTF-8, or
    UTF-16 after its byte-order mark); the last line of a full head may be cut, so it is dropped."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = head[2:len(head) - len(head) % 2].decode(
            "utf-16-le" if head.startswith(codecs.BOM_UTF16_LE) else "utf-16-be", "replace")
    else:
        text = head.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace")
    parts = text.split("\n")
    if len(parts) > 1 and len(head) >= HEAD_BYTES:
        parts.pop()
    out = []
    for p in parts:
        if p.strip():
            out.append(p.rstrip("\r"))
            if len(out) >= limit:
                break
    return out


# --- Security fields from login-related programs --------------------------------------------------

AUTH_PROGRAMS = frozenset({
    "sshd", "sshd-session", "sshd-auth", "sudo", "su", "login", "systemd-logind", "passwd", "chpasswd",
    "chage", "useradd", "userdel", "usermod", "groupadd", "groupdel", "groupmod", "gpasswd", "pkexec",
    "polkitd", "doas", "gdm-password", "lightdm", "unix_chkpwd", "newgrp", "chsh", "chfn",
})
"""Programs whose lines belong to ``system.auth``; so does any ``pam_*`` message (e.g. CRON's)."""

_SSH_OK = re.compile(r"Accepted (\S+) for (\S+) from (\S+) port (\d{1,5})")
_SSH_FAIL = re.compile(r"Failed (\S+) for (invalid user )?(\S*) from (\S+) port (\d{1,5})")
_SSH_INVALID = re.compile(r"(?:Invalid|Illegal) user (\S*) from (\S+)(?: port (\d{1,5}))?")
_SSH_MAXTRIES = re.compile(
    r"error: maximum authentication attempts exceeded for (invalid user )?(\S*) from (\S+) port (\d{1,5})")
_SSH_BYE = re.compile(r"Disconnected from user (\S+) (\S+) port (\d{1,5})")
_PAM_SESSION = re.compile(
    r"pam_\w{1,32}\([^:)\s]{1,64}:session\): session (opened|closed) for user ([^\s(]+)"
    r"(?:\(uid=\d+\))?(?: by ([^\s(]*))?")
_PAM_AUTHFAIL = re.compile(r"pam_\w{1,32}\([^:)\s]{1,64}:auth\): authentication failure;")
_KV = re.compile(r"(\w{1,32})=(\S*)")
_SU = re.compile(r"(FAILED SU )?\(to (\S+)\) (\S+) on (\S+)")
_SU_OLD = re.compile(r"(Successful|FAILED) su for (\S+) by (\S+)")
_LOGIND_NEW = re.compile(r"New session (\S+) of user ([^\s.]+)")
_LOGIND_END = re.compile(r"Removed session (\S+)\.")
_USERADD = re.compile(r"new (user|group): name=([^,\s]+)")
_USERDEL = re.compile(r"delete (user|group) ['`]([^'\s]+)'")
_PASSWD = re.compile(r"pam_unix\(\S{1,64}:chauthtok\): password changed for (\S+)")
_AUTH = ["authentication"]
_SESSION = ["session"]


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.?)*")


def _net(row: dict[str, Any], host: str | None, port: str | None = None) -> None:
    ip = valid_ip(host)
    if ip:
        row["source.ip"] = ip
        row["related.ip"] = [ip]
    elif host and _HOSTNAME.fullmatch(host):
        row["source.domain"] = host
    if port:
        p = int(port)
        if p <= 65535:
            row["source.port"] = p


def _auth(prog: str, msg: str, row: dict[str, Any]) -> None:
    """Add ECS security fields for the messages of login-related programs (in place)."""
    if msg.startswith("[ID ") and "] " in msg:  # Solaris message id: "[ID 800047 auth.notice] ..."
        msg = msg[msg.index("] ") + 2:]
    if msg.startswith("message repeated ") and "[ " in msg:
        msg = msg[msg.index("[ ") + 2:].removesuffix("]").rstrip()
    if msg.startswith("pam_"):
        if m := _PAM_SESSION.match(msg):
            opened = m.group(1) == "opened"
            row.update({"event.category": _SESSION, "event.type": ["start" if opened else "end"],
                        "event.action": "session_opened" if opened else "session_closed",
                        "user.name": m.group(2)})
            if m.group(3):
                row["source.user.name"] = m.group(3)
        elif _PAM_AUTHFAIL.match(msg):
            kv = dict(_KV.findall(msg, msg.index(";")))
            row.update({"event.category": _AUTH, "event.type": ["info"], "event.outcome": "failure",
                        "event.action": "authentication_failure"})
            if kv.get("user"):
                row["user.name"] = kv["user"]
            if kv.get("ruser"):
                row["source.user.name"] = kv["ruser"]
            _net(row, kv.get("rhost"))
        elif m := _PASSWD.match(msg):
            row.update({"event.category": ["iam"], "event.type": ["user", "change"],
                        "event.action": "password_changed", "event.outcome": "success",
                        "user.target.name": m.group(1)})
        return
    if prog.startswith("sshd"):
        if m := _SSH_OK.match(msg):
            row.update({"event.category": ["authentication", "session"], "event.type": ["start"],
                        "event.action": "ssh_login", "event.outcome": "success",
                        "user.name": m.group(2), "network.protocol": "ssh"})
            _net(row, m.group(3), m.group(4))
        elif m := _SSH_FAIL.match(msg):
            row.update({"event.category": _AUTH, "event.type": ["info"], "event.action": "ssh_login",
                        "event.outcome": "failure", "user.name": m.group(3), "network.protocol": "ssh"})
            _net(row, m.group(4), m.group(5))
        elif m := _SSH_INVALID.match(msg):
            row.update({"event.category": _AUTH, "event.type": ["info"], "event.action": "ssh_invalid_user",
                        "event.outcome": "failure", "user.name": m.group(1), "network.protocol": "ssh"})
            _net(row, m.group(2), m.group(3))
        elif m := _SSH_MAXTRIES.match(msg):
            row.update({"event.category": _AUTH, "event.type": ["info"], "event.action": "ssh_max_tries",
                        "event.outcome": "failure", "user.name": m.group(2), "network.protocol": "ssh"})
            _net(row, m.group(3), m.group(4))
        elif m := _SSH_BYE.match(msg):
            row.update({"event.category": _SESSION, "event.type": ["end"], "event.action": "ssh_disconnect",
                        "user.name": m.group(1), "network.protocol": "ssh"})
            _net(row, m.group(2), m.group(3))
    elif prog == "sudo":
        _sudo(msg, row)
    elif prog == "su":
        if m := _SU.match(msg):
            failed, target, user = m.group(1), m.group(2), m.group(3)
        elif m := _SU_OLD.match(msg):
            failed, target, user = m.group(1) == "FAILED", m.group(2), m.group(3)
        else:
            return
        row.update({"event.category": _AUTH, "event.type": ["info"], "event.action": "su",
                    "event.outcome": "failure" if failed else "success", "user.name": user,
                    "user.effective.name": target})
    elif prog == "systemd-logind":
        if m := _LOGIND_NEW.match(msg):
            row.update({"event.category": _SESSION, "event.type": ["start"],
                        "event.action": "session_opened", "user.name": m.group(2)})
        elif _LOGIND_END.match(msg):
            row.update({"event.category": _SESSION, "event.type": ["end"], "event.action": "session_closed"})
    elif prog in ("useradd", "groupadd", "userdel", "groupdel"):
        m = _USERADD.match(msg) or _USERDEL.match(msg)
        if m is None:
            return
        kind, made = m.group(1), prog.endswith("add")
        row.update({"event.category": ["iam"], "event.type": [kind, "creation" if made else "deletion"],
                    "event.action": f"{kind}_{'created' if made else 'deleted'}", "event.outcome": "success"})
        if kind == "user":
            row["user.target.name"] = m.group(2)


def _sudo(msg: str, row: dict[str, Any]) -> None:
    """``USER : [N incorrect password attempts ; ]TTY=.. ; PWD=.. ; USER=root ; COMMAND=..``."""
    user, sep, rest = msg.strip().partition(" : ")
    if not sep or " " in user:
        return
    cmd_at = rest.find("COMMAND=")
    fields: dict[str, str] = {}
    problem = None
    for part in (rest[:cmd_at] if cmd_at >= 0 else rest).split(" ; "):
        k, eq, v = part.partition("=")
        if eq and k.isupper():
            fields[k] = v.strip()
        elif part.strip():
            problem = part.strip()
    if "USER" not in fields:
        return
    row.update({"user.name": user, "user.effective.name": fields["USER"], "event.action": "sudo"})
    if cmd_at >= 0:
        row["process.command_line"] = rest[cmd_at + 8:]
    if "PWD" in fields:
        row["process.working_directory"] = fields["PWD"]
    if problem is None:
        row.update({"event.category": ["process"], "event.type": ["start"], "event.outcome": "success"})
    elif "password" in problem:
        row.update({"event.category": _AUTH, "event.type": ["info"], "event.outcome": "failure"})
    else:  # "user NOT in sudoers", "command not allowed", ...
        row.update({"event.category": ["process"], "event.type": ["denied"], "event.outcome": "failure"})


# --- The reader -------------------------------------------------------------------------------------

_BAD = "not a syslog line: no RFC 3164, RFC 5424 or ISO-timestamp header"


@register
class SyslogReader(Reader):
    name = "syslog"
    resumable = True
    description = "Syslog text: RFC 3164 / RFC 5424 lines, Linux auth.log, secure, messages"

    def sniff(self, head: bytes, path: str) -> int:
        lines = head_lines(head, 20)
        if not lines or lines[0][:1] in ("{", "["):
            return 0
        clock = Clock(datetime.now(UTC))
        hits = 0
        for line in lines:
            h = parse_header(line, clock)
            # An ISO timestamp starts many application logs: count it only with a program tag.
            if h is not None and (h[3] is not None or not line[:1].isdigit()):
                hits += 1
        share = hits / len(lines)
        if share >= 0.8:
            return 60
        return 50 if share >= 0.5 else 0

    def read(self, ctx: ReadContext) -> Iterator[pa.Table]:
        clock = Clock(reference_time(ctx.source))
        yield from parsed_lines(ctx, lambda text: parse_line(text, clock) or _BAD)


def parse_line(line: str, clock: Clock) -> dict[str, Any] | None:
    """One syslog line -> event fields (None when it has no syslog header)."""
    h = parse_header(line, clock)
    if h is None:
        return None
    us, pri, host, prog, pid, msg, msgid = h
    row: dict[str, Any] = {
        "@timestamp": us, "event.kind": "event", "event.original": line, "message": msg,
        "host.name": host, "event.provider": prog, "process.name": prog,
    }
    if pri is not None and pri <= 191:
        row["log.level"] = LEVELS[pri & 7]
    if msgid is not None:
        row["event.code"] = msgid
    if pid is not None and pid.isdigit() and len(pid) < 19:
        row["process.pid"] = int(pid)
    low = prog.lower() if prog else ""
    if low in AUTH_PROGRAMS or msg.startswith("pam_"):
        row["event.dataset"] = "system.auth"
        row["event.module"] = "system"
        _auth(low, msg, row)
    else:
        row["event.dataset"] = "syslog"
        row["event.module"] = "syslog"
    return row
