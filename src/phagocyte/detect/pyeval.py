"""A compiled rule's SQL condition evaluated in Python on a few candidate rows.

Why: after the literal prefilter only ~1-2 % of (rule, row) pairs remain, a few tens of thousands
per hunt. Sending them back to DuckDB cost a candidate table, a join and one query per chunk of
rules with a fixed price each (and DuckDB compiles every regular expression again in each query):
more than half of the detection time. Here the same condition is read once into a small tree of
closures and run on each candidate row directly.

The SQL stays the one compiled form (what another SQL engine would run): this module parses the
subset of SQL that `sigma/compiler.py` emits, and anything else (an unknown function, a bare NOT,
TRY_CAST) raises `NotPython`, so the engine runs that rule in DuckDB as before. The semantics are
DuckDB's: values are the prepared (already lower-cased, in DuckDB) columns, regular expressions are
RE2 with its default options (as DuckDB's `regexp_matches`), LIKE matches whole values with `_` one
character. NULL: every leaf on a NULL value is false, which gives exactly SQL's WHERE result because
the only negation the compiler emits is `NOT COALESCE(x, FALSE)` (AND and OR are monotone: a
three-valued expression is TRUE exactly when its leaves read with NULL as FALSE give TRUE).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import re2

__all__ = ["Columns", "NotPython", "Plan", "Pred", "build", "parse_condition", "plan_condition"]

Columns = Mapping[str, Sequence[Any]]
"""Prepared column name -> values of the rows (Python lists, None for NULL)."""
Pred = Callable[[int], bool]
"""True when the row at this position matches."""
Node = Callable[[Columns], Pred]
"""A parsed condition: given a batch's columns, the row predicate."""
Plan = list[Any]
"""A parsed condition as JSON-able data: `[step, args...]` (`build` makes its `Node`)."""


class NotPython(ValueError):
    """The condition uses SQL this evaluator does not implement (the rule then runs in DuckDB)."""


_TOKEN = re.compile(r"""\s*(?:('[^']*(?:''[^']*)*')|("[^"]*(?:""[^"]*)*")|(-?\d+(?:\.\d+)?)|([A-Za-z_]+)"""
                    r"""|(<>|<=|>=|[(),=<>]))""")


