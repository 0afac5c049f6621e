"""Batch evaluation of compiled Sigma rules over Arrow tables of events (a store scan or an ingest batch).

The design follows what the speed probe measured: rules are grouped by route (channel and
EventIDs, or dataset), each route's events are selected once and their fields extracted and
lower-cased once (one JSON parse per event for all EventData keys the group needs), then many rules
are evaluated per scan: each query returns, per row, the list of rules that matched. The same
`evaluate` runs on a whole store and on each micro-batch of `phago run`, so batch and stream give
the same alerts (rules are per event; correlations run over the matches afterwards).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import re2

from phagocyte.alerts import make_alert
from phagocyte.detect.correlation import Match, evaluate_correlations
from phagocyte.detect.rules import RuleSet
from phagocyte.detect.sigma.backend import CompiledRule, alias, decoded, json_paths, prepared_expr
from phagocyte.detect.sigma.pipeline import Route
from phagocyte.schema import FIELD_TYPES

__all__ = ["CHUNK_RULES", "Detector", "Engine", "alerts_from_matches"]

CHUNK_RULES = 128
"""Rules evaluated by one query over a route's prepared rows."""
ROUTE_COLUMNS = ('"winlog.channel"', '"winlog.event_id"', '"event.dataset"', '"event.module"')
"""The columns route predicates read (`pipeline.route_for`)."""


@dataclass(slots=True)
class _Group:
    route: Route
    rules: list[CompiledRule]
    columns: list[tuple[str, str]]


