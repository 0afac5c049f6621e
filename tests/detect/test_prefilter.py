"""The literal prefilter: a rule runs only on the rows holding one of the literals it needs, and
that never loses a match (same results as every rule on every row)."""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from phagocyte.detect.engine import KEY_CHARS, Engine, _LiteralSet, fold_keywords
from phagocyte.detect.rules import RuleSet
from tests.detect.helpers import proc_rule, ruleset, table, win


def _lists(s: _LiteralSet, values: list[str]) -> list[list[int]]:
    return [list(rules) for rules in s.rules_by_value(values)]


RULES = [
    proc_rule("And picks one side", """
        sel:
            Image|endswith: '\\certutil.exe'
            CommandLine|contains|all: ['-urlcache', 'http']
        condition: sel"""),
    proc_rule("Or needs every side", """
        a:
            CommandLine|contains: 'mimikatz'
        b:
            OriginalFileName: 'PSEXESVC.EXE'
        condition: a or b"""),
    proc_rule("Not has no literal", """
        sel:
            Image|endswith: '.exe'
        filter:
            CommandLine|contains: 'benign'
        condition: not filter"""),
    proc_rule("Regex has no literal", """
        sel:
            CommandLine|re: 'Invoke-[A-Z]+'
        condition: sel"""),
    proc_rule("Wildcards inside", """
        sel:
            CommandLine: '*vssadmin*delete?shadows*'
        condition: sel"""),
    proc_rule("Keywords", """
        keywords:
            - 'MASK'
            - 'kelvin'
        condition: keywords"""),
    proc_rule("Non-ASCII keyword", """
        keywords:
            - 'straße'
        condition: keywords"""),
    proc_rule("Numbers and booleans", """
        sel:
            ProcessId: 4242
        condition: sel"""),
]

EVENTS = [
    win(1, {"Image": "C:\\Windows\\System32\\CERTUTIL.EXE", "CommandLine": "certutil -URLCACHE -f HTTP://x/a"}, n=1),
    win(1, {"Image": "C:\\x\\certutil.exe", "CommandLine": "certutil -urlcache"}, n=2),
    win(1, {"Image": "C:\\a.exe", "CommandLine": "Mimikatz.exe sekurlsa", "OriginalFileName": "x"}, n=3),
    win(1, {"Image": "C:\\b.exe", "CommandLine": "benign", "OriginalFileName": "psexesvc.exe"}, n=4),
    win(1, {"Image": "C:\\c.exe", "CommandLine": "powershell Invoke-MIMI"}, n=5),
    win(1, {"Image": "C:\\d.exe", "CommandLine": "VSSADMIN.exe Delete Shadows /all"}, n=6),
    win(1, {"Image": "C:\\e.exe"}, n=7, message="echo MA\u017fK"),
    win(1, {"Image": "C:\\f.exe", "ProcessId": "4242"}, n=8, message="echo STRASSE Stra\u00dfe"),
    win(1, {"Image": "C:\\g.exe"}, n=9, message="\u212aELVIN"),
]


def _without_needs(rs: RuleSet) -> RuleSet:
    plain = copy.deepcopy(rs)
    for r in plain.rules:
        r.needs = None
    return plain


def _matches(rs: RuleSet) -> list[tuple[str, str]]:
    return sorted((m.rule.title, m.event["event.id"]) for m in Engine(rs).evaluate(table(EVENTS)))


def test_needs_are_what_the_condition_requires(tmp_path: Path) -> None:
    needs = {r.title: r.needs for r in ruleset(tmp_path, *RULES).rules if r.variant is None}
    assert needs["And picks one side"] in ((("l.CommandLine", "-urlcache"),), (("l.Image", "\\certutil.exe"),))
    assert sorted(needs["Or needs every side"] or []) == [("l.CommandLine", "mimikatz"),
                                                          ("l.OriginalFileName", "psexesvc.exe")]
    assert needs["Not has no literal"] is None and needs["Regex has no literal"] is None
    assert needs["Wildcards inside"] == (("l.CommandLine", "vssadmin"),)  # the longest literal piece
    assert sorted(needs["Keywords"] or []) == [("kw", "kelvin"), ("kw", "mask")]
    assert needs["Non-ASCII keyword"] is None
    assert needs["Numbers and booleans"] == (("l.ProcessId", "4242"),)


def test_prefiltered_engine_finds_exactly_what_every_rule_on_every_row_finds(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, *RULES)
    found = _matches(rs)
    assert found == _matches(_without_needs(rs))
    titles = {t for t, _ in found}
    # Case-insensitive keywords match through RE2's case folding (long s, Kelvin sign): kept.
    assert {("Keywords", "ev7"), ("Keywords", "ev9"), ("Non-ASCII keyword", "ev8")} <= set(found)
    assert {"And picks one side", "Or needs every side", "Wildcards inside", "Numbers and booleans"} <= titles
    assert ("And picks one side", "ev2") not in found


