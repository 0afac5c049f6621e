"""Python evaluation of compiled conditions (`pyeval`) gives exactly DuckDB's result, NULLs included,
and the engine finds the same matches with it as with DuckDB alone."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phagocyte.detect.engine import Engine
from phagocyte.detect.pyeval import NotPython, build, parse_condition, plan_condition
from tests.detect.helpers import proc_rule, ruleset, table, win
from tests.detect.test_prefilter import EVENTS, RULES

ROWS = {
    "l.a": ["cmd.exe /c whoami", "", None, "c:\\windows\\x_y%z", "line1\nline2", "straße", "it's", "abc"],
    "l.b": ["cmd.exe", "", "x", None, "line1", "STRASSE", "it's", "abc"],
    "r.c": ["Invoke-Mimikatz", "invoke-x", None, "a.b", "a\nb", "ÄÖ", "'", "AbC"],
}

CONDITIONS = [
    "\"l.a\" = 'cmd.exe /c whoami'",
    "\"l.a\" = ''",
    "(\"l.a\" IS NULL OR \"l.a\" = '')",
    "\"l.b\" IS NOT NULL",
    "contains(\"l.a\", 'whoami')",
    "contains(\"l.a\", '')",
    "starts_with(\"l.a\", 'c:\\windows')",
    "ends_with(\"l.a\", 'z')",
    "\"l.a\" IN ('abc', 'it''s', 'nothing')",
    "\"l.a\" LIKE 'c:\\\\windows\\\\x\\_y\\%z' ESCAPE '\\'",
    "\"l.a\" LIKE '%_y%' ESCAPE '\\'",
    "\"l.a\" LIKE 'stra_e' ESCAPE '\\'",
    "\"l.a\" LIKE 'line1%' ESCAPE '\\'",
    "regexp_matches(\"r.c\", '(?i)invoke-[a-z]+')",
    "regexp_matches(\"r.c\", 'a.b')",
    "regexp_matches(\"r.c\", '(?s)a.b')",
    "regexp_matches(\"r.c\", '^b')",
    "regexp_matches(\"l.a\", '(?s)^line1.*$|whoami$')",
    "(NOT COALESCE(contains(\"l.b\", 'x'), FALSE))",
    "(NOT COALESCE((contains(\"l.a\", 'cmd') AND \"l.b\" = 'cmd.exe'), FALSE))",
    "(contains(\"l.a\", 'a') OR (NOT COALESCE(\"l.b\" = 'x', FALSE)))",
    "((\"l.a\" = 'abc' OR \"l.b\" IS NULL) AND (NOT COALESCE(\"l.a\" IS NULL, FALSE)))",
    "starts_with(\"l.a\", \"l.b\")",
    "ends_with(\"l.a\", \"l.b\")",
    "\"l.a\" = \"l.b\"",
    "FALSE",
]


def _duckdb(cond: str) -> list[int]:
    con = duckdb.connect()
    t = pa.table({**{k: pa.array(v, pa.string()) for k, v in ROWS.items()}, "__i": range(len(ROWS["l.a"]))})
    con.register("g", t)
    return sorted(i for (i,) in con.execute(f"SELECT __i FROM g WHERE {cond}").fetchall())


@pytest.mark.parametrize("cond", CONDITIONS)
def test_python_evaluation_equals_duckdb(cond: str) -> None:
    node, cols = parse_condition(cond)
    assert cols <= set(ROWS)
    pred = node(ROWS)
    assert [i for i in range(len(ROWS["l.a"])) if pred(i)] == _duckdb(cond)


@pytest.mark.parametrize("cond", [
    "NOT \"l.a\" = 'x'",  # a bare NOT of NULL is NULL: not expressible with NULL read as false
    "TRY_CAST(\"l.a\" AS DOUBLE) > 3.0",
    "lower(\"l.a\") = 'x'",
    "\"l.a\" = 'x' garbage",
])
def test_sql_outside_the_subset_is_refused_and_runs_in_duckdb(cond: str) -> None:
    with pytest.raises(NotPython):
        parse_condition(cond)


def _matches(engine: Engine, events: list[dict[str, object]]) -> list[tuple[str, str]]:
    return sorted((m.rule.title, m.event["event.id"]) for m in engine.evaluate(table(events)))


def test_engine_in_python_finds_what_duckdb_finds(tmp_path: Path) -> None:
    extra = [proc_rule("Field reference", """
        sel:
            ParentImage|fieldref: Image
        condition: sel"""), proc_rule("Null and not", """
        sel:
            Image|endswith: '.exe'
            User: null
        filter:
            CommandLine|contains: 'benign'
        condition: sel and not filter""")]
    rs = ruleset(tmp_path, *RULES, *extra)
    events = [*EVENTS, win(1, {"Image": "C:\\p.exe", "ParentImage": "c:\\P.EXE"}, n=20),
              win(1, {"Image": "C:\\q.exe", "User": ""}, n=21)]
    found = _matches(Engine(rs), events)
    assert found == _matches(Engine(rs, python=False), events)
    assert ("Field reference", "ev20") in found and ("Null and not", "ev21") in found


_CHARS = "aAbBcC \\%_.'\n\tßSsKkİı\u212a\u017f-xX:/"
_VALUE = st.one_of(st.none(), st.text(_CHARS, max_size=12))


def test_python_evaluation_equals_duckdb_on_generated_values() -> None:
    """Every condition above, on columns of generated values (NULLs, empty strings, case pairs,
    LIKE wildcards, backslashes, quotes, newlines, Unicode case oddities): the same rows as DuckDB."""
    parsed = [(c, parse_condition(c)[0]) for c in CONDITIONS]
    con = duckdb.connect()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(_VALUE, _VALUE, _VALUE), min_size=1, max_size=8))
    def check(rows: list[tuple[str | None, str | None, str | None]]) -> None:
        cols = {"l.a": [r[0] for r in rows], "l.b": [r[1] for r in rows], "r.c": [r[2] for r in rows]}
        t = pa.table({**{k: pa.array(v, pa.string()) for k, v in cols.items()}, "__i": range(len(rows))})
        con.register("g", t)
        for cond, node in parsed:
            pred = node(cols)
            want = sorted(i for (i,) in con.execute(f"SELECT __i FROM g WHERE {cond}").fetchall())
            assert [i for i in range(len(rows)) if pred(i)] == want, (cond, rows)
        con.unregister("g")

    check()


def test_plans_survive_json_and_build_the_same_predicates() -> None:
    """The plan is what the rule cache keeps: through JSON it must give the same rows."""
    import orjson

    cols = {"l.a": ["cmd.exe /c whoami", "", None, "x.exe"], "l.b": ["a", None, "b", "x.exe"],
            "r.c": ["A", "B", None, "x.exe"]}
    for cond in CONDITIONS:
        plan, columns = plan_condition(cond)
        again = orjson.loads(orjson.dumps(plan))
        assert again == plan and set(columns) == parse_condition(cond)[1]
        direct, rebuilt = parse_condition(cond)[0](cols), build(again)(cols)
        assert [direct(i) for i in range(4)] == [rebuilt(i) for i in range(4)], cond


def test_compiled_rules_carry_their_plan(tmp_path: Path) -> None:
    import orjson

    rs = ruleset(tmp_path, *RULES)
    for r in rs.rules:
        assert r.plan is not None and orjson.loads(r.plan) == plan_condition(r.condition)[0]


def test_required_literal_is_in_every_match() -> None:
    from phagocyte.detect.pyeval import required_literal

    assert required_literal(r"cmd.{0,5}(?:/c|/r).+clip(?:\.exe)?.{0,4}&&.+clipboard]::\(") == "clipboard]::("
    assert required_literal(r"ipconfig\s+/all") == "ipconfig"
    # nothing every match must hold, or a syntax to leave to RE2 alone
    for pattern in ("abc|defg", "(?i)echo.*clip", "ab", r"\x{41}bcd", r"x\pLyz", "(abc)+"):
        assert required_literal(pattern) is None, pattern


@settings(max_examples=80, deadline=None)
@given(st.text("ab.*|()?+{}[]^$\\-01", max_size=10), st.text("ab01-.", max_size=12))
def test_the_required_literal_shortcut_never_changes_an_answer(pattern: str, value: str) -> None:
    import re2

    from phagocyte.detect.pyeval import _Search, required_literal

    try:
        rx = re2.compile(pattern)
        search = _Search(pattern, required_literal(pattern))
    except (re2.error, NotPython):
        return
    assert search(value) == (rx.search(value) is not None)
