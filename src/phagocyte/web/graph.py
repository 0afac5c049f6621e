"""Small SVG drawings for the console: the entity graph of an incident and bar charts.

Server-side SVG: no JavaScript library, nothing fetched, fast to render and safe under a strict
Content-Security-Policy. Text is escaped by Jinja2's autoescape where it is placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Bar", "EntityGraph", "bars", "entity_graph"]

_COLOURS = {"host": "#2563eb", "user": "#7c3aed", "ip": "#dc2626", "domain": "#059669", "process": "#d97706",
            "hash": "#475569", "file": "#475569", "url": "#059669", "email": "#db2777"}


def _kind(key: str) -> str:
    k = key.lower()
    for name in ("host", "user", "ip", "domain", "process", "hash", "file", "url", "email"):
        if name in k:
            return name
    return "other"


@dataclass
class Node:
    x: float
    y: float
    label: str
    kind: str
    colour: str


@dataclass
class EntityGraph:
    width: int
    height: int
    centre: tuple[float, float]
    nodes: list[Node]
    more: int


def entity_graph(entities: dict[str, list[Any]], *, max_nodes: int = 24) -> EntityGraph:
    """The incident in the middle, its entities on a circle, grouped by kind (hosts, users, addresses...)."""
    items = [(k, str(v)) for k, vs in sorted(entities.items(), key=lambda kv: _kind(kv[0])) for v in vs or []]
    shown = items[:max_nodes]
    w, h = 640, 360
    cx, cy = w / 2, h / 2
    r = min(w, h) / 2 - 40
    nodes = []
    for i, (k, v) in enumerate(shown):
        a = 2 * math.pi * i / max(len(shown), 1) - math.pi / 2
        kind = _kind(k)
        nodes.append(Node(cx + r * 1.45 * math.cos(a), cy + r * math.sin(a), v[:40], k,
                          _COLOURS.get(kind, "#64748b")))
    return EntityGraph(w, h, (cx, cy), nodes, len(items) - len(shown))


@dataclass
class Bar:
    label: str
    value: float
    x: float
    width: float
    height: float
    y: float


def bars(data: list[tuple[str, float]], *, width: int = 560, height: int = 160) -> list[Bar]:
    """Vertical bars scaled to the largest value."""
    if not data:
        return []
    top = max(v for _, v in data) or 1.0
    slot = width / len(data)
    out = []
    for i, (label, value) in enumerate(data):
        bh = (height - 20) * value / top
        out.append(Bar(label, value, i * slot + slot * 0.15, slot * 0.7, bh, height - 20 - bh))
    return out
