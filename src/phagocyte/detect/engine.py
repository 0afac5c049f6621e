"""Batch evaluation of compiled Sigma rules over Arrow tables of events (a store scan or an ingest batch).

The design follows what the speed probe measured: rules are grouped by route (channel and
EventIDs, or dataset), each route's events are selected once and their fields extracted and
lower-cased once (one JSON parse per event for all EventData keys the group needs), then many rules
are evaluated per scan: each query returns, per row, the list of rules that matched. The same
`evaluate` runs on a whole store and on each micro-batch of `phago run`, so batch and stream give
the same alerts (rules are per event; correlations run over the matches afterwards).
"""

from __future__ import annotations

import heapq
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import ahocorasick_rs
import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from phagocyte.alerts import alert_id, make_alert
from phagocyte.attack import Tactic, attack_from_tags
from phagocyte.detect.correlation import Match, MatchedEvents, evaluate_correlations
from phagocyte.detect.pyeval import Node, NotPython, build, parse_condition
from phagocyte.detect.rules import RuleSet
from phagocyte.detect.sigma.backend import CompiledRule, alias, json_paths, prepared_expr
from phagocyte.detect.sigma.pipeline import Route
from phagocyte.schema import FIELD_TYPES

__all__ = ["CHUNK_RULES", "Detector", "Engine", "alerts_from_matches"]

CHUNK_RULES = 128
"""Rules evaluated by one query over a route's prepared rows."""
KEYWORDS = "kw"
"""The prepared column of a route's record text, for keyword (field-less) rules: one value per event,
mostly distinct and by far the largest column (8.7 MB of a hunt's 16,000 Windows events). Its
prefilter scans it a slice at a time (`_LiteralSet.rows_by_rule`) and the rules read it only at
their candidate rows (`_Columns`): as distinct Python strings all at once it was the hunt's peak."""
SCAN_ROWS = 2048
"""Keyword values turned into Python strings at a time by the prefilter."""
MATCH_DROPS = frozenset({"event.original", "event.ingested"})
"""Event columns a match does not carry (alerts never do: `alerts.make_alert`)."""
ROUTE_COLUMNS = ('"winlog.channel"', '"winlog.event_id"', '"event.dataset"', '"event.module"')
"""The columns route predicates read (`pipeline.route_for`)."""


@dataclass(slots=True)
class _Group:
    route: Route
    rules: list[CompiledRule]
    columns: list[tuple[str, str]]
    prefilter: list[str] = field(default_factory=list)
    """Prepared columns the rules' literal lists read (`CompiledRule.needs`)."""


