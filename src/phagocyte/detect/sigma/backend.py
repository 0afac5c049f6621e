"""Sigma rules to SQL predicates (DuckDB dialect, portable SQL functions), from pySigma's parsed rules.

Why not `pysigma-backend-duckdb` or a `TextQueryBackend` template: matching must be case-insensitive
without a per-row collation, long `contains` lists must become one multi-pattern match, and `|re`
must be RE2 (linear time). This back end walks pySigma's condition tree after the processing
pipeline and emits one boolean SQL expression per rule over *prepared columns*:

- `"l.<field>"`: the field's value as text, lower-cased once per routed batch (rule values are
  lower-cased here, at compile time, so comparisons are plain `=`, `starts_with`, `contains`);
- `"r.<field>"`: the raw value, for `|re` and `|cased`;
- `"kw"`: the whole record's text (raw) for keyword (field-less) searches.

A field is an event-schema column (`process.command_line`, `winlog.event_id`) or a key of the
route's source record (`winlog.event_data` / `event.original`); `CompiledRule.columns` says which
fields a rule needs, so the engine extracts each once per route group. `CompiledRule.sql()` gives a
stand-alone query over the `events` view (for another SQL engine, or to check the engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from phagocyte.detect.sigma.pipeline import Route
from phagocyte.ingest.jsonmap import sql_str
from phagocyte.schema import FIELD_TYPES

__all__ = ["CompiledRule", "alias", "decoded", "field_expr", "json_paths", "prepared_expr"]
# The compiler itself (pySigma's condition tree -> SQL) is in `compiler.py`: it imports pySigma,
# which a hunt with cached compiled rules does not need to load.


@dataclass(slots=True)
class CompiledRule:
    """One Sigma detection rule, ready to run: metadata, route and SQL predicate.

    Its collections are immutable (tuples, frozensets): a loaded rule set holds each distinct value
    once, shared by the rules that have it (`rules._from_json`), which a mutation would change for all."""

    id: str
    title: str
    level: str | None
    tags: tuple[str, ...]
    description: str | None
    status: str | None
    path: str
    route: Route
    condition: str
    columns: frozenset[tuple[str, str]] = frozenset()
    """(kind, field): kind `l` lowered, `r` raw, `kw` keywords."""
    name: str | None = None
    """The rule's `name` (correlations refer to rules by id or name)."""
    generate: bool = True
    """False for a rule used only by correlations (`generate: false`)."""
    keep: tuple[str, ...] = ()
    """Fields whose raw values are returned with each match (correlation group-by and counted fields)."""
    variant: str | None = None
    """Set on a second form of a rule for another log (`security-4688` for process creation)."""
    needs: tuple[tuple[str, str], ...] | None = None
    """(prepared lower-cased column, literal) pairs of which a row must hold at least one (the literal
    in the column's value) for the condition to be true; None: no such list (every row is tried).
    The engine scans for all rules' literals at once and runs each rule only on the rows that have one."""
    plan: str | None = None
    """The condition parsed for evaluation in Python (`pyeval.plan_condition`) as JSON text, made
    once when the rule is compiled and cached with it (text: a tenth of the memory of the lists for
    the ~2,400 rules a hunt never evaluates); `["sql"]`: outside that subset (runs in DuckDB); None: not
    made (parsed when first needed). Made from `condition`: whoever changes that resets it."""

    def sql(self) -> str:
        """A stand-alone query over the `events` view returning the matching events' `event.id`."""
        cols = ", ".join(f'{prepared_expr(kind, f, self.route)} AS "{alias(kind, f)}"'
                         for kind, f in sorted(self.columns))
        sel = f', {cols}' if cols else ""
        return (f'WITH p AS (SELECT "event.id"{sel} FROM events WHERE {self.route.predicate}) '
                f'SELECT "event.id" FROM p WHERE {self.condition}')


def alias(kind: str, name: str) -> str:
    return "kw" if kind == "kw" else f"{kind}.{name}"


def field_expr(name: str, route: Route) -> str:
    """The raw text of a field: an event-schema column, or a key of the source record's JSON."""
    if name in FIELD_TYPES:
        return f'CAST("{name}" AS VARCHAR)'
    src = route.json_source
    paths = [f'json_extract_string("{src}", {p})' for p in json_paths(name, route)]
    return decoded(paths[0] if len(paths) == 1 else f"COALESCE({', '.join(paths)})")


def decoded(expr: str) -> str:
    """A value that is itself a JSON object or list (unnamed EventData `Data` items, nested keys)
    with its strings' escapes undone, so `\\\\server` matches a UNC path, not every escaped `\\`."""
    return (f"(CASE WHEN left({expr}, 1) IN ('{{', '[') THEN regexp_replace({expr}, '\\\\(.)', '\\1', 'g') "
            f"ELSE {expr} END)")


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def json_paths(name: str, route: Route) -> list[str]:
    """JSON paths (SQL literals) of a field in the source record, first found wins: EventData keys
    are flat (and may be spelled with spaces), other sources' dotted names are nested objects
    (`userIdentity.arn`)."""
    flat = route.json_source == "winlog.event_data"
    names = [name]
    if flat and route.spaced_keys and (spaced := _CAMEL.sub(" ", name)) != name:
        names.append(spaced)
    return [sql_str("$." + ".".join('"' + p.replace('"', '\\"') + '"' for p in ([n] if flat else n.split("."))))
            for n in names]


def prepared_expr(kind: str, name: str, route: Route) -> str:
    """The SQL of a prepared column (see the module docstring) on the `events` relation."""
    if kind == "kw":
        if route.json_source == "winlog.event_data":
            return decoded("""concat_ws(' ', "winlog.event_data", "message")""")
        return """COALESCE("event.original", "message")"""
    raw = field_expr(name, route)
    return f"lower({raw})" if kind == "l" else raw