def _tokens(sql: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    append = out.append
    pos = 0
    for m in _TOKEN.finditer(sql):
        if m.start() != pos:
            break
        pos = m.end()
        s, ident, num, word, punct = m.groups()
        if s is not None:
            append(("str", s[1:-1].replace("''", "'")))
        elif ident is not None:
            append(("col", ident[1:-1].replace('""', '"')))
        elif num is not None:
            append(("num", num))
        elif word is not None:
            append(("kw", word.upper()))
        else:
            append(("p", punct or ""))
    if sql[pos:].strip():
        raise NotPython(f"unexpected text at {pos}: {sql[pos:pos + 20]!r}")
    return out


_REGEX_CACHE: dict[str, Any] = {}
_OPTIONS = re2.Options()
_OPTIONS.max_mem = 64 * 1024 * 1024  # a large alternation (hash lists) needs more than RE2's 8 MB default
_OPTIONS.log_errors = False  # when RE2's automaton still runs out, it falls back to a slower exact matcher


def _regex(pattern: str) -> Any:
    """An RE2 program, compiled once per process (the same alternations recur in many rules)."""
    rx = _REGEX_CACHE.get(pattern)
    if rx is None:
        try:
            rx = re2.compile(pattern, options=_OPTIONS)
        except re2.error as exc:
            raise NotPython(f"RE2 rejects {pattern[:60]!r}: {exc}") from exc
        _REGEX_CACHE[pattern] = rx
    return rx


def _like_regex(pattern: str, escape: str) -> str:
    """A LIKE pattern as an RE2 pattern matched against the whole value."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return "(?s)" + "".join(out)


class _Parser:
    def __init__(self, sql: str) -> None:
        self.toks = _tokens(sql)
        self.i = 0
        self.columns: set[str] = set()

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        t = self.peek()
        if t[0] != kind or (value is not None and t[1] != value):
            raise NotPython(f"expected {value or kind}, found {t[1]!r}")
        self.i += 1
        return t[1]

    def accept(self, kind: str, value: str) -> bool:
        if self.peek() == (kind, value):
            self.i += 1
            return True
        return False

    def parse(self) -> Plan:
        plan = self.or_()
        if self.peek()[0] != "end":
            raise NotPython(f"unexpected {self.peek()[1]!r}")
        return plan

    def or_(self) -> Plan:
        return self._chain("OR", self.and_)

    def and_(self) -> Plan:
        return self._chain("AND", self.unary)

    def _chain(self, keyword: str, operand: Callable[[], Plan]) -> Plan:
        """Operands joined by `keyword` (`OR`: any true, `AND`: all true; both short-circuit)."""
        parts = [operand()]
        while self.accept("kw", keyword):
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return ["or" if keyword == "OR" else "and", parts]

    def unary(self) -> Plan:
        if self.accept("kw", "NOT"):
            # Only `NOT COALESCE(x, FALSE)`: a bare NOT of a NULL is NULL, which a leaf read as
            # false would turn into true.
            self.take("kw", "COALESCE")
            self.take("p", "(")
            inner = self.or_()
            self.take("p", ",")
            self.take("kw", "FALSE")
            self.take("p", ")")
            return ["not", inner]
        return self.primary()

    def column(self) -> str:
        name = self.take("col")
        self.columns.add(name)
        return name

    def primary(self) -> Plan:
        kind, value = self.peek()
        if kind == "p" and value == "(":
            self.i += 1
            plan = self.or_()
            self.take("p", ")")
            return plan
        if kind == "kw" and value in ("TRUE", "FALSE"):
            self.i += 1
            return ["const", value == "TRUE"]
        if kind == "kw" and value in ("CONTAINS", "STARTS_WITH", "ENDS_WITH", "REGEXP_MATCHES"):
            self.i += 1
            self.take("p", "(")
            col = self.column()
            self.take("p", ",")
            if self.peek()[0] == "col":
                other = self.column()
                self.take("p", ")")
                if value not in _COL_TESTS:
                    raise NotPython(f"{value} of two columns")
                return ["cols", value, col, other]
            arg = self.take("str")
            self.take("p", ")")
            if value != "REGEXP_MATCHES":
                return [value.lower(), col, arg]
            alt = _alternation(arg)
            if alt is None or len(alt[3]) > CONTAINS_MAX:  # a long list of substrings: one RE2 pass
                # RE2 compiles it when the plan is built (`build`: NotPython if RE2 rejects it,
                # and the rule runs in DuckDB), not here: a compile in a rule-compiling process is
                # memory for nothing.
                return ["search", col, arg, required_literal(arg) or ""]
            equal, prefixes, suffixes, inside = alt
            return ["alt", col, sorted(equal), list(prefixes), list(suffixes), list(inside)]
        if kind == "col":
            col = self.column()
            if self.accept("p", "="):
                if self.peek()[0] == "col":
                    return ["cols", "=", col, self.column()]
                return ["eq", col, self.take("str")]
            if self.accept("kw", "IS"):
                negated = self.accept("kw", "NOT")
                self.take("kw", "NULL")
                return ["null", col, negated]
            if self.accept("kw", "IN"):
                self.take("p", "(")
                items = [self.take("str")]
                while self.accept("p", ","):
                    items.append(self.take("str"))
                self.take("p", ")")
                return ["in", col, items]
            if self.accept("kw", "LIKE"):
                pattern = self.take("str")
                escape = ""
                if self.accept("kw", "ESCAPE"):
                    escape = self.take("str")
                if len(escape) > 1:
                    raise NotPython("multi-character ESCAPE")
                return ["like", col, _like_regex(pattern, escape)]
        raise NotPython(f"unsupported SQL at {value!r}")


def build(plan: Plan) -> Node:
    """The closures of a plan (`plan_condition`); `NotPython` when a regular expression in it does
    not compile here (the rule then runs in DuckDB)."""
    op = plan[0]
    if op == "or" or op == "and":
        return _combined([build(p) for p in plan[1]], op == "or")
    if op == "not":
        inner = build(plan[1])

        def negated(cols: Columns) -> Pred:
            p = inner(cols)
            return lambda i: not p(i)
        return negated
    if op == "const":
        const = bool(plan[1])
        return lambda cols: (lambda i: const)
    if op == "contains":
        return _contains(plan[1], plan[2])
    if op == "starts_with":
        return _starts_with(plan[1], plan[2])
    if op == "ends_with":
        return _ends_with(plan[1], plan[2])
    if op == "search":
        arg = plan[2]
        search = _SEARCHES.get(arg)
        if search is None:
            search = _SEARCHES[arg] = _Search(arg, plan[3])
        return _leaf(plan[1], search)
    if op == "alt":
        equal, prefixes, suffixes, inside = frozenset(plan[2]), tuple(plan[3]), tuple(plan[4]), tuple(plan[5])

        def test(v: str) -> bool:
            return (v in equal or v.startswith(prefixes) or v.endswith(suffixes)
                    or any(x in v for x in inside))
        return _leaf(plan[1], test)
    if op == "cols":
        return _col_function(plan[1], plan[2], plan[3])
    if op == "eq":
        return _equals(plan[1], plan[2])
    if op == "null":
        return _is_null(plan[1], bool(plan[2]))
    if op == "in":
        return _in(plan[1], frozenset(plan[2]))
    if op == "like":
        rx = _regex(plan[2])
        return _leaf(plan[1], lambda v: rx.fullmatch(v) is not None)
    raise NotPython(f"unknown plan step {op!r}")


def _combined(parts: list[Node], either: bool) -> Node:
    """Operands joined by OR (`either`: any true) or AND (all true), short-circuiting.

    Two or three operands (most chains) are one lambda, longer chains a loop: `any()`/`all()` over a
    generator cost a generator per row, a third of the evaluation time of a SigmaHQ hunt."""
    def bind(cols: Columns) -> Pred:
        preds = [p(cols) for p in parts]
        if len(preds) == 2:
            a, b = preds
            return (lambda i: a(i) or b(i)) if either else (lambda i: a(i) and b(i))
        if len(preds) == 3:
            a, b, c = preds
            return (lambda i: a(i) or b(i) or c(i)) if either else (lambda i: a(i) and b(i) and c(i))
        if either:
            def any_of(i: int) -> bool:
                for p in preds:  # noqa: SIM110 (a loop: no generator per row)
                    if p(i):
                        return True
                return False
            return any_of

        def all_of(i: int) -> bool:
            for p in preds:  # noqa: SIM110
                if not p(i):
                    return False
            return True
        return all_of
    return bind


def _leaf(col: str, test: Callable[[Any], bool]) -> Node:
    """A test on one column's value; false on NULL."""
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return lambda i: (v := values[i]) is not None and test(v)
    return bind


def _contains(col: str, arg: str) -> Node:
    """`_leaf(col, lambda v: arg in v)` in one call per row (the commonest leaf)."""
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return lambda i: (v := values[i]) is not None and arg in v
    return bind


def _starts_with(col: str, arg: str) -> Node:
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return lambda i: (v := values[i]) is not None and v.startswith(arg)
    return bind


def _ends_with(col: str, arg: str) -> Node:
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return lambda i: (v := values[i]) is not None and v.endswith(arg)
    return bind


def _equals(col: str, lit: str) -> Node:
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return lambda i: values[i] == lit
    return bind


def _in(col: str, items: frozenset[str]) -> Node:
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return lambda i: values[i] in items
    return bind


def _is_null(col: str, negated: bool) -> Node:
    def bind(cols: Columns) -> Pred:
        values = cols[col]
        return (lambda i: values[i] is not None) if negated else (lambda i: values[i] is None)
    return bind


CONTAINS_MAX = 24
"""An alternation with more substrings than this is matched by RE2, not substring by substring."""


_ALTERNATIVE = re.compile(r"(\^?)((?:\\[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]|[^.\[\]()*+?{}|^$\\])*)(\$?)(\||\Z)",
                          re.S)
"""One alternative that is a literal, optionally anchored, then `|` or the end. A backslash before an
ASCII character other than a letter or digit is that character (RE2); before anything else it is
not a literal."""
_UNESCAPE = re.compile(r"\\(.)", re.S)


def _alternation(pattern: str) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """A regular expression that is only an alternation of literals, each anchored at the start,
    the end, both or neither (what the compiler emits for a long list of `contains`, `startswith`,
    `endswith` or equal values: `_Pattern.regex`), as (equal values, prefixes, suffixes, substrings);
    None for anything else. Only `(?s)` is allowed as a flag (it changes nothing without a dot)."""
    body = pattern[4:] if pattern.startswith("(?s)") else pattern
    equal: list[str] = []
    prefixes: list[str] = []
    suffixes: list[str] = []
    inside: list[str] = []
    pos, n = 0, len(body)
    while True:
        m = _ALTERNATIVE.match(body, pos)
        if m is None:
            return None
        head, lit, tail, bar = m.groups()
        text = _UNESCAPE.sub(r"\1", lit)
        (equal if head and tail else prefixes if head else suffixes if tail else inside).append(text)
        pos = m.end()
        if not bar:  # the end of the pattern
            return (frozenset(equal), tuple(prefixes), tuple(suffixes), tuple(inside)) if pos == n else None


_SEARCHES: dict[str, _Search] = {}


class _Search:
    """`regexp_matches`: an unanchored RE2 search, as a yes/no answer.

    Run as a one-pattern RE2 set (its automaton answers without the submatch bookkeeping of
    `re2.search`, several times cheaper per call); a set can give up when its automaton outgrows
    its memory, which an always-matching sentinel pattern reveals, and then the regular search
    answers. A literal every match must hold (`required_literal`) is looked for first: most
    values lack it, and `in` costs a fraction of a call into RE2."""

    __slots__ = ("compiled", "pattern", "regex", "required", "set")

    def __init__(self, pattern: str, required: str | None) -> None:
        self.pattern = pattern
        self.required = required or None
        """`required_literal(pattern)`, found when the rule was planned."""
        self.regex: Any = None
        self.set: Any = re2.Set.SearchSet(_OPTIONS)
        self.compiled = False
        """The set's automaton is built at the first value to search (~0.4 ms a pattern: a third
        of the 113 patterns a warm hunt over 300 EVTX files planned never met a value holding
        their required literal); parsing (`Add`) checks the pattern now."""
        try:
            self.set.Add(pattern)
            self.set.Add("")
        except re2.error:
            self.set = None
            self.regex = _regex(pattern)  # NotPython if RE2 rejects it: the rule runs in DuckDB

    def __call__(self, v: str) -> bool:
        if self.required is not None and self.required not in v:
            return False
        if self.set is not None and not self.compiled:
            try:
                self.set.Compile()
                self.compiled = True
            except re2.error:  # the regular search answers
                self.set = None
        if self.set is not None:
            found = self.set.Match(v)
            if 1 in found:
                return 0 in found
        if self.regex is None:
            self.regex = _regex(self.pattern)
        return bool(self.regex.search(v) is not None)


REQUIRED_MAX_PATTERN = 4096


def required_literal(pattern: str) -> str | None:
    """The longest run of plain characters at the top level of `pattern` (none inside a group, an
    alternation or a repetition), which every match therefore contains; None when there is no run
    of 3 or more, when the pattern ignores case, or when Python's parser of the same syntax cannot
    read it (RE2-only syntax: no shortcut, the automaton decides alone). Only printable ASCII
    characters count: an escape the two syntaxes might read differently ends a run. Patterns
    longer than REQUIRED_MAX_PATTERN (hash lists: Python's parser took 0.35 s on SigmaHQ's
    largest, 224 k characters) are not looked at."""
    if len(pattern) > REQUIRED_MAX_PATTERN:
        return None
    import re._constants as sre_constants
    import re._parser as sre_parse

    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None
    if parsed.state.flags & sre_constants.SRE_FLAG_IGNORECASE:
        return None
    runs: list[str] = []
    run: list[str] = []
    for op, arg in parsed.data:
        if op is sre_constants.LITERAL and 0x20 <= arg < 0x7F:
            run.append(chr(arg))
            continue
        if run:
            runs.append("".join(run))
            run = []
    if run:
        runs.append("".join(run))
    best = max(runs, key=len, default="")
    return best if len(best) >= 3 else None


_COL_TESTS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda x, y: x == y, "STARTS_WITH": lambda x, y: x.startswith(y),
    "ENDS_WITH": lambda x, y: x.endswith(y), "CONTAINS": lambda x, y: y in x,
}


def _col_function(name: str, a: str, b: str) -> Node:
    """Comparisons of two fields (Sigma `|fieldref`); false when either is NULL."""
    test = _COL_TESTS.get(name)
    if test is None:
        raise NotPython(f"{name} of two columns")

    def bind(cols: Columns) -> Pred:
        xs, ys = cols[a], cols[b]
        return lambda i: (x := xs[i]) is not None and (y := ys[i]) is not None and test(x, y)
    return bind


def plan_condition(sql: str) -> tuple[Plan, list[str]]:
    """The condition as a plan (JSON: lists, strings, booleans; cached with the compiled rules so
    that a warm start does not parse SQL again) and the prepared columns it reads; `NotPython` when
    it uses SQL outside the compiler's subset."""
    p = _Parser(sql)
    return p.parse(), sorted(p.columns)


def parse_condition(sql: str) -> tuple[Node, set[str]]:
    """The condition as a node (bind it to a batch's columns to get the row predicate) and the
    prepared columns it reads; `NotPython` when it uses SQL outside the compiler's subset."""
    plan, columns = plan_condition(sql)
    return build(plan), set(columns)
