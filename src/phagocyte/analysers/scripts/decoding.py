"""Bounded primitive decoders shared by the script deobfuscators.

Why bounded here: base64, gzip/deflate and char-code lists are where a hostile script makes a
small input huge (a decompression bomb, a gigantic char array); each primitive takes the budget
and refuses to produce more than it allows.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib

from phagocyte.analysers.limits import Budget

__all__ = ["b64decode", "decode_text", "inflate", "printable_ratio"]

_B64_CLEAN = re.compile(r"[^A-Za-z0-9+/=_-]")


def b64decode(s: str) -> bytes | None:
    """Base64 (standard or URL-safe, padding optional) or None when it is not base64."""
    s = _B64_CLEAN.sub("", s)
    if len(s) < 8:
        return None
    s += "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return base64.urlsafe_b64decode(s)
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def inflate(data: bytes, budget: Budget) -> bytes | None:
    """Gzip, zlib or raw deflate, stopped at the size and ratio limits; None when it is none of them."""
    lim = budget.limits
    cap = min(lim.max_decompressed_bytes, int(max(len(data), 1024) * lim.max_ratio))
    for wbits in (31, 15, -15):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, cap + 1)
        except zlib.error:
            continue
        if len(out) > cap:
            budget.stop(f"decompression stopped at {cap:,} bytes (limit or ratio {lim.max_ratio:g}:1)")
            return out[:cap]
        if out:
            return out
    return None


def printable_ratio(s: str) -> float:
    if not s:
        return 0.0
    good = sum(1 for c in s if c.isprintable() or c in "\r\n\t")
    return good / len(s)


def decode_text(data: bytes) -> str:
    """Bytes a script decoded: UTF-16LE when every other byte is zero (PowerShell), else UTF-8/Latin-1."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    if len(data) >= 4 and data[1:40:2].count(0) >= len(data[1:40:2]) * 0.8:
        return data.decode("utf-16-le", errors="replace")
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
