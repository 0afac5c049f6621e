"""Sigma rule -> `CompiledRule`: the back end proper (see `backend.py` for the design).

Kept apart from `backend.py` because it needs pySigma, whose import costs a noticeable part of a
hunt's start-up: a hunt with cached compiled rules never imports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
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

from phagocyte.detect.pyeval import NotPython, plan_condition
from phagocyte.detect.sigma.backend import CompiledRule, alias
from phagocyte.detect.sigma.pipeline import Route, route_for
from phagocyte.ingest.jsonmap import sql_str
from phagocyte.schema import FIELD_TYPES

__all__ = ["MULTI_PATTERN_MIN", "UnsupportedRule", "compile_rule"]

MULTI_PATTERN_MIN = 4
"""An OR of at least this many string patterns on one field becomes one RE2 alternation."""


class UnsupportedRule(ValueError):
    """A rule (or part of one) this back end cannot express; the message says which part."""


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


Needs = list[tuple[str, str]]


def _odds(col: str, lit: str) -> float:
    """A rough chance that a row holds `lit` in `col` (longer literals are rarer; the routing
    columns, EventID and channel, hold the same few values on every row of a route)."""
    if col[2:] in FIELD_TYPES:
        return 0.9
    return 0.5 ** min(len(lit), 24)


def _needs(n: Any, columns: set[tuple[str, str]]) -> Needs | None:
    """Literals of which a row must hold at least one, in the lower-cased column named, for the
    condition `n` to be true (the engine's prefilter); None when no such list can be told (NOT,
    regular expressions, comparisons, existence, keywords). Sound by construction: AND needs what
    any one of its operands needs (the rarest is taken), OR what all of them need together, a
    string pattern each of its literal pieces (its longest is taken); the literals are lower-cased
    exactly as the rule's own comparison values, and compared with the same prepared column."""
    if isinstance(n, ConditionAND):
        options = [x for x in (_needs(a, columns) for a in n.args) if x]
        return min(options, key=lambda x: sum(_odds(c, lit) for c, lit in x)) if options else None
    if isinstance(n, ConditionOR):
        return _any_needs(n.args, columns)
    if isinstance(n, ConditionFieldEqualsValueExpression) and n.field is not None:
        return _value_needs(n.field, n.value, columns)
    if isinstance(n, ConditionFieldEqualsValueExpression | ConditionValueExpression):
        return _keyword_needs(n.value)
    return None


def _keyword_needs(v: Any) -> Needs | None:
    """A keyword matches case-insensitively (RE2 `(?i)`) anywhere in the record (`kw`): its longest
    literal piece, lower-cased, is looked for in the record folded by `engine.fold_keywords`. Only
    ASCII literals: RE2's case folding pairs an ASCII letter with a non-ASCII character only for
    `k` (Kelvin sign) and `s` (long s), which that folding maps; other scripts are not tried."""
    if isinstance(v, SigmaExpansion):
        out: Needs = []
        for x in v.values:
            n = _keyword_needs(x)
            if not n:
                return None
            out += n
        return list(dict.fromkeys(out)) or None
    if isinstance(v, SigmaString):
        lits = [t.lower() for k, t in _Pattern.of(v, lower=False).pieces if k == "s" and t]
        best = max(lits, key=len) if lits else ""
        return [("kw", best)] if best and best.isascii() else None
    return None


def _any_needs(args: Iterable[Any], columns: set[tuple[str, str]]) -> Needs | None:
    """What an OR of `args` needs: what each of them needs, together."""
    out: Needs = []
    for a in args:
        x = _needs(a, columns)
        if not x:
            return None
        out += x
    return list(dict.fromkeys(out)) or None


def _value_needs(name: str, v: Any, columns: set[tuple[str, str]]) -> Needs | None:
    if ("l", name) not in columns:
        return None
    if isinstance(v, SigmaExpansion):
        return _any_needs((ConditionFieldEqualsValueExpression(name, x) for x in v.values), columns)
    if isinstance(v, SigmaString) and not isinstance(v, SigmaCasedString):
        lits = [t for k, t in _Pattern.of(v, lower=True).pieces if k == "s" and t]
        return [(alias("l", name), max(lits, key=len))] if lits else None
    if isinstance(v, SigmaBool):
        return [(alias("l", name), "true" if v.boolean else "false")]
    if isinstance(v, SigmaNumber):
        return [(alias("l", name), str(v.number).lower())]
    return None


def compile_rule(rule: SigmaRule, route: Route | None = None, variant: str | None = None) -> CompiledRule:
    """Compile one rule the processing pipeline has already been applied to (on its log source's
    route, or on `route` for a `variant` of it)."""
    route = route or route_for(rule.logsource)
    comp = _Compiler(rule, route)
    parsed = [c.parsed for c in rule.detection.parsed_condition]
    conds = [comp.node(p) for p in parsed]
    needs = _any_needs(parsed, comp.columns)
    condition = conds[0] if len(conds) == 1 else "(" + " OR ".join(conds) + ")"
    level = rule.level.name.lower() if rule.level is not None else None
    status = rule.status.name.lower() if rule.status is not None else None
    return CompiledRule(
        id=str(rule.id) if rule.id else (rule.title or "untitled"),
        title=rule.title or "",
        level=level,
        tags=tuple(str(t) for t in rule.tags),
        description=rule.description,
        status=status,
        path=str(rule.source.path) if rule.source and rule.source.path else "",
        route=route,
        condition=condition,
        columns=frozenset(comp.columns),
        needs=tuple(needs) if needs else None,
        name=rule.name,
        generate=True,
        variant=variant,
        plan=_plan(condition),
    )


def _plan(condition: str) -> str:
    try:
        return orjson.dumps(plan_condition(condition)[0]).decode()
    except NotPython:
        return '["sql"]'