class Engine:
    """Compiled rules grouped by route, ready to evaluate batches of events."""

    def __init__(self, ruleset: RuleSet, *, threads: int | None = None, python: bool = True,
                 database: str | None = None) -> None:
        self.ruleset = ruleset
        self.threads = threads
        self.database = database
        """A named in-memory DuckDB database to join (`:memory:NAME`, e.g. the ingest's: one instance,
        one catalog and thread pool, ~4 MB less than two), whose owner sets its per-instance
        settings; None: a database of the engine's own."""
        self.python = python
        """Evaluate candidate rows in Python (`pyeval`); False runs every rule's SQL in DuckDB (tests
        compare the two)."""
        groups: dict[str, _Group] = {}
        for r in ruleset.rules:
            g = groups.setdefault(r.route.key, _Group(r.route, [], []))
            g.rules.append(r)
        for g in groups.values():
            g.columns = sorted({c for r in g.rules for c in r.columns})
            g.prefilter = sorted({c for r in g.rules for c, _ in r.needs or ()})
        self.groups = list(groups.values())
        self.failed: dict[str, str] = {}
        """Rules that failed at run time (rule id -> reason); they are skipped from then on."""
        self._lock = threading.Lock()
        self._sets: dict[tuple[str, str, int], _LiteralSet] = {}
        self._compiled: dict[tuple[str, ...], Any] = {}
        """Literal sets per (route, column), built once and reused by every batch (`phago run`)."""
        self._plans: dict[tuple[str, int], tuple[dict[str, tuple[list[str], list[int]]], list[int]]] = {}
        """Per route: the literals to look for per column, and the prefiltered rules (numbers)."""
        self._routes_of: dict[tuple[Any, ...], frozenset[int]] = {}
        """(channel, EventID, dataset, module) -> the groups whose route selects it."""
        self._local = threading.local()
        self._preds: dict[str, Node | None] = {}
        """Conditions parsed for Python evaluation (None: run in DuckDB), per condition SQL."""

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """This thread's in-memory DuckDB, opened once (opening one costs ~20 ms, per batch of `phago run`)."""
        con: duckdb.DuckDBPyConnection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = duckdb.connect(self.database or ":memory:")
            con.execute("SET TimeZone='UTC'")
            if self.database is None:  # a shared database's settings are its owner's
                # DuckDB keeps what a query frees in bulk (up to 512 MiB) for the next one; detection's
                # queries are small, and the kept pages were 20-40 MB of a hunt's peak RSS (~+3 % CPU).
                con.execute("SET allocator_bulk_deallocation_flush_threshold='0B'")
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
            con.unregister("events")

    def _pred(self, r: CompiledRule) -> Node | None:
        """The rule's condition as a Python predicate (parsed once per engine); None when it must run
        in DuckDB (SQL outside `pyeval`'s subset)."""
        key = r.condition
        if not self.python:
            return None
        if key in self._preds:
            return self._preds[key]
        try:
            if r.plan is None:
                node: Node | None = parse_condition(key)[0]
            else:
                node = None if r.plan == '["sql"]' else build(orjson.loads(r.plan))
        except NotPython:
            node = None
        with self._lock:
            self._preds[key] = node
        return node

    def _candidates(self, g_key: str, rules: list[CompiledRule], batch: _Batch) -> dict[int, np.ndarray]:
        """The literal prefilter: rule index (in `rules`) -> the row positions that hold one of the
        literals the rule needs (`CompiledRule.needs`); rules without a usable list are absent.

        Per column, every distinct value is scanned once for all the literals of all rules (one RE2
        set), and the rows holding that value become candidates of the rules it hit. A prefiltered
        rule absent from the result has no candidate row: it cannot match this batch."""
        plan_key = (g_key, len(self.failed))  # a rule failing changes the rule numbers
        if (plan := self._plans.get(plan_key)) is None:
            cols: dict[str, tuple[list[str], list[int]]] = {}
            usable: list[int] = []
            for i, r in enumerate(rules):
                if not r.needs or not all(c in batch.names for c, _ in r.needs):
                    continue
                usable.append(i)
                for c, lit in r.needs:
                    lits, idx = cols.setdefault(c, ([], []))
                    lits.append(lit)
                    idx.append(i)
            plan = self._plans[plan_key] = (cols, usable)
        cols, usable = plan
        found: dict[int, list[np.ndarray]] = defaultdict(list)
        for c, (lits, idx) in cols.items():
            key = (g_key, c, len(self.failed))  # a rule failing changes the rule numbers
            if c == KEYWORDS:
                if batch.table.column(c).null_count == batch.table.num_rows:
                    continue
                for ri, rows in self._literal_set(key, lits, idx, c).rows_by_rule(batch.table.column(c)).items():
                    found[ri].append(rows)
                continue
            values, codes = batch.distinct(c)
            if not values:
                continue
            by_value = self._literal_set(key, lits, idx, c).rules_by_value(values)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(values) + 1), side="left")
            for k, hit in enumerate(by_value):
                if hit:
                    rows = order[bounds[k]:bounds[k + 1]]
                    for ri in hit:
                        found[ri].append(rows)
        for i in usable:
            if i not in found:
                found[i] = []
        return {i: _union(parts) for i, parts in found.items()}

    def _literal_set(self, key: tuple[str, str, int], lits: list[str], idx: list[int], column: str) -> _LiteralSet:
        if (lset := self._sets.get(key)) is None:
            lset = _LiteralSet(lits, idx, fold=column == KEYWORDS, shared=self._compiled)
            with self._lock:
                self._sets[key] = lset
        return lset

    def _run_sql(self, con: duckdb.DuckDBPyConnection, chunk: list[CompiledRule]) -> list[tuple[int, int]]:
        """(row, index in chunk) of every match of rules run in DuckDB over the route's rows `g`.
        One filter pipeline per rule in one query: a WHERE short-circuits AND/OR per row (a boolean
        in a SELECT list evaluates every operand on every row). If the query fails, each rule runs
        alone and the ones that fail are set aside with their error (`failed`): a rule DuckDB
        rejects at run time never stops the others."""
        sql = " UNION ALL ".join(f"SELECT __i, {i} AS r FROM g WHERE {r.condition}" for i, r in enumerate(chunk))
        try:
            return [(row, i) for row, i in con.execute(sql).fetchall()]
        except duckdb.Error:
            pass  # find the rule(s) at fault: each runs alone below
        out: list[tuple[int, int]] = []
        for i, r in enumerate(chunk):
            try:
                out.extend((row, i) for (row,) in con.execute(f"SELECT __i FROM g WHERE {r.condition}").fetchall())
            except duckdb.Error as exc:
                self._fail(r, str(exc))
        return out

    def _fail(self, r: CompiledRule, reason: str) -> None:
        with self._lock:
            self.failed[r.id] = f"{r.title}: {reason.splitlines()[0][:300] if reason else 'failed'}"

    def _prepare(self, con: duckdb.DuckDBPyConnection, g: _Group) -> _Batch:
        """The route's rows (`__i`) with every prepared column its rules read.

        DuckDB selects the rows and pulls every JSON field they need in one parse per row (a list
        of strings); the list is then split into columns, each decoded and lower-cased, with Arrow
        compute (the same RE2 and utf8proc operations as the SQL of `backend.prepared_expr`, which
        cost DuckDB more to plan for ~80 columns than to run). Other columns (event-schema fields,
        the keyword text) are DuckDB's expressions as they are."""
        src = g.route.json_source
        paths = sorted({f for k, f in g.columns if k != "kw" and _is_json(f)})
        inner = ['"__i"']
        pos: dict[str, list[int]] = {}
        exprs: list[str] = []
        for p in paths:
            for jp in json_paths(p, g.route):
                exprs.append(jp)
                pos.setdefault(p, []).append(len(exprs) - 1)
        if exprs:
            inner.append(f'json_extract_string("{src}", [{", ".join(exprs)}]) AS __j')
        direct = [(k, f) for k, f in g.columns if k == "kw" or f not in pos]
        for kind, f in direct:
            inner.append(f'{prepared_expr(kind, f, g.route)} AS "{alias(kind, f).replace(chr(34), chr(34) * 2)}"')
        t = con.sql(f"SELECT {', '.join(inner)} FROM events WHERE {g.route.predicate}").to_arrow_table()
        cols: dict[str, Any] = {"__i": t.column("__i")}
        if exprs:
            lists = t.column("__j")
            items = [pc.list_element(lists, i) for i in range(len(exprs))]
            for kind, f in g.columns:
                if kind == "kw" or f not in pos:
                    continue
                parts = [items[i] for i in pos[f]]
                raw = _decoded(parts[0] if len(parts) == 1 else pc.coalesce(*parts))
                cols[alias(kind, f)] = pc.utf8_lower(raw) if kind == "l" else raw
        for kind, f in direct:
            cols[alias(kind, f)] = t.column(alias(kind, f))
        # The distinct values of the prefilter's columns, made once for all its literal sets.
        return _Batch(pa.table(cols), {c: _distinct(cols[c]) for c in g.prefilter if c in cols and c != KEYWORDS})

    def _live(self, con: duckdb.DuckDBPyConnection) -> list[_Group]:
        """The groups whose route selects at least one event of the batch.

        Routes select on the ROUTE_COLUMNS only: the batch's distinct values of those are looked
        up in what earlier batches found (a stream sees the same few channels again and again);
        new ones get every route's predicate evaluated on them, in one query."""
        cols = ", ".join(ROUTE_COLUMNS)
        keys = con.execute(f"SELECT DISTINCT {cols} FROM events").fetchall()
        if any(k not in self._routes_of for k in keys):
            flags = ", ".join(f"COALESCE({g.route.predicate}, FALSE)" for g in self.groups)
            for row in con.execute(f"SELECT {cols}, {flags} FROM (SELECT DISTINCT {cols} FROM events)").fetchall():
                n = len(ROUTE_COLUMNS)
                self._routes_of[tuple(row[:n])] = frozenset(i for i, ok in enumerate(row[n:]) if ok)
        live: set[int] = set()
        for k in keys:
            live |= self._routes_of[k]
        return [g for i, g in enumerate(self.groups) if i in live]

    def _evaluate(self, con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[Match]:
        ev = table.append_column("__i", pa.array(range(table.num_rows), pa.int64()))
        con.register("events", ev)
        hits: dict[int, list[int]] = defaultdict(list)  # id(rule) -> event rows
        kept: dict[tuple[int, int], dict[str, str | None]] = {}
        for g in self._live(con):
            # One group after the other. Until session 7 a second thread prepared the next groups
            # while this one evaluated: on two cores it now cost more than it overlapped (DuckDB
            # already runs a query on both, and the two threads took turns with the interpreter's
            # lock): detection of 300 EVTX files 0.83 s sequential against 0.88 s with it, CPU
            # 0.84 against 0.98 s (medians of 7 alternated runs).
            batch = self._prepare(con, g)
            gt = batch.table
            if gt.num_rows == 0:
                continue
            rules = [r for r in g.rules if r.id not in self.failed]
            cand = self._candidates(g.route.key, rules, batch)
            if KEYWORDS in batch.names:
                readers = [i for i, r in enumerate(rules) if any(kind == KEYWORDS for kind, _ in r.columns)]
                if all(i in cand for i in readers):  # every reader prefiltered: only their candidates are read
                    parts = [cand[i] for i in readers if len(cand[i])]
                    batch.cols.only_at[KEYWORDS] = _union(parts)
            every = range(gt.num_rows)
            in_sql: list[CompiledRule] = []
            found: list[tuple[CompiledRule, list[int]]] = []
            for i, r in enumerate(rules):
                rows: Iterable[int] | None = cand.get(i, every)
                if rows is not every and not len(rows):  # type: ignore[arg-type]
                    continue
                node = self._pred(r)
                if node is None:
                    in_sql.append(r)
                    continue
                try:
                    pred = node(batch.cols)
                    found.append((r, [j for j in map(int, rows) if pred(j)]))  # type: ignore[arg-type]
                except Exception as exc:  # never expected: the rule is set aside, the others run
                    self._fail(r, f"{type(exc).__name__}: {exc}")
            if in_sql:
                con.register("g", gt)
                for start in range(0, len(in_sql), CHUNK_RULES):
                    chunk = in_sql[start:start + CHUNK_RULES]
                    pos_of = batch.position
                    by_rule: dict[int, list[int]] = defaultdict(list)
                    for row, i in self._run_sql(con, chunk):
                        by_rule[i].append(pos_of(row))
                    found += [(chunk[i], sorted(rows)) for i, rows in by_rule.items()]
                con.unregister("g")
            event_row = batch.event_rows()
            for r, rows in found:
                if not rows:
                    continue
                hits[id(r)].extend(event_row[j] for j in rows)
                if r.keep:
                    kcols = [batch.cols[alias("r", f)] for f in r.keep]
                    for j in rows:
                        kept[(id(r), event_row[j])] = {f: c[j] for f, c in zip(r.keep, kcols, strict=True)}
            # This group's columns (Python lists of its rows' values) go before the next group's are
            # made, not when the loop's names are bound again after it.
            del batch, gt, cand, found, event_row
        if not hits:
            return
        needed = sorted({row for rows in hits.values() for row in rows})
        taken = _take(table, needed)
        # A batch row has every schema column, most of them null for any one source: the columns
        # null on every matched row are left out of the event dicts (a null field may be absent).
        # So is the source record (`event.original`, ~1 KB per EVTX record): an alert never carries
        # it (`alerts.make_alert`), and as Python strings it was ~40 % of the matched events' memory.
        taken = taken.select([i for i, (name, c) in enumerate(zip(taken.column_names, taken.columns, strict=True))
                              if c.null_count < taken.num_rows and name not in MATCH_DROPS])
        matched = MatchedEvents(taken)
        at = {row: k for k, row in enumerate(needed)}
        for r in self.ruleset.rules:
            for row in sorted(hits.get(id(r), [])):
                yield Match(r, matched, at[row], kept.get((id(r), row), {}))


def _union(parts: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct rows of `parts` (each sorted and distinct: one value's rows, one rule's
    candidates); most rules have one part, returned as it is (`np.unique` sorted a copy)."""
    if not parts:
        return np.empty(0, np.int64)
    if len(parts) == 1:
        return parts[0]
    rows = np.sort(np.concatenate(parts))
    return rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if len(rows) else rows


def _take(table: pa.Table, rows: list[int]) -> pa.Table:
    """`table.take(rows)` (sorted rows) a record batch at a time: Arrow's take on a chunked
    column concatenates its chunks first (the whole batch's texts again, ~20 MB of a hunt's
    EVTX files, mapped in two parts)."""
    batches = table.to_batches()
    if len(batches) <= 1:
        return table.take(pa.array(rows, pa.int64()))
    at = np.array(rows, np.int64)
    out = []
    start = 0
    for b in batches:
        lo, hi = np.searchsorted(at, [start, start + b.num_rows])
        if hi > lo:
            out.append(b.take(pa.array(at[lo:hi] - start)))
        start += b.num_rows
    return pa.Table.from_batches(out, table.schema)


class _Columns(dict[str, list[Any]]):
    """A route's prepared columns as Python lists, converted from Arrow when first read.

    A column the prefilter already has as distinct values is made from them: the rows share the
    same string objects. A column every reader of which is prefiltered on it (`only_at`) gets its
    values at those readers' candidate rows only, None elsewhere (the keyword text: ~9 MB of Python
    strings for every Windows event otherwise, for a few hundred candidates)."""

    def __init__(self, table: pa.Table, distinct: dict[str, tuple[list[str], np.ndarray]]) -> None:
        super().__init__()
        self.table = table
        self.distinct = distinct
        self.only_at: dict[str, np.ndarray] = {}
        """Column -> the only rows its readers evaluate (every other row is no candidate of theirs)."""

    def __missing__(self, name: str) -> list[Any]:
        found = self.distinct.get(name)
        rows = self.only_at.get(name)
        if rows is not None:
            values: list[Any] = [None] * self.table.num_rows
            taken = self.table.column(name).take(pa.array(rows, pa.int64())).to_pylist()
            for r, v in zip(rows.tolist(), taken, strict=True):
                values[r] = v
        elif found is None:
            values = self.table.column(name).to_pylist()
        else:
            uniq, codes = found
            values = [uniq[c] if c >= 0 else None for c in codes.tolist()]
        self[name] = values
        return values


class _Batch:
    """One route's rows of a batch (`__i`: the event's row in the batch, then prepared columns)."""

    def __init__(self, table: pa.Table, distinct: dict[str, tuple[list[str], np.ndarray]] | None = None) -> None:
        self.table = table
        self.names = set(table.column_names)
        self._distinct = distinct or {}
        self.cols = _Columns(table, self._distinct)
        self._pos: dict[int, int] | None = None

    def event_rows(self) -> list[int]:
        return self.cols["__i"]

    def position(self, event_row: int) -> int:
        if self._pos is None:
            self._pos = {e: j for j, e in enumerate(self.event_rows())}
        return self._pos[event_row]

    def distinct(self, name: str) -> tuple[list[str], np.ndarray]:
        """The column's distinct non-NULL values and, per row, the index of its value (-1: NULL)."""
        found = self._distinct.get(name)
        return found if found is not None else _distinct(self.table.column(name))


