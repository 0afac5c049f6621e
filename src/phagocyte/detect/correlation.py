"""Sigma correlation rules (spec v2): event_count, value_count, temporal, temporal_ordered.

Evaluated natively over the matches of the rules they reference (which the engine returns with
the values of the `group-by` and counted fields), not as SQL: matches are few, and a sliding
window per group is simple and exact in Python. A window starts at each match in time order; when
the condition holds, one alert is raised for that window (on its last event) and the next window
starts after it, so a long burst gives one alert per `timespan`, not one per event.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from phagocyte.alerts import make_alert
from phagocyte.detect.sigma.backend import CompiledRule

__all__ = ["CompiledCorrelation", "Match", "MatchedEvents", "compile_correlation", "evaluate_correlations"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le, "eq": operator.eq,
    "neq": operator.ne,
}


class MatchedEvents:
    """The events of one batch that rules matched, kept as Arrow until alerts are made.

    Why not a dict per event: ~4 KB each as Python objects (~20 MB for the ~5,000 events a hunt over
    300 EVTX files matches, and without bound for `phago detect` over a big store); in Arrow about
    a quarter of that. Dicts are made a block at a time (`events`) when alerts are written. The
    timestamp and `event.id` of each are kept as Python values: correlations and the alerts' order
    read them for every match."""

    __slots__ = ("ids", "table", "timestamps")

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        n = table.num_rows
        names = set(table.column_names)
        self.timestamps: list[Any] = table.column("@timestamp").to_pylist() if "@timestamp" in names else [None] * n
        self.ids: list[Any] = table.column("event.id").to_pylist() if "event.id" in names else [None] * n

    def events(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """The events at these row positions, as dicts of the fields that have a value (a row may be
        asked for more than once). Built a column at a time: twice as fast as Arrow's rows."""
        taken = self.table.take(pa.array(rows, pa.int64()))
        out: list[dict[str, Any]] = [{} for _ in rows]
        for name, column in zip(taken.column_names, taken.columns, strict=True):
            for event, value in zip(out, column.to_pylist(), strict=True):
                if value is not None:
                    event[name] = value
        return out


@dataclass(slots=True)
class Match:
    """One rule matching one event (row `row` of `rows`) and the raw values the correlations need."""

    rule: CompiledRule
    rows: MatchedEvents
    row: int
    values: dict[str, str | None] = field(default_factory=dict)

    @property
    def event(self) -> dict[str, Any]:
        """The matched event's fields (made on each call: for many matches, `MatchedEvents.events`)."""
        return self.rows.events([self.row])[0]

    @property
    def event_id(self) -> Any:
        return self.rows.ids[self.row]

    @property
    def timestamp(self) -> datetime | None:
        ts = self.rows.timestamps[self.row]
        return ts if isinstance(ts, datetime) else None


@dataclass(slots=True)
class CompiledCorrelation:
    id: str
    title: str
    level: str | None
    tags: list[str]
    description: str | None
    path: str
    type: str
    rules: list[str]
    """Ids of the referenced (compiled) rules, in the rule's order (temporal_ordered uses it)."""
    group_by: list[str]
    timespan: float
    op: str
    count: float
    fieldref: str | None
    fields: dict[str, dict[str, str]]
    """group-by name or counted field -> rule id -> that rule's field (aliases resolved)."""
    generate: bool = False


