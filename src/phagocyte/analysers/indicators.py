"""Indicators in (deobfuscated) text: URLs, IPs, domains, dropped paths and hashes.

Every pattern is linear (no nested quantifiers) and runs on text already bounded by the limits,
so hostile input cannot make extraction slow.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["extract_indicators"]

_URL = re.compile(r"\b(?:https?|ftp)://[^\s'\"<>()`{}|\\^]{3,2048}", re.IGNORECASE)
_IP = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_DOMAIN = re.compile(
    r"\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}"
    r"(?:com|net|org|info|biz|ru|cn|io|xyz|top|tk|pw|cc|su|in|de|uk|br|co|me|us|online|site|club|ws|eu|onion))\b",
)
_PATH = re.compile(
    r"(?:[a-z]:\\|%(?:temp|appdata|localappdata|public|programdata|userprofile)%\\|\$env:(?:temp|appdata|public)\\"
    r"|/tmp/|/var/tmp/|/dev/shm/)[^\s'\"<>|*?;,)]{1,200}\.(?:exe|dll|scr|ps1|bat|cmd|vbs|js|jse|hta|lnk|jar|sh|elf|bin)\b",
    re.IGNORECASE,
)
_HASH = re.compile(r"\b(?:[a-f0-9]{64}|[a-f0-9]{40}|[a-f0-9]{32})\b", re.IGNORECASE)
# Names that look like domains in code but are object members.
_NOT_DOMAINS = {"system.net", "document.in", "window.top", "self.top", "parent.top", "wscript.shell.run"}


def _add(out: dict[str, list[str]], key: str, value: str, cap: int) -> None:
    bucket = out.setdefault(key, [])
    if value not in bucket and len(bucket) < cap:
        bucket.append(value)


def extract_indicators(text: str, *, cap: int = 200) -> dict[str, list[str]]:
    """Distinct indicators by kind (`url`, `ip`, `domain`, `path`, `hash`), at most `cap` of each."""
    out: dict[str, list[str]] = {}
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(".,;:'\"")
        _add(out, "url", url, cap)
        host = re.sub(r"^[a-z]+://(?:[^@/]*@)?", "", url, flags=re.IGNORECASE).split("/")[0].split(":")[0].lower()
        if host and not _IP.fullmatch(host):
            _add(out, "domain", host, cap)
    for m in _IP.finditer(text):
        try:
            ip = ipaddress.ip_address(m.group(0))
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or str(ip).endswith(".0")):
            _add(out, "ip", str(ip), cap)
    for m in _DOMAIN.finditer(text.lower()):
        d = m.group(1).lower()
        if d not in _NOT_DOMAINS and not d.startswith(("system.", "this.", "math.", "document.", "window.")):
            _add(out, "domain", d, cap)
    for m in _PATH.finditer(text):
        _add(out, "path", m.group(0), cap)
    for m in _HASH.finditer(text):
        h = m.group(0).lower()
        if len(set(h)) > 4:
            _add(out, "hash", h, cap)
    return out
