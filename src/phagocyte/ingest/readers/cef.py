"""ArcSight Common Event Format (CEF), one record a line, bare or behind a syslog header.

``CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension``:
the seven header fields escape ``\\|`` and ``\\\\``; the extension is ``key=value`` pairs separated
by spaces, where a value may itself hold spaces (so pairs are split at `` key=`` boundaries) and
escapes ``\\=``, ``\\\\``, ``\\n`` and ``\\r``. Records are alerts from security devices: the
device is the observer, the signature the rule. Keys without an ECS home (cs1..cs6 and their
labels, cn*, device addresses, ...) stay in ``event.original``, which is the whole line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from phagocyte.ingest.reader import ReadContext, Reader, register
from phagocyte.ingest.readers.syslog import (
    MONTHS,
    Clock,
    head_lines,
    parse_header,
    reference_time,
    valid_ip,
)
from phagocyte.ingest.rows import parsed_lines

__all__ = ["PROTO_NUM", "CefReader", "event_time", "level_name", "marker_sniff", "parse_cef", "split_pipes",
           "syslog_prefix"]

_FIELD = re.compile(r"((?:[^|\\]++|\\.)*+)\|", re.S)
_HDR_ESC = re.compile(r"\\([|\\])")
_EXT_KEY = re.compile(r"(?:^| )([\w.\[\]-]{1,128})=")
_EXT_ESC = re.compile(r"\\(.)", re.S)
_EXT_UNESC = {"n": "\n", "r": "\r", "=": "=", "\\": "\\", "|": "|"}
_TIME = re.compile(
    r"([A-Z][a-z]{2}) (\d{1,2}) (?:(\d{4}) )?(\d{1,2}):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?: (\S+))?")
_ZONE = re.compile(r"(?:UTC|GMT)?([+-])(\d\d):?(\d\d)")
_APP = re.compile(r"[A-Za-z][A-Za-z0-9.+-]{0,15}")
_VERSION = re.compile(r"\d{1,3}(?:\.\d{1,3})?")
_SEV_WORDS = {"low": 3, "medium": 6, "high": 8, "very-high": 10, "very high": 10, "veryhigh": 10}
PROTO_NUM = {"1": "icmp", "6": "tcp", "17": "udp", "47": "gre", "50": "esp", "58": "ipv6-icmp",
             "132": "sctp"}
_DIRECT = {"dhost": "destination.domain", "shost": "source.domain", "request": "url.full",
           "requestMethod": "http.request.method",
           "requestClientApplication": "user_agent.original", "fname": "file.name", "filePath": "file.path",
           "act": "event.action", "cat": "rule.category", "dproc": "process.name"}
"""Extension keys copied as they are (the others need a conversion or a choice)."""
_HASH = {32: "file.hash.md5", 40: "file.hash.sha1", 64: "file.hash.sha256"}


def level_name(severity: int) -> str:
    """The CEF words for a 0-10 severity: low (0-3), medium (4-6), high (7-8), very-high (9-10)."""
    return "low" if severity <= 3 else "medium" if severity <= 6 else "high" if severity <= 8 else "very-high"


def _group1(m: re.Match[str]) -> str:
    return m.group(1)


def split_pipes(text: str, start: int, n: int) -> tuple[list[str], int] | None:
    """The `n` pipe-terminated header fields from ``text[start:]`` (``\\|`` and ``\\\\`` unescaped)
    and the index after the last pipe, or None when there are fewer than `n` pipes."""
    parts = text[start:].split("|", n)
    if len(parts) <= n:
        return None
    end = len(text) - len(parts[n])
    if text.find("\\", start, end) < 0:
        return parts[:n], end
    fields, pos = [], start
    for _ in range(n):
        m = _FIELD.match(text, pos)
        if m is None:
            return None
        fields.append(_HDR_ESC.sub(_group1, m.group(1)))
        pos = m.end()
    return fields, pos


def syslog_prefix(line: str, at: int, clock: Clock, ctx: ReadContext | None) -> tuple[int | None, str | None]:
    """(time, host) from the syslog header before a CEF/LEEF marker at `at` (None, None if none)."""
    if at == 0:
        return None, None
    h = parse_header(line[:at].rstrip(), clock)
    if h is None:
        if ctx is not None:
            ctx.warn("text before the CEF/LEEF marker is not a syslog header (kept in event.original)")
        return None, None
    return h[0], h[2]


def marker_sniff(head: bytes, marker: str, version: re.Pattern[str], strong: int) -> int:
    """Score a head whose lines carry `marker` + a version (+ ``|``), bare or after a syslog header:
    `strong` when at least 80 % of its first complete lines do."""
    lines = head_lines(head, 20)
    if not lines or lines[0][:1] in ("{", "["):
        return 0
    clock = Clock(datetime.now(UTC))
    hits = weak = 0
    for line in lines:
        at = line.find(marker)
        if at < 0:
            continue
        m = version.match(line, at + len(marker))
        if m is None or line[m.end():m.end() + 1] != "|":
            continue
        if at == 0 or parse_header(line[:at].rstrip(), clock) is not None:
            hits += 1
        else:
            weak += 1
    # A syslog file with some CEF/LEEF lines among others is better read whole by the syslog
    # reader (60), which keeps every line, than by this one, which would quarantine the others.
    share = hits / len(lines)
    if share >= 0.8:
        return strong
    if share >= 0.5:
        return 55
    return 45 if (hits + weak) / len(lines) >= 0.5 else 0


def event_time(value: str, clock: Clock, ctx: ReadContext | None) -> int | None:
    """CEF/LEEF times: epoch ms (or s), ``MMM dd [yyyy] HH:mm:ss[.SSS] [zone]``, or ISO-8601."""
    value = value.strip()
    if value.isdigit():
        if len(value) > 16:
            return None
        n = int(value)
        return n * 1000 if len(value) >= 12 else n * 1_000_000
    m = _TIME.fullmatch(value)
    if m is not None:
        mon, day, year, hh, mm, ss, frac, zone = m.groups()
        if mon not in MONTHS:
            return None
        us = clock.bsd(mon, day, year, hh.zfill(2), mm, ss, frac)
        if us is None or zone is None or zone in ("UTC", "GMT", "Z"):
            return us
        z = _ZONE.fullmatch(zone)
        if z is None:
            if ctx is not None:
                ctx.warn(f"time zone {zone[:16]!r} not understood, taken as UTC")
            return us
        shift = (int(z.group(2)) * 60 + int(z.group(3))) * 60_000_000
        return us - shift if z.group(1) == "+" else us + shift
    return clock.iso(value)


def _unescape(v: str) -> str:
    return _EXT_ESC.sub(lambda m: _EXT_UNESC.get(m.group(1), m.group(0)), v)


def extension(text: str) -> dict[str, str]:
    """``k1=v 1 k2=v2`` -> {k1: "v 1", k2: "v2"}: values run to the next `` key=``."""
    parts = _EXT_KEY.split(text)  # [before the first key, key, value, key, value, ...]
    it = iter(parts)
    next(it)
    out: dict[str, str] = {}
    for k, v in zip(it, it, strict=True):
        v = v.rstrip()
        out[k] = _unescape(v) if "\\" in v else v
    return out


def _port(v: str | None) -> int | None:
    if v and v.isdigit() and len(v) <= 5:
        n = int(v)
        return n if n <= 65535 else None
    return None


def _int(v: str | None) -> int | None:
    if v and len(v) < 19:
        v = v.strip()
        if v.isdigit() or (v[:1] == "-" and v[1:].isdigit()):
            return int(v)
    return None


def parse_cef(line: str, clock: Clock, ctx: ReadContext | None = None) -> dict[str, Any] | str:
    """One CEF line -> event fields, or the reason it is not a CEF record."""
    at = line.find("CEF:")
    if at < 0:
        return "not a CEF record: no 'CEF:' marker"
    split = split_pipes(line, at + 4, 7)
    if split is None:
        found = line.count("|", at)
        return f"CEF header incomplete: {min(found, 6)} of 7 '|'-terminated fields"
    (version, vendor, product, _dev_version, sig, name, sev), ext_at = split
    if not _VERSION.fullmatch(version.strip()):
        return f"CEF version {version[:20]!r} is not a number"
    ts, host = syslog_prefix(line, at, clock, ctx)
    ext = extension(line[ext_at:])
    g = ext.get
    row: dict[str, Any] = {
        "event.kind": "alert", "event.dataset": "cef", "event.module": "cef", "event.original": line,
        "observer.vendor": vendor or None, "observer.product": product or None,
        "rule.id": sig or None, "event.code": sig or None, "rule.name": name or None,
        "observer.name": g("dvchost") or host, "message": g("msg") or name or None,
    }
    sev = sev.strip()
    num = _int(sev)
    if num is None:
        num = _SEV_WORDS.get(sev.lower())
    if num is not None:
        row["event.severity"] = num
        row["log.level"] = level_name(num)
    elif sev:
        row["log.level"] = sev.lower()
    for key in ("rt", "start", "end"):
        if key in ext:
            t = event_time(ext[key], clock, ctx)
            if t is not None:
                ts = t
                break
    row["@timestamp"] = ts
    if not ext:
        return row
    for k, v in ext.items():
        if v and (f := _DIRECT.get(k)) is not None:
            row[f] = v
    src, dst = valid_ip(g("src")), valid_ip(g("dst"))
    if src or dst:
        row["source.ip"], row["destination.ip"] = src, dst
        row["related.ip"] = [ip for ip in dict.fromkeys((src, dst)) if ip]
    if (port := _port(g("spt"))) is not None:
        row["source.port"] = port
    if (port := _port(g("dpt"))) is not None:
        row["destination.port"] = port
    if proto := g("proto"):
        row["network.transport"] = PROTO_NUM.get(proto, proto.lower())
    if (app := g("app")) and _APP.fullmatch(app):  # vendors also put event types in "app"
        row["network.protocol"] = app.lower()
    direction = g("deviceDirection")
    if direction in ("0", "1"):
        row["network.direction"] = "inbound" if direction == "0" else "outbound"
    suser, duser = g("suser"), g("duser")
    if suser or duser:
        row["user.name"] = duser or suser
        row["user.domain"] = g("dntdom") if duser else g("sntdom")
        row["user.id"] = g("duid") if duser else g("suid")
        row["source.user.name"] = suser
    if (h := g("fileHash")) and (field := _HASH.get(len(h))):
        row[field] = h.lower()
    if (pid := _int(g("dpid"))) is not None:
        row["process.pid"] = pid
    outcome = (g("outcome") or "").lower()
    if outcome:
        row["event.outcome"] = ("success" if outcome.startswith("succ") else
                                "failure" if outcome.startswith("fail") else "unknown")
    return row


@register
class CefReader(Reader):
    name = "cef"
    resumable = True
    description = "ArcSight Common Event Format (CEF) lines, bare or behind a syslog header"

    def sniff(self, head: bytes, path: str) -> int:
        return marker_sniff(head, "CEF:", _VERSION, 85)

    def read(self, ctx: ReadContext) -> Iterator[pa.Table]:
        clock = Clock(reference_time(ctx.source))
        yield from parsed_lines(ctx, lambda text: parse_cef(text, clock, ctx))