def compile_correlation(corr: Any, rules: Mapping[str, CompiledRule]) -> CompiledCorrelation:
    """A pySigma SigmaCorrelationRule against the compiled rules it references (by id or name).

    The referenced rules are told which raw values to return with their matches."""
    ctype = str(corr.type.name).lower()
    if ctype not in ("event_count", "value_count", "temporal", "temporal_ordered"):
        raise ValueError(f"correlation type {ctype} is not supported")
    refs: list[CompiledRule] = []
    for ref in corr.rules or []:
        name = str(ref.reference)
        target = rules.get(name)
        if target is None:
            raise ValueError(f"correlation references rule {name!r}, which is not loaded or did not compile")
        refs.append(target)
    if not refs:
        raise ValueError("correlation references no rules")
    cond = corr.condition
    cond_op = getattr(cond, "op", None)
    op = str(cond_op.name).lower() if cond_op is not None else "gte"
    count = getattr(cond, "count", 1)
    fieldref = getattr(cond, "fieldref", None)
    if isinstance(fieldref, list):
        if len(fieldref) != 1:
            raise ValueError("value_count over several fields is not supported")
        fieldref = fieldref[0]
    if ctype == "value_count" and not fieldref:
        raise ValueError("value_count needs a condition field")
    group_by = list(corr.group_by or [])
    aliases = getattr(corr.aliases, "aliases", {}) or {}
    fields: dict[str, dict[str, str]] = {}
    for name in [*group_by, *([fieldref] if fieldref else [])]:
        per_rule: dict[str, str] = {}
        alias = aliases.get(name)
        for r in refs:
            target_field = name
            if alias is not None:
                for rref, fname in alias.mapping.items():
                    if str(rref.reference) in (r.id, r.name):
                        target_field = fname
            per_rule[r.id] = target_field
            r.columns |= {("r", target_field)}
            if target_field not in r.keep:
                r.keep = (*r.keep, target_field)
        fields[name] = per_rule
    for r in refs:
        if not corr.generate:
            r.generate = False
    return CompiledCorrelation(
        id=str(corr.id) if corr.id else (corr.name or corr.title), title=corr.title or "",
        level=corr.level.name.lower() if corr.level is not None else None, tags=[str(t) for t in corr.tags],
        description=corr.description, path=str(corr.source.path) if corr.source and corr.source.path else "",
        type=ctype, rules=[r.id for r in refs], group_by=group_by, timespan=float(corr.timespan.seconds),
        op=op, count=count, fieldref=fieldref, fields=fields, generate=bool(corr.generate),
    )


def _holds(c: CompiledCorrelation, window: list[Match]) -> bool:
    if c.type == "event_count":
        return _OPS[c.op](len(window), c.count)
    if c.type == "value_count":
        assert c.fieldref is not None
        names = c.fields[c.fieldref]
        distinct = {m.values.get(names[m.rule.id]) for m in window} - {None}
        return _OPS[c.op](len(distinct), c.count)
    seen = [m.rule.id for m in window]
    if c.type == "temporal":
        return set(c.rules) <= set(seen)
    # temporal_ordered: the referenced rules appear in this order (as a subsequence)
    it = iter(seen)
    return all(any(s == rid for s in it) for rid in c.rules)


def evaluate_correlations(correlations: Iterable[CompiledCorrelation],
                          matches: Iterable[Match]) -> list[dict[str, Any]]:
    """Alerts of the correlation rules whose condition holds within their timespan, per group."""
    by_rule: dict[str, list[Match]] = defaultdict(list)
    for m in matches:
        by_rule[m.rule.id].append(m)
    alerts: list[dict[str, Any]] = []
    for c in correlations:
        groups: dict[tuple[str | None, ...], list[Match]] = defaultdict(list)
        for rid in dict.fromkeys(c.rules):
            for m in by_rule.get(rid, []):
                if m.timestamp is None:
                    continue
                key = tuple((m.values.get(c.fields[g][rid]) or "").lower() or None for g in c.group_by)
                groups[key].append(m)
        for key, ms in sorted(groups.items(), key=lambda kv: str(kv[0])):
            ms.sort(key=lambda m: (m.timestamp, str(m.event_id)))
            i = 0
            while i < len(ms):
                start = ms[i].timestamp
                assert start is not None
                j = i
                while j < len(ms) and (ms[j].timestamp - start).total_seconds() <= c.timespan:  # type: ignore[operator]
                    j += 1
                window = ms[i:j]
                if _holds(c, window):
                    alerts.append(_alert(c, key, window))
                    i = j
                else:
                    i += 1
    return alerts


def _alert(c: CompiledCorrelation, key: tuple[str | None, ...], window: list[Match]) -> dict[str, Any]:
    last = window[-1]
    group = ", ".join(f"{g}={v}" for g, v in zip(c.group_by, key, strict=True)) or "all events"
    message = (f"{c.title}: {len(window)} matching events ({c.type}) for {group} "
               f"between {window[0].timestamp} and {last.timestamp}")
    return make_alert(source="sigma", rule_id=c.id, rule_name=c.title, level=c.level, event=last.event,
                      tags=c.tags, description=c.description, ruleset="sigma-correlation", message=message)