class Engine:
    """Compiled rules grouped by route, ready to evaluate batches of events."""

    def __init__(self, ruleset: RuleSet, *, threads: int | None = None) -> None:
        self.ruleset = ruleset
        self.threads = threads
        groups: dict[str, _Group] = {}
        for r in ruleset.rules:
            g = groups.setdefault(r.route.key, _Group(r.route, [], []))
            g.rules.append(r)
        for g in groups.values():
            g.columns = sorted({c for r in g.rules for c in r.columns})
        self.groups = list(groups.values())
        self.failed: dict[str, str] = {}
        """Rules that failed at run time (rule id -> reason); they are skipped from then on."""
        self._lock = threading.Lock()
        self._sets: dict[tuple[str, str, int], _LiteralSet] = {}
        """Literal sets per (route, column), built once and reused by every batch (`phago run`)."""

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone='UTC'")
        if self.threads:
            con.execute(f"SET threads={self.threads}")
        return con

    def evaluate(self, table: pa.Table) -> list[Match]:
        """Every (rule, event) match in `table` (event-schema rows), in rule then row order."""
        if table.num_rows == 0 or not self.groups:
            return []
        con = self._connect()
        try:
            return list(self._evaluate(con, table))
        finally:
            con.close()

    def _plan(self, con: duckdb.DuckDBPyConnection, g_key: str, rules: list[CompiledRule],
              prepared: set[str]) -> Iterator[tuple[list[CompiledRule], int | None]]:
        """Chunks of rules to run on the route's prepared rows `g`: (rules, None), or (rules, base)
        for prefiltered rules numbered base, base + 1, ... in `cand_g`.

        The literal prefilter: every literal the rules need (`CompiledRule.needs`) is looked for in
        its lower-cased column, all at once (one join per column, in DuckDB); each (row, rule) pair
        found becomes a row of `cand_g` (the rule's number and the prepared row), and a prefiltered
        rule then runs on its own candidate rows only. A rule none of whose literals occurs in the
        batch never runs. Rules without a literal list run on every row, as before."""
        def usable(r: CompiledRule) -> bool:
            return bool(r.needs) and all(c in prepared for c, _ in r.needs or ())

        plain = [r for r in rules if not usable(r)]
        for start in range(0, len(plain), CHUNK_RULES):
            yield plain[start:start + CHUNK_RULES], None
        pre = [r for r in rules if usable(r)]
        if not pre:
            return
        cols: dict[str, tuple[list[str], list[int]]] = {}
        for i, r in enumerate(pre):
            for c, lit in r.needs or ():
                lits, idx = cols.setdefault(c, ([], []))
                lits.append(lit)
                idx.append(i)
        parts = []
        for n, (c, (lits, idx)) in enumerate(cols.items()):
            col = '"' + c.replace('"', '""') + '"'
            values = [v for (v,) in con.execute(f"SELECT DISTINCT {col} FROM g WHERE {col} IS NOT NULL").fetchall()]
            key = (g_key, c, len(self.failed))  # a rule failing changes the rule numbers
            if (lset := self._sets.get(key)) is None:
                lset = self._sets[key] = _LiteralSet(lits, idx, fold=c == "kw")
            hit_v, hit_r = lset.hits(values)
            con.register(f"hits{n}", pa.table({"v": pa.array(hit_v, pa.string()), "r": pa.array(hit_r, pa.int32())}))
            parts.append(f"SELECT g.__i, h.r FROM g JOIN hits{n} h ON g.{col} = h.v")
        con.execute(f"CREATE OR REPLACE TEMP TABLE cand AS SELECT DISTINCT __i, r FROM ({' UNION ALL '.join(parts)})")
        for n in range(len(cols)):
            con.unregister(f"hits{n}")
        found = [i for (i,) in con.execute("SELECT DISTINCT r FROM cand ORDER BY r").fetchall()]
        if not found:
            return
        # The rules that have candidates are renumbered 0..n-1, so that a chunk is a range of numbers.
        renumber = pa.table({"r": pa.array(found, pa.int32()), "__r": pa.array(range(len(found)), pa.int32())})
        con.register("renumber", renumber)
        con.execute("CREATE OR REPLACE TEMP TABLE cand_g AS SELECT m.__r, g.* FROM cand c "
                    "JOIN renumber m USING (r) JOIN g USING (__i)")
        con.unregister("renumber")
        live = [pre[i] for i in found]
        for start in range(0, len(live), CHUNK_RULES):
            yield live[start:start + CHUNK_RULES], start

    def _run_chunk(self, con: duckdb.DuckDBPyConnection, chunk: list[CompiledRule],
                   base: int | None = None) -> list[tuple[int, int]]:
        """(row, index in chunk) of every match. One filter pipeline per rule in one query: a WHERE
        short-circuits AND/OR per row (a boolean in a SELECT list evaluates every operand on every
        row). Prefiltered rules (`base` given) run on their candidate rows only (`cand_g`), each in
        its own CASE branch. If the query fails, each rule runs alone and the ones that fail are set
        aside with their error (`failed`): a rule DuckDB rejects at run time never stops the others."""
        if base is not None:
            whens = " ".join(f"WHEN {base + i} THEN {r.condition}" for i, r in enumerate(chunk))
            sql = (f"SELECT __i, __r - {base} FROM cand_g WHERE __r BETWEEN {base} AND {base + len(chunk) - 1} "
                   f"AND CASE __r {whens} END")

            def alone(i: int, r: CompiledRule) -> str:
                return f"SELECT __i FROM cand_g WHERE __r = {base + i} AND {r.condition}"
        else:
            sql = " UNION ALL ".join(f"SELECT __i, {i} AS r FROM g WHERE {r.condition}" for i, r in enumerate(chunk))

            def alone(i: int, r: CompiledRule) -> str:
                return f"SELECT __i FROM g WHERE {r.condition}"
        try:
            return [(row, i) for row, i in con.execute(sql).fetchall()]
        except duckdb.Error:
            pass  # find the rule(s) at fault: each runs alone below
        out: list[tuple[int, int]] = []
        for i, r in enumerate(chunk):
            try:
                out.extend((row, i) for (row,) in con.execute(alone(i, r)).fetchall())
            except duckdb.Error as exc:
                with self._lock:
                    self.failed[r.id] = f"{r.title}: {str(exc).splitlines()[0][:300]}"
        return out

    def _evaluate(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[Match]:
        ev = table.append_column("__i", pa.array(range(table.num_rows), pa.int64()))
        con.register("events", ev)
        # Routes select on these columns only: test each route on their distinct values, not on every row.
        con.execute(f"CREATE OR REPLACE TEMP TABLE route_keys AS SELECT DISTINCT {', '.join(ROUTE_COLUMNS)} "
                    "FROM events")
        hits: dict[int, list[int]] = defaultdict(list)  # rule index -> rows
        kept: dict[tuple[int, int], dict[str, str | None]] = {}
        for g in self.groups:
            if not _exists(con, g.route.predicate):
                continue
            src = g.route.json_source
            json_cols = [(k, f) for k, f in g.columns if k != "kw" and _is_json(f)]
            paths = sorted({f for _, f in json_cols})
            select = ['"__i"']
            inner = ['"__i"']
            pos: dict[str, list[int]] = {}
            exprs: list[str] = []
            for p in paths:
                for jp in json_paths(p, g.route):
                    exprs.append(jp)
                    pos.setdefault(p, []).append(len(exprs))
            if exprs:
                inner.append(f'json_extract_string("{src}", [{", ".join(exprs)}]) AS __j')
            for kind, f in g.columns:
                name = alias(kind, f).replace('"', '""')
                if kind != "kw" and f in pos:
                    items = [f"__j[{i}]" for i in pos[f]]
                    raw = decoded(items[0] if len(items) == 1 else f"COALESCE({', '.join(items)})")
                    expr = f"lower({raw})" if kind == "l" else raw
                    select.append(f'{expr} AS "{name}"')
                else:
                    inner.append(f'{prepared_expr(kind, f, g.route)} AS "{name}"')
                    select.append(f'"{name}"')
            con.execute(f"CREATE OR REPLACE TEMP TABLE g AS SELECT {', '.join(select)} "
                        f"FROM (SELECT {', '.join(inner)} FROM events WHERE {g.route.predicate})")
            rules = [r for r in g.rules if r.id not in self.failed]
            for chunk, base in self._plan(con, g.route.key, rules, {alias(k, f) for k, f in g.columns}):
                for row, i in self._run_chunk(con, chunk, base):
                    hits[id(chunk[i])].append(row)
                for r in chunk:
                    if r.keep and hits.get(id(r)):
                        cols = ", ".join(f'"{alias("r", f)}"' for f in r.keep)
                        rows_k = con.execute(f"SELECT __i, {cols} FROM g WHERE __i IN "
                                             f"({', '.join(map(str, hits[id(r)]))})").fetchall()
                        for row_k in rows_k:
                            kept[(id(r), row_k[0])] = dict(zip(r.keep, row_k[1:], strict=True))
        if not hits:
            return
        needed = sorted({row for rows in hits.values() for row in rows})
        events = dict(zip(needed, table.take(pa.array(needed, pa.int64())).to_pylist(), strict=True))
        for r in self.ruleset.rules:
            for row in sorted(hits.get(id(r), [])):
                yield Match(r, events[row], kept.get((id(r), row), {}))


SET_MAX_MEM = 64 * 1024 * 1024
"""Memory budget of one RE2 set (a literal set's automaton needs far less)."""


def fold_keywords(text: str) -> str:
    """Record text as keyword literals are looked for in it: lower-cased, with the two non-ASCII
    characters RE2's `(?i)` equates with ASCII letters (long s, and the Kelvin sign, which
    `lower()` already maps to `k`) mapped to them, so that the prefilter finds every record the
    keyword's case-insensitive regular expression can match."""
    return text.lower().replace("\u017f", "s")


class _LiteralSet:
    """All the literals rules need in one column, and which rules need each: one RE2 set, matched
    as literals (a single pass over each value, whatever the number of literals).

    RE2 can give up on a set when its automaton outgrows its memory, and then reports no match:
    an always-matching sentinel (the empty literal, added last) tells that case apart, and such a
    value keeps every rule of the column (nothing is lost); so does every value when the set
    cannot even be compiled."""

    def __init__(self, lits: list[str], rules: list[int], *, fold: bool = False) -> None:
        self.fold = fold
        """Values are raw record text (keywords): matched after `fold_keywords`."""
        distinct = list(dict.fromkeys(lits))
        pos = {lit: i for i, lit in enumerate(distinct)}
        self.by_lit: list[list[int]] = [[] for _ in distinct]
        for lit, r in zip(lits, rules, strict=True):
            self.by_lit[pos[lit]].append(r)
        opts = re2.Options()
        opts.literal = True
        opts.max_mem = SET_MAX_MEM
        opts.log_errors = False
        self.every = sorted(set(rules))
        self.set: re2.Set | None = re2.Set.SearchSet(opts)
        try:
            for lit in distinct:
                self.set.Add(lit)
            self.sentinel = self.set.Add("")
            self.set.Compile()
        except re2.error:  # too big for its memory budget: no prefilter on this column
            self.set, self.sentinel = None, -1

    def hits(self, values: Iterable[str]) -> tuple[list[str], list[int]]:
        """(value, rule) for every value and every rule one of whose literals the value holds."""
        out_v: list[str] = []
        out_r: list[int] = []
        for v in values:
            found = self.set.Match(fold_keywords(v) if self.fold else v) if self.set is not None else []
            if self.sentinel not in found:  # the set gave up on this value (or was not built): keep every rule
                hit: Iterable[int] = self.every
            else:
                hit = sorted({r for i in found if i != self.sentinel for r in self.by_lit[i]})
            for r in hit:
                out_v.append(v)
                out_r.append(r)
        return out_v, out_r


def _is_json(f: str) -> bool:
    return f not in FIELD_TYPES


def _exists(con: duckdb.DuckDBPyConnection, predicate: str) -> bool:
    return con.execute(f"SELECT EXISTS (SELECT 1 FROM route_keys WHERE {predicate})").fetchall() == [(True,)]


def alerts_from_matches(matches: Iterable[Match]) -> list[dict[str, Any]]:
    """One alert per (rule, event), for rules that generate alerts (not `generate: false` ones)."""
    out = []
    for m in matches:
        r = m.rule
        if not r.generate:
            continue
        out.append(make_alert(source="sigma", rule_id=r.id, rule_name=r.title, level=r.level, event=m.event,
                              tags=r.tags, description=r.description, ruleset="sigma"))
    return out


@dataclass
class Detector:
    """Collects matches over many batches (streaming), then raises alerts and correlations."""

    engine: Engine
    matches: list[Match] = field(default_factory=list)
    events: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, table: pa.Table) -> None:
        """Evaluate one batch (the ingest pipeline's `on_table` hook)."""
        found = self.engine.evaluate(table)
        with self._lock:
            self.events += table.num_rows
            self.matches.extend(m for m in found if m.rule.generate or m.rule.keep)

    def alerts(self) -> list[dict[str, Any]]:
        alerts = alerts_from_matches(self.matches)
        alerts += evaluate_correlations(self.engine.ruleset.correlations, self.matches)
        return sorted(alerts, key=lambda a: (str(a.get("@timestamp")), a["rule.id"], a["event.id"]))