def test_fold_keywords_maps_what_re2_case_folding_equates_with_ascii() -> None:
    assert fold_keywords("MA\u017fK \u212aELVIN") == "mask kelvin"


def test_a_large_literal_set_finds_every_literal_and_nothing_else() -> None:
    lits = [f"literal{i:05d}x" for i in range(3000)]
    values = [f"...literal{i:05d}x..." for i in range(0, 3000, 7)] + ["nothing here", ""]
    vals, rules = _LiteralSet(lits, list(range(3000))).hits(values)
    assert sorted(zip(vals, rules, strict=True)) == sorted((f"...literal{i:05d}x...", i) for i in range(0, 3000, 7))


def test_overlapping_literals_and_rules_sharing_a_literal() -> None:
    # "abc" holds "ab" and "bc": both literals' rules; a literal two rules need gives both.
    s = _LiteralSet(["ab", "bc", "ab", "zz"], [0, 1, 2, 3])
    assert _lists(s, ["xabcx", "ab", "zzz", "b", ""]) == [[0, 1, 2], [0, 2], [3], [], []]


def test_an_empty_literal_keeps_its_rules_for_every_value() -> None:
    s = _LiteralSet(["", "ab"], [0, 1])
    assert _lists(s, ["zz", "ab", ""]) == [[0], [0, 1], [0]]
    assert _lists(_LiteralSet([""], [5]), ["x", ""]) == [[5], [5]]


def test_literal_sets_with_the_same_literals_share_one_automaton() -> None:
    shared: dict = {}
    a = _LiteralSet(["ab", "cd"], [0, 1], shared=shared)
    b = _LiteralSet(["ab", "cd"], [4, 5], shared=shared)
    assert a.automaton is b.automaton and len(shared) == 1
    assert _lists(b, ["cd"]) == [[5]]


def test_long_literals_sharing_their_key_are_each_checked_whole() -> None:
    # Literals longer than KEY_CHARS are found by their first KEY_CHARS characters, then whole.
    base = "x" * KEY_CHARS
    s = _LiteralSet([base + "1", base + "2", base, "md5=" + "a" * 32], [0, 1, 2, 3])
    assert _lists(s, [base + "2", base + "3", "MD5=" + "a" * 32, "md5=" + "a" * 31, "y" + base + "1z"]) == [
        [1, 2], [2], [], [], [0, 2]]
    folded = _LiteralSet(["c:\\windows\\system32\\evil.exe"], [7], fold=True)
    assert _lists(folded, ["Run C:\\WINDOWS\\System32\\Evil.exe now", "c:\\windows\\system32\\good.exe"]) == [
        [7], []]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab\\=", max_size=2 * KEY_CHARS + 3), min_size=1, max_size=12),
       st.lists(st.text(alphabet="ab\\=c", max_size=4 * KEY_CHARS), max_size=8))
def test_candidates_are_exactly_the_rules_whose_literal_the_value_holds(lits: list[str], values: list[str]) -> None:
    # Short alphabets make many literals share their key, and values hold several at once.
    got = _lists(_LiteralSet(lits, list(range(len(lits)))), values)
    assert got == [sorted(i for i, lit in enumerate(lits) if lit in v) for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="aé𝔘\\", min_size=1, max_size=KEY_CHARS + 3), min_size=1, max_size=8),
       st.lists(st.text(alphabet="aé𝔘\\b", max_size=3 * KEY_CHARS), max_size=6))
def test_candidates_of_non_ascii_literals_in_non_ascii_values(lits: list[str], values: list[str]) -> None:
    # The automaton works on UTF-8 bytes, the rules on characters: multi-byte characters must not shift keys.
    got = _lists(_LiteralSet(lits, list(range(len(lits)))), values)
    assert got == [sorted(i for i, lit in enumerate(lits) if lit in v) for v in values]


def test_a_value_with_a_lone_surrogate_is_still_scanned() -> None:
    # Python strings may hold what UTF-8 cannot (a lone surrogate): the value is scanned, not an error.
    s = _LiteralSet(["evil", "x" * KEY_CHARS + "y"], [0, 1])
    assert _lists(s, ["\ud800 evil", "\udfff" + "x" * KEY_CHARS + "y", "\ud800"]) == [[0], [1], []]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=5), st.data())
def test_matched_rows_are_taken_from_a_table_of_many_chunks(sizes: list[int], data: st.DataObject) -> None:
    import pyarrow as pa

    from phagocyte.detect.engine import _take

    n = sum(sizes)
    chunks, start = [], 0
    for k in sizes:
        chunks.append(pa.table({"i": pa.array(range(start, start + k), pa.int64()),
                                "s": pa.array([f"v{j}" for j in range(start, start + k)], pa.string())}))
        start += k
    t = pa.concat_tables(chunks)
    rows = sorted(data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n)) if n else set())
    assert _take(t, rows).to_pylist() == t.take(pa.array(rows, pa.int64())).to_pylist()
