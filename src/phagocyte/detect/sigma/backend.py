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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import re2
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

from phagocyte.detect.sigma.pipeline import Route, route_for
from phagocyte.ingest.jsonmap import sql_str
from phagocyte.schema import FIELD_TYPES

__all__ = ["MULTI_PATTERN_MIN", "CompiledRule", "UnsupportedRule", "alias", "compile_rule", "decoded", "field_expr",
           "json_paths", "prepared_expr"]

MULTI_PATTERN_MIN = 4
"""An OR of at least this many string patterns on one field becomes one RE2 alternation."""


class UnsupportedRule(ValueError):
    """A rule (or part of one) this back end cannot express; the message says which part."""


@dataclass(slots=True)
class CompiledRule:
    """One Sigma detection rule, ready to run: metadata, route and SQL predicate."""

    id: str
    title: str
    level: str | None
    tags: list[str]
    description: str | None
    status: str | None
    path: str
    route: Route
    condition: str
    columns: set[tuple[str, str]] = field(default_factory=set)
    """(kind, field): kind `l` lowered, `r` raw, `kw` keywords."""
    name: str | None = None
    """The rule's `name` (correlations refer to rules by id or name)."""
    generate: bool = True
    """False for a rule used only by correlations (`generate: false`)."""
    keep: list[str] = field(default_factory=list)
    """Fields whose raw values are returned with each match (correlation group-by and counted fields)."""
    variant: str | None = None
    """Set on a second form of a rule for another log (`security-4688` for process creation)."""

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


def _col(kind: str, name: str) -> str:
    return '"' + alias(kind, name).replace('"', '""') + '"'


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class _Pattern:
    """A SigmaString as (prefix-anchored, suffix-anchored, literal pieces split at wildcards)."""

    pieces: tuple[tuple[str, str], ...]  # (kind, text): kind 's' literal, '*' or '?'

    @classmethod
    def of(cls, s: SigmaString, lower: bool) -> _Pattern:
        pieces: list[tuple[str, str]] = []
        for part in s.iter_parts():
            if isinstance(part, str):
                pieces.append(("s", part.lower() if lower else part))
            elif part == SpecialChars.WILDCARD_MULTI:
                pieces.append(("*", ""))
            elif part == SpecialChars.WILDCARD_SINGLE:
                pieces.append(("?", ""))
            elif isinstance(part, Placeholder):
                pieces.append(("*", ""))  # an unexpanded placeholder matches anything
        merged: list[tuple[str, str]] = []
        for k, t in pieces:
            if merged and k == "s" and merged[-1][0] == "s":
                merged[-1] = ("s", merged[-1][1] + t)
            elif merged and k == "*" and merged[-1][0] == "*":
                continue
            else:
                merged.append((k, t))
        return cls(tuple(merged))

    def sql(self, col: str) -> str:
        p = self.pieces
        if not p:
            return f"{col} = ''"
        kinds = [k for k, _ in p]
        if "?" not in kinds:
            lits = [t for k, t in p if k == "s"]
            if kinds == ["s"]:
                return f"{col} = {sql_str(lits[0])}"
            if kinds == ["*"]:
                return f"{col} IS NOT NULL"
            if kinds == ["*", "s", "*"]:
                return f"contains({col}, {sql_str(lits[0])})"
            if kinds == ["s", "*"]:
                return f"starts_with({col}, {sql_str(lits[0])})"
            if kinds == ["*", "s"]:
                return f"ends_with({col}, {sql_str(lits[0])})"
        like = "".join("%" if k == "*" else "_" if k == "?" else _like_escape(t) for k, t in p)
        return f"{col} LIKE {sql_str(like)} ESCAPE '\\'"

    def regex(self, anchored: bool = True) -> str:
        """The same match as an RE2 search pattern (anchored at an end without a wildcard)."""
        p = list(self.pieces)
        head = not p or p[0][0] != "*"
        tail = not p or p[-1][0] != "*"
        while p and p[0][0] == "*":
            p.pop(0)
        while p and p[-1][0] == "*":
            p.pop()
        body = "".join(".*" if k == "*" else "." if k == "?" else re.escape(t) for k, t in p)
        if anchored:
            body = ("^" if head else "") + body + ("$" if tail else "")
        return body