def _distinct(column: Any) -> tuple[list[str], np.ndarray]:
    enc = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
    return enc.dictionary.to_pylist(), codes


def fold_keywords(text: str) -> str:
    """Record text as keyword literals are looked for in it: lower-cased, with the two non-ASCII
    characters RE2's `(?i)` equates with ASCII letters (long s, and the Kelvin sign, which
    `lower()` already maps to `k`) mapped to them, so that the prefilter finds every record the
    keyword's case-insensitive regular expression can match."""
    return text.lower().replace("\u017f", "s")


KEY_CHARS = 16
"""Literals longer than this are looked for by their first KEY_CHARS characters, then checked whole
(`_LiteralSet`). SigmaHQ's ~5,000 hash literals (random hex, no shared prefix) made most of the
automata's states: with pyahocorasick (a node of ~40 bytes per distinct prefix) 13.5 MB whole, 4.6 MB
with 16-character keys; with ahocorasick_rs's contiguous NFA, ~2 MB more whole than with these
keys (the same candidates whatever the length)."""


class _LiteralSet:
    """All the literals rules need in one column, and which rules need each: one Aho-Corasick
    automaton (a single pass over each value, whatever the number of literals).

    An RE2 set did the same until session 6: building and warming up its automaton for the ~6,000
    process-creation literals of SigmaHQ cost 3-4x more (a warm hunt over 300 EVTX files: 0.39 s
    of CPU in the sets against 0.13 s, the same candidates for every value), and it could give up
    on a value when its automaton outgrew its memory. Aho-Corasick's automaton is linear in the
    literals' length and never gives up. ahocorasick_rs (Rust's aho-corasick, a contiguous NFA)
    replaced pyahocorasick in session 8: the 119 automata of a hunt over 300 EVTX files hold
    0.7 MB against 5.3 MB (a pointer-linked node per state), and the largest (5,682 keys) scans
    the hunt's 15,943 event-data texts in 0.06 s against 0.32 s. The automaton holds each
    literal's first KEY_CHARS characters; a longer literal whose key is found is then looked for
    whole (`in`), so the candidates are exactly the rules one of whose literals the value holds.
    An empty literal is in every value: its rules are kept for every value."""

    def __init__(self, lits: list[str], rules: list[int], *, fold: bool = False,
                 shared: dict[tuple[str, ...], Any] | None = None) -> None:
        self.fold = fold
        """Values are raw record text (keywords): matched after `fold_keywords`."""
        by_lit: dict[str, set[int]] = {}
        for lit, r in zip(lits, rules, strict=True):
            if (found := by_lit.get(lit)) is None:
                by_lit[lit] = {r}
            else:
                found.add(r)
        distinct = list(by_lit)
        self.always = sorted(by_lit.get("", ()))
        """Rules one of whose literals is empty: candidates for every value."""
        # Rule lists are tuples, one object per distinct list (most literals stand for one rule,
        # and the same few): ~23,000 literals of SigmaHQ's Windows rules held ~5 MB of lists.
        canon: dict[tuple[int, ...], tuple[int, ...]] = {}
        grouped: dict[str, list[tuple[str | None, tuple[int, ...]]]] = {}
        for lit, found in by_lit.items():
            if lit:
                key = lit[:KEY_CHARS]
                rs = (*found,) if len(found) == 1 else tuple(sorted(found))
                grouped.setdefault(key, []).append((None if lit == key else lit, canon.setdefault(rs, rs)))
        keys = list(grouped)
        alone = [len(g) == 1 and g[0][0] is None for g in (grouped[k] for k in keys)]
        self.only: list[tuple[int, ...] | None] = [
            grouped[k][0][1] if one else None for k, one in zip(keys, alone, strict=True)]
        """Per key: its rules when it stands for itself alone (no literal to check): most keys."""
        self.by_key: list[tuple[tuple[str | None, tuple[int, ...]], ...]] = [
            () if one else tuple(grouped[k]) for k, one in zip(keys, alone, strict=True)]
        """Per other key: (the literal to check whole, None when it is the key itself; its rules)."""
        del grouped
        # The same literals in the same order make the same automaton: routes with the same rules
        # (process creation from Sysmon and from Security 4688) share one.
        shared_key = tuple(distinct)
        if shared is not None and shared_key in shared:
            self.automaton = shared[shared_key]
            return
        self.automaton = ahocorasick_rs.AhoCorasick(
            keys, matchkind=ahocorasick_rs.MatchKind.Standard,
            implementation=ahocorasick_rs.Implementation.ContiguousNFA) if keys else None
        if shared is not None:
            shared[shared_key] = self.automaton

    def rules_by_value(self, values: Iterable[str]) -> list[Sequence[int]]:
        """Per value, the rules one of whose literals the value holds (sorted)."""
        out: list[Sequence[int]] = []
        by_key, only, fold, always = self.by_key, self.only, self.fold, self.always
        find = self.automaton.find_matches_as_indexes if self.automaton is not None else None
        for v in values:
            text = fold_keywords(v) if fold else v
            found = {i for i, _, _ in _matches(find, text)} if find is not None and v else ()
            if not found:
                out.append(always)
                continue
            if len(found) == 1 and not always:
                one = only[next(iter(found))]
                if one is not None:
                    out.append(one)
                    continue
            hit = set(always)
            for i in found:
                if (rules := only[i]) is not None:
                    hit.update(rules)
                    continue
                for lit, rs in by_key[i]:
                    if lit is None or lit in text:
                        hit.update(rs)
            out.append(sorted(hit))
        return out

    def rows_by_rule(self, column: pa.ChunkedArray | pa.Array) -> dict[int, np.ndarray]:
        """Per rule, the rows of `column` whose value holds one of its literals (rules without any
        absent), a slice of SCAN_ROWS values at a time: for a column of mostly distinct values
        (`KEYWORDS`), where the distinct values of `rules_by_value` would all be Python strings at
        once. NULL rows are no rule's (as in `_distinct`)."""
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        rows: dict[int, list[int]] = defaultdict(list)
        base = 0
        for chunk in chunks:
            for start in range(0, len(chunk), SCAN_ROWS):
                values = chunk.slice(start, SCAN_ROWS).to_pylist()
                present = [k for k, v in enumerate(values) if v is not None]
                for k, hit in zip(present, self.rules_by_value([values[k] for k in present]), strict=True):
                    for ri in hit:
                        rows[ri].append(base + start + k)
            base += len(chunk)
        return {ri: np.array(found, np.int64) for ri, found in rows.items()}

    def hits(self, values: Iterable[str]) -> tuple[list[str], list[int]]:
        """(value, rule) for every value and every rule one of whose literals the value holds."""
        values = list(values)
        out_v: list[str] = []
        out_r: list[int] = []
        for v, hit in zip(values, self.rules_by_value(values), strict=True):
            for r in hit:
                out_v.append(v)
                out_r.append(r)
        return out_v, out_r


