"""IBM QRadar Log Event Extended Format (LEEF) 1.0 and 2.0, bare or behind a syslog header.

``LEEF:1.0|Vendor|Product|Version|EventID|`` then ``key=value`` attributes separated by tabs;
LEEF 2.0 adds a delimiter field after the EventID (``^``, or hex such as ``x09`` / ``0x09``). A
value runs to the next delimiter and may hold ``=``; a chunk without ``=`` is taken as part of the
previous value (a delimiter the producer did not escape). ``devTime`` is epoch milliseconds or
follows ``devTimeFormat``, a Java ``SimpleDateFormat`` pattern, translated to ``strptime`` once per
pattern. Attributes without an ECS home stay in ``event.original``, the whole line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa

from phagocyte.ingest.reader import ReadContext, Reader, register
from phagocyte.ingest.readers.cef import (
    PROTO_NUM,
    event_time,
    level_name,
    marker_sniff,
    split_pipes,
    syslog_prefix,
)
from phagocyte.ingest.readers.syslog import Clock, epoch_us, reference_time, valid_ip
from phagocyte.ingest.rows import parsed_lines

__all__ = ["LeefReader", "java_format", "parse_leef"]

_VERSION = re.compile(r"\d(?:\.\d{1,2})?")
_HEX_DELIM = re.compile(r"(?:0?[xX])([0-9a-fA-F]{1,4})")
_JAVA_TOKEN = re.compile(r"'(?:[^']|'')*'|y+|M+|d+|H+|h+|m+|s+|S+|a|z+|Z+|X+|E+|.", re.S)
_JAVA = {"yyyy": "%Y", "yy": "%y", "y": "%Y", "MMMM": "%B", "MMM": "%b", "MM": "%m", "M": "%m",
         "dd": "%d", "d": "%d", "HH": "%H", "H": "%H", "hh": "%I", "h": "%I", "mm": "%M", "m": "%M",
         "ss": "%S", "s": "%S", "a": "%p", "EEEE": "%A", "E": "%a", "EE": "%a", "EEE": "%a"}
_FORMATS: dict[str, str] = {}
_DIRECT = {"domain": "user.domain", "identHostName": "host.name", "cat": "rule.category",
           "policy": "rule.name", "url": "url.full"}
"""Attributes copied as they are."""


def java_format(pattern: str) -> str:
    """A Java ``SimpleDateFormat`` pattern as a ``strptime`` format (cached)."""
    fmt = _FORMATS.get(pattern)
    if fmt is None:
        parts = []
        for tok in _JAVA_TOKEN.findall(pattern):
            c = tok[0]
            if c == "'":
                parts.append(tok[1:-1].replace("''", "'").replace("%", "%%") or "'")
            elif c == "S":
                parts.append("%f")
            elif c == "z":
                parts.append("%Z")
            elif c in "ZX":
                parts.append("%z")
            else:
                parts.append(_JAVA.get(tok, tok.replace("%", "%%")))
        fmt = "".join(parts)
        if len(_FORMATS) > 256:
            _FORMATS.clear()
        _FORMATS[pattern] = fmt
    return fmt


def _dev_time(value: str, pattern: str | None, clock: Clock, ctx: ReadContext | None) -> int | None:
    if pattern:
        try:
            dt = datetime.strptime(value.strip(), java_format(pattern))
        except (ValueError, re.error, IndexError, OverflowError):  # re.error: a pattern like "HH HH"
            dt = None
        if dt is not None:
            return epoch_us(dt)
    us = event_time(value, clock, ctx)
    if us is None and ctx is not None:
        ctx.warn("LEEF devTime not understood (kept in event.original)")
    return us


def _delimiter(field: str) -> str | None:
    """The LEEF 2.0 delimiter written as one character, ``\\t``, or hex (``x09``, ``0x5E``)."""
    if len(field) == 1:
        return field
    if field == "\\t":
        return "\t"
    m = _HEX_DELIM.fullmatch(field)
    if m is not None:
        c = chr(int(m.group(1), 16))
        return c if c not in ("", "\n") else None
    return None


def attributes(text: str, delim: str) -> dict[str, str]:
    """``k=v<delim>k2=v=2`` -> {k: v, k2: "v=2"}; a chunk without ``=`` extends the last value."""
    out: dict[str, str] = {}
    prev = None
    for chunk in text.split(delim):
        k, eq, v = chunk.partition("=")
        if eq and k and len(k) <= 128 and " " not in k:
            out[k] = v
            prev = k
        elif prev is not None and chunk:
            out[prev] += delim + chunk
    return out


def _port(v: str | None) -> int | None:
    v = v.strip() if v else v
    if v and v.isdigit() and len(v) <= 5 and int(v) <= 65535:
        return int(v)
    return None


def parse_leef(line: str, clock: Clock, ctx: ReadContext | None = None) -> dict[str, Any] | str:
    """One LEEF line -> event fields, or the reason it is not a LEEF record."""
    at = line.find("LEEF:")
    if at < 0:
        return "not a LEEF record: no 'LEEF:' marker"
    split = split_pipes(line, at + 5, 5)
    if split is None:
        return f"LEEF header incomplete: {min(line.count('|', at), 4)} of 5 '|'-terminated fields"
    (version, vendor, product, _dev_version, event_id), pos = split
    version = version.strip()
    if not _VERSION.fullmatch(version):
        return f"LEEF version {version[:20]!r} is not a number"
    delim = "\t"
    rest = line[pos:]
    if not version.startswith("1"):
        bar = rest.find("|", 0, 8)
        if bar >= 0:
            d = _delimiter(rest[:bar]) if bar else "\t"
            if d is not None:
                delim, rest = d, rest[bar + 1:]
    ts, host = syslog_prefix(line, at, clock, ctx)
    attrs = attributes(rest, delim)
    g = attrs.get
    row: dict[str, Any] = {
        "event.kind": "event", "event.dataset": "leef", "event.module": "leef", "event.original": line,
        "observer.vendor": vendor or None, "observer.product": product or None,
        "rule.id": event_id or None, "event.code": event_id or None, "observer.name": host,
        "message": g("msg"),
    }
    if "devTime" in attrs:
        t = _dev_time(attrs["devTime"], g("devTimeFormat"), clock, ctx)
        if t is not None:
            ts = t
    row["@timestamp"] = ts
    if not attrs:
        return row
    sev = (g("sev") or "").strip()
    if sev.isdigit() and len(sev) <= 3:
        num = int(sev)
        row["event.severity"] = num
        row["log.level"] = level_name(num)
    src, dst = valid_ip(g("src")), valid_ip(g("dst"))
    if src or dst:
        row["source.ip"], row["destination.ip"] = src, dst
        row["related.ip"] = [ip for ip in dict.fromkeys((src, dst)) if ip]
    if (port := _port(g("srcPort"))) is not None:
        row["source.port"] = port
    if (port := _port(g("dstPort"))) is not None:
        row["destination.port"] = port
    if proto := g("proto"):
        row["network.transport"] = PROTO_NUM.get(proto, proto.lower())
    if user := g("usrName") or g("accountName") or g("identUsrName"):
        row["user.name"] = user
    for k, v in attrs.items():
        if v and (f := _DIRECT.get(k)) is not None:
            row[f] = v
    if g("isLoginEvent", "").lower() == "true":
        row.update({"event.category": ["authentication"], "event.type": ["start"]})
    elif g("isLogoutEvent", "").lower() == "true":
        row.update({"event.category": ["authentication"], "event.type": ["end"]})
    return row


@register
class LeefReader(Reader):
    name = "leef"
    resumable = True
    description = "IBM QRadar LEEF 1.0 / 2.0 lines, bare or behind a syslog header"

    def sniff(self, head: bytes, path: str) -> int:
        return marker_sniff(head, "LEEF:", _VERSION, 85)

    def read(self, ctx: ReadContext) -> Iterator[pa.Table]:
        clock = Clock(reference_time(ctx.source))
        yield from parsed_lines(ctx, lambda text: parse_leef(text, clock, ctx))