class _Compiler:
    def __init__(self, rule: SigmaRule, route: Route) -> None:
        self.rule = rule
        self.route = route
        self.columns: set[tuple[str, str]] = set()

    def use(self, kind: str, name: str) -> str:
        self.columns.add((kind, name))
        return _col(kind, name)

    def node(self, n: Any) -> str:
        if isinstance(n, ConditionAND):
            return "(" + " AND ".join(self.node(a) for a in n.args) + ")"
        if isinstance(n, ConditionOR):
            return self.or_(n.args)
        if isinstance(n, ConditionNOT):
            # Sigma's NOT of a missing field is true: NULL must not swallow the row.
            return "(NOT COALESCE(" + self.node(n.args[0]) + ", FALSE))"
        if isinstance(n, ConditionFieldEqualsValueExpression):
            return self.value(n.field, n.value)
        if isinstance(n, ConditionValueExpression):
            return self.keyword(n.value)
        raise UnsupportedRule(f"unsupported condition element {type(n).__name__}")

    def or_(self, args: Iterable[Any]) -> str:
        """OR, with the string patterns of one field merged into one RE2 alternation."""
        groups: dict[tuple[str, str], list[_Pattern]] = {}
        rest: list[str] = []
        for a in args:
            if (isinstance(a, ConditionFieldEqualsValueExpression) and isinstance(a.value, SigmaString)
                    and a.field is not None):
                cased = isinstance(a.value, SigmaCasedString)
                groups.setdefault(("r" if cased else "l", a.field), []).append(_Pattern.of(a.value, not cased))
            else:
                rest.append(self.node(a))
        parts: list[str] = []
        for (kind, name), pats in groups.items():
            col = self.use(kind, name)
            if len(pats) >= MULTI_PATTERN_MIN:
                rx = "(?s)" + "|".join(dict.fromkeys(p.regex() for p in pats))
                parts.append(f"regexp_matches({col}, {sql_str(rx)})")
            elif len(pats) > 1 and all(len(p.pieces) == 1 and p.pieces[0][0] == "s" for p in pats):
                parts.append(f"{col} IN ({', '.join(sql_str(p.pieces[0][1]) for p in pats)})")
            else:
                parts.extend(p.sql(col) for p in pats)
        parts += rest
        if not parts:
            return "FALSE"
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def value(self, name: str | None, v: Any) -> str:
        if name is None:
            return self.keyword(v)
        if isinstance(v, SigmaExpansion):
            return self.or_(ConditionFieldEqualsValueExpression(name, x) for x in v.values)
        if isinstance(v, SigmaCasedString):
            return _Pattern.of(v, lower=False).sql(self.use("r", name))
        if isinstance(v, SigmaString):
            return _Pattern.of(v, lower=True).sql(self.use("l", name))
        if isinstance(v, SigmaBool):
            return f"{self.use('l', name)} = {sql_str('true' if v.boolean else 'false')}"
        if isinstance(v, SigmaNumber):
            return f"{self.use('l', name)} = {sql_str(str(v.number).lower())}"
        if isinstance(v, SigmaNull):  # absent, JSON null or empty: Windows renders "no value" as ""
            col = self.use("l", name)
            return f"({col} IS NULL OR {col} = '')"
        if isinstance(v, SigmaExists):
            return f"{self.use('l', name)} IS {'NOT ' if v.exists else ''}NULL"
        if isinstance(v, SigmaRegularExpression):
            return self.regex(self.use("r", name), v)
        if isinstance(v, SigmaCompareExpression):
            op = {CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
                  CompareOperators.GTE: ">=", CompareOperators.NEQ: "<>"}[v.op]
            return f"TRY_CAST({self.use('l', name)} AS DOUBLE) {op} {float(v.number.number)!r}"
        if isinstance(v, SigmaCIDRExpression):
            pats = [_Pattern.of(SigmaString(p), lower=True) for p in v.expand("*")]
            col = self.use("l", name)
            return "(" + " OR ".join(p.sql(col) for p in pats) + ")"
        if isinstance(v, SigmaFieldReference):
            a, b = self.use("l", name), self.use("l", v.field)
            if v.starts_with:
                return f"starts_with({a}, {b})"
            if v.ends_with:
                return f"ends_with({a}, {b})"
            return f"{a} = {b}"
        raise UnsupportedRule(f"unsupported value type {type(v).__name__} on field {name!r}")

    def regex(self, col: str, v: SigmaRegularExpression) -> str:
        flags = "".join(sorted({SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
                                SigmaRegularExpressionFlag.DOTALL: "s"}[f] for f in v.flags))
        pattern = str(v.regexp.to_plain())
        try:
            re2.compile(pattern)
        except Exception as exc:  # re2.error: not expressible in linear time (lookaround, backreference)
            raise UnsupportedRule(f"regular expression not supported by RE2: {pattern!r} ({exc})") from exc
        if flags:
            pattern = f"(?{flags}){pattern}"
        return f"regexp_matches({col}, {sql_str(pattern)})"

    def keyword(self, v: Any) -> str:
        col = self.use("kw", "")
        if isinstance(v, SigmaExpansion):
            return "(" + " OR ".join(self.keyword(x) for x in v.values) + ")"
        if isinstance(v, SigmaString):
            pat = _Pattern.of(v, lower=False)
            # A keyword matches anywhere in the record, case-insensitively.
            return f"regexp_matches({col}, {sql_str('(?is)' + pat.regex(anchored=False))})"
        if isinstance(v, SigmaRegularExpression):
            return self.regex(col, v)
        if isinstance(v, SigmaNumber):
            return f"contains({col}, {sql_str(str(v.number))})"
        raise UnsupportedRule(f"unsupported keyword value {type(v).__name__}")


def compile_rule(rule: SigmaRule, route: Route | None = None, variant: str | None = None) -> CompiledRule:
    """Compile one rule the processing pipeline has already been applied to (on its log source's
    route, or on `route` for a `variant` of it)."""
    route = route or route_for(rule.logsource)
    comp = _Compiler(rule, route)
    conds = [comp.node(c.parsed) for c in rule.detection.parsed_condition]
    condition = conds[0] if len(conds) == 1 else "(" + " OR ".join(conds) + ")"
    level = rule.level.name.lower() if rule.level is not None else None
    status = rule.status.name.lower() if rule.status is not None else None
    return CompiledRule(
        id=str(rule.id) if rule.id else (rule.title or "untitled"),
        title=rule.title or "",
        level=level,
        tags=[str(t) for t in rule.tags],
        description=rule.description,
        status=status,
        path=str(rule.source.path) if rule.source and rule.source.path else "",
        route=route,
        condition=condition,
        columns=comp.columns,
        name=rule.name,
        generate=True,
        variant=variant,
    )