def _matches(find: Any, text: str) -> list[tuple[int, int, int]]:
    """Every key of the automaton in `text`, overlapping ones included. A string with a lone
    surrogate (none comes from Arrow, which holds UTF-8) is searched with it replaced."""
    try:
        return find(text, overlapping=True)  # type: ignore[no-any-return]
    except UnicodeEncodeError:
        return find(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), overlapping=True)  # type: ignore[no-any-return]


def _decoded(values: Any) -> Any:
    """`backend.decoded` in Arrow: a value that is itself JSON text (starts with `{` or `[`) with
    its strings' escapes undone (RE2 `\\\\(.)` -> `\\1`, as DuckDB's regexp_replace)."""
    nested = pc.or_(pc.starts_with(values, "{"), pc.starts_with(values, "["))
    if not pc.any(nested).as_py():
        return values
    return pc.if_else(nested, pc.replace_substring_regex(values, r"\\(.)", r"\1"), values)


def _is_json(f: str) -> bool:
    return f not in FIELD_TYPES


ALERT_BLOCK = 1024
"""Matches turned into alerts at a time: their events are dicts only that long (`MatchedEvents`)."""


def alerts_from_matches(matches: Iterable[Match]) -> list[dict[str, Any]]:
    """One alert per (rule, event), for rules that generate alerts (not `generate: false` ones), in
    the order of `matches`."""
    return list(_alerts([m for m in matches if m.rule.generate]))


