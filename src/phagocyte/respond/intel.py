"""Threat-intel look-ups from local files only (STIX 2.1 bundles, MISP JSON exports): no network, no SSRF.

Why local files: enrichment must not leak incident indicators to third parties nor let an attacker
steer requests (SSRF); teams export their TIP feeds to disk and point Phagocyte at them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Indicator", "LocalIntel"]

# The STIX patterns a feed uses for atomic indicators: [type:path = 'value'].
_PATTERN = re.compile(r"\[\s*([a-z0-9-]+):([a-z0-9_.'\- ]+?)\s*=\s*'((?:[^'\\]|\\.)*)'\s*\]", re.IGNORECASE)
_STIX_KIND = {"ipv4-addr": "ip", "ipv6-addr": "ip", "domain-name": "domain", "url": "url", "file": "hash",
              "email-addr": "email", "user-account": "user"}
_MISP_KIND = {"ip-src": "ip", "ip-dst": "ip", "ip-src|port": "ip", "ip-dst|port": "ip", "domain": "domain",
              "hostname": "domain", "url": "url", "md5": "hash", "sha1": "hash", "sha256": "hash",
              "email-src": "email", "email-dst": "email", "filename|md5": "hash", "filename|sha256": "hash"}
MAX_FEED_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Indicator:
    kind: str
    value: str
    source: str
    name: str


class LocalIntel:
    """Indicators loaded once from STIX 2.1 bundles and MISP exports; `lookup` matches incident entities."""

    def __init__(self, paths: list[Path] | None = None) -> None:
        self.index: dict[tuple[str, str], list[Indicator]] = {}
        self.errors: list[str] = []
        for p in paths or []:
            for f in sorted(p.rglob("*.json")) if p.is_dir() else [p]:
                self._load(f)

    def _add(self, ind: Indicator) -> None:
        self.index.setdefault((ind.kind, ind.value.lower()), []).append(ind)

    def _load(self, path: Path) -> None:
        try:
            if path.stat().st_size > MAX_FEED_BYTES:
                raise ValueError(f"larger than {MAX_FEED_BYTES} bytes")
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            self.errors.append(f"{path}: {exc}")
            return
        if isinstance(doc, dict) and doc.get("type") == "bundle":
            for obj in doc.get("objects") or []:
                if isinstance(obj, dict) and obj.get("type") == "indicator":
                    for kind, _, value in _PATTERN.findall(str(obj.get("pattern", ""))):
                        k = _STIX_KIND.get(kind.lower())
                        if k:
                            self._add(Indicator(k, value.replace("\\'", "'"), path.name, str(obj.get("name") or "")))
            return
        events = doc if isinstance(doc, list) else [doc]
        for ev in events:
            e = ev.get("Event", ev) if isinstance(ev, dict) else {}
            attrs = list(e.get("Attribute") or [])
            for obj in e.get("Object") or []:
                attrs.extend(obj.get("Attribute") or [])
            for a in attrs:
                k = _MISP_KIND.get(str(a.get("type")))
                if not k:
                    continue
                value = str(a.get("value", ""))
                value = value.split("|")[-1] if "|" in str(a.get("type")) and k == "hash" else value.split("|")[0]
                self._add(Indicator(k, value, path.name, str(e.get("info") or "")))
        if not isinstance(doc, (dict, list)):
            self.errors.append(f"{path}: neither a STIX bundle nor a MISP export")

    def lookup(self, entities: dict[str, list[Any]]) -> list[dict[str, str]]:
        """Hits for an incident's entities (`ip`, `domain`, `url`, `hash`, `user`, `email` and ECS-named keys)."""
        hits: list[dict[str, str]] = []
        for key, values in entities.items():
            kind = entity_kind(key)
            if kind is None:
                continue
            for v in values:
                for ind in self.index.get((kind, str(v).lower()), []):
                    hits.append({"entity": key, "value": str(v), "feed": ind.source, "name": ind.name})
        return hits


def entity_kind(key: str) -> str | None:
    """What an incident entity key holds (`ip`, `domain`, `url`, `hash`, `email`, `user`), one answer for
    intel look-ups and shared indicators alike (`url.domain` is a domain, `url.full` a URL)."""
    k = key.lower()
    if k.endswith("ip") or k in ("ip", "source.ip", "destination.ip", "host.ip"):
        return "ip"
    if "domain" in k or k.startswith("dns") or k in ("hosts", "related.hosts"):
        return "domain"
    if "url" in k:
        return "url"
    if "hash" in k:
        return "hash"
    if "email" in k or "sender" in k:
        return "email"
    if "user" in k:
        return "user"
    return None
