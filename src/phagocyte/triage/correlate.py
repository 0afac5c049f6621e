"""Correlation: groups that share an entity and are close in time form one incident.

Links are made per entity field (host, addresses, user, process, file hash, domain): within one
entity value, a group joins the previous ones when it starts at most `gap` seconds after they
ended. Union-find turns the links into incidents. Incidents can be merged and split by an analyst.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from phagocyte.triage.sources import ENTITY_FIELDS, AlertFrame
from phagocyte.triage.suppress import Groups

__all__ = ["CORRELATION_GAP", "correlate", "find_root", "merge", "split"]

CORRELATION_GAP = 1800.0


def find_root(parent: list[int], i: int) -> int:
    """Union-find root of `i` (with path halving)."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def correlate(frame: AlertFrame, groups: Groups, members: np.ndarray, gap: float = CORRELATION_GAP,
              fields: Sequence[str] = ENTITY_FIELDS) -> list[list[int]]:
    """Incidents (lists of group ids, each in time order) over the groups in `members`."""
    members = np.asarray(members, dtype=np.int64)
    parent = list(range(len(members)))
    fa = groups.first_alert[members]
    start, end = groups.first_seen[members], groups.last_seen[members]
    for f in fields:
        vals = frame.entities[f][fa]
        has = np.nonzero(vals != None)[0]  # noqa: E711
        if len(has) < 2:
            continue
        v = vals[has].astype(str)
        order = has[np.lexsort((start[has], v))]
        prev_val: str | None = None
        run_end = -np.inf
        run_root = -1
        for i in order:
            val = str(vals[i])
            if val == prev_val and start[i] - run_end <= gap:
                a, b = find_root(parent, int(i)), find_root(parent, run_root)
                if a != b:
                    parent[a] = b
                run_end = max(run_end, end[i])
            else:
                prev_val, run_end, run_root = val, end[i], int(i)
    buckets: dict[int, list[int]] = {}
    for i in np.argsort(start, kind="stable"):
        buckets.setdefault(find_root(parent, int(i)), []).append(int(members[i]))
    return list(buckets.values())


def merge(incidents: list[list[int]], a: int, b: int) -> list[list[int]]:
    """Incident `a` and `b` (positions) become one, kept at the position of `a`."""
    if a == b:
        return incidents
    out = [list(x) for x in incidents]
    out[a] = sorted(out[a] + out[b])
    del out[b]
    return out


def split(incidents: list[list[int]], at: int, group_ids: Sequence[int]) -> list[list[int]]:
    """The given groups leave incident `at` and form a new incident appended at the end."""
    take = set(group_ids)
    out = [list(x) for x in incidents]
    kept = [g for g in out[at] if g not in take]
    moved = [g for g in out[at] if g in take]
    if not moved or not kept:
        raise ValueError("a split must leave groups on both sides")
    out[at] = kept
    out.append(moved)
    return out