def _alerts(matches: Sequence[Match]) -> Iterator[dict[str, Any]]:
    """The alerts of `matches`, in their order, a block at a time: each block's events are taken
    from their batches' Arrow rows together (one `take` per batch, not one per match). A rule's
    ATT&CK techniques and tactics are read from its tags once, not once per alert."""
    attack: dict[int, tuple[list[str], list[Tactic]]] = {}
    for start in range(0, len(matches), ALERT_BLOCK):
        block = matches[start:start + ALERT_BLOCK]
        by_rows: dict[int, tuple[MatchedEvents, list[int], list[int]]] = {}
        for i, m in enumerate(block):
            _, at, rows = by_rows.setdefault(id(m.rows), (m.rows, [], []))
            at.append(i)
            rows.append(m.row)
        events: list[dict[str, Any]] = [{}] * len(block)
        for source, at, rows in by_rows.values():
            for i, ev in zip(at, source.events(rows), strict=True):
                events[i] = ev
        for m, ev in zip(block, events, strict=True):
            r = m.rule
            if (a := attack.get(id(r))) is None:
                a = attack[id(r)] = attack_from_tags(r.tags)
            yield make_alert(source="sigma", rule_id=r.id, rule_name=r.title, level=r.level, event=ev,
                             techniques=a[0], tactics=a[1], description=r.description, ruleset="sigma")


def _order(alert: dict[str, Any]) -> tuple[str, str, str]:
    """The order alerts are reported in: time, rule, alert id."""
    return str(alert.get("@timestamp")), alert["rule.id"], alert["event.id"]


def _match_order(m: Match) -> tuple[str, str, str]:
    """`_order` of the alert `m` raises, without making it (`make_alert`: the id hashes the event's
    `event.id`; an event without one, never from the ingest pipeline, has its alert made)."""
    ref = m.event_id
    if not ref:
        return _order(next(_alerts([m])))
    return str(m.rows.timestamps[m.row]), m.rule.id, alert_id("sigma", m.rule.id, str(ref))


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
        """Every alert (rules and correlations), in time order."""
        return list(self.iter_alerts())

    def iter_alerts(self) -> Iterator[dict[str, Any]]:
        """The alerts of `alerts()`, in the same order, made as they are read (a hunt writes them out
        one by one: a list of them all was the largest thing a hunt held at its end)."""
        correlated = sorted(evaluate_correlations(self.engine.ruleset.correlations, self.matches), key=_order)
        ordered = sorted((m for m in self.matches if m.rule.generate), key=_match_order)
        return heapq.merge(_alerts(ordered), correlated, key=_order)
