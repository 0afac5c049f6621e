"""The Sigma back end, rule by rule, on hand-written events: every modifier, case rules, NULLs,
RE2, and the stand-alone SQL form agreeing with the engine."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from phagocyte.detect.engine import Engine
from tests.detect.helpers import matched, proc_rule, ruleset, table, win

EVENTS = [
    win(1, {"Image": r"C:\Windows\System32\cmd.exe", "CommandLine": r"cmd.exe /c whoami /all",
            "ParentImage": r"C:\Program Files\Microsoft Office\WINWORD.EXE", "User": "CORP\\alice",
            "IntegrityLevel": "High", "DestinationIp": "10.1.2.3", "LogonId": "7"}, n=1),
    win(1, {"Image": r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            "CommandLine": "powershell -EncodedCommand SQBFAFgA -nop", "ParentImage": r"C:\Windows\explorer.exe",
            "User": "CORP\\bob", "Note": "100%_sure 'quoted'", "LogonId": "12"}, n=2),
    win(1, {"Image": r"C:\Tools\evil.exe", "CommandLine": "evil.exe –dump lsass", "OriginalFileName": "EVIL.EXE",
            "CurrentDirectory": "C:\\Tools\\", "LogonId": "3"}, n=3),
    win(3, {"Image": r"C:\Windows\System32\cmd.exe"}, n=4),  # network event: other route
    win(1, {"Image": r"C:\x\y.exe", "CommandLine": "aGVsbG8gd29ybGQ="}, n=5),
    win(1, {"Image": r"C:\x\z.exe", "CommandLine": "payload"}, n=6, channel="Security"),
]


def _one(tmp_path: Path, detection: str) -> list[str]:
    rs = ruleset(tmp_path, proc_rule("T", detection))
    assert not rs.errors, rs.errors
    return matched(rs, EVENTS).get("T", [])


def test_plain_values_are_case_insensitive_and_exact(tmp_path: Path) -> None:
    assert _one(tmp_path, "sel:\n    Image: 'c:\\windows\\system32\\CMD.EXE'\ncondition: sel") == ["ev1"]
    assert _one(tmp_path, "sel:\n    Image: 'cmd.exe'\ncondition: sel") == []


def test_contains_startswith_endswith_and_wildcards(tmp_path: Path) -> None:
    assert _one(tmp_path, "sel:\n    CommandLine|contains: 'WHOAMI'\ncondition: sel") == ["ev1"]
    assert _one(tmp_path, "sel:\n    CommandLine|startswith: 'powershell '\ncondition: sel") == ["ev2"]
    assert _one(tmp_path, "sel:\n    Image|endswith: '\\evil.exe'\ncondition: sel") == ["ev3"]
    assert _one(tmp_path, "sel:\n    CommandLine: 'cmd.exe /c who?mi*'\ncondition: sel") == ["ev1"]
    assert _one(tmp_path, "sel:\n    CommandLine: '*dump*'\ncondition: sel") == ["ev3"]


def test_sql_wildcards_and_quotes_in_values_are_literal(tmp_path: Path) -> None:
    assert _one(tmp_path, "sel:\n    Note|contains: '100%_sure'\ncondition: sel") == ["ev2"]
    assert _one(tmp_path, "sel:\n    Note|contains: '100__sure'\ncondition: sel") == []
    assert _one(tmp_path, "sel:\n    Note|contains: \"'quoted'\"\ncondition: sel") == ["ev2"]


def test_cased_modifier_is_case_sensitive(tmp_path: Path) -> None:
    assert _one(tmp_path, "sel:\n    OriginalFileName|cased: 'EVIL.EXE'\ncondition: sel") == ["ev3"]
    assert _one(tmp_path, "sel:\n    OriginalFileName|cased: 'evil.exe'\ncondition: sel") == []


def test_lists_all_and_long_lists_as_one_multi_pattern(tmp_path: Path) -> None:
    many = "\n".join(f"        - 'nomatch{i}'" for i in range(30)) + "\n        - 'lsass'"
    assert _one(tmp_path, f"sel:\n    CommandLine|contains:\n{many}\ncondition: sel") == ["ev3"]
    rs = ruleset(tmp_path, proc_rule("T", f"sel:\n    CommandLine|contains:\n{many}\ncondition: sel"))
    assert "regexp_matches" in rs.rules[0].condition  # one RE2 alternation, not 31 LIKEs
    assert _one(tmp_path, "sel:\n    CommandLine|contains|all:\n        - 'cmd'\n        - 'whoami'\n"
                          "condition: sel") == ["ev1"]
    assert _one(tmp_path, "sel:\n    CommandLine|contains|all:\n        - 'cmd'\n        - 'lsass'\n"
                          "condition: sel") == []


def test_regex_is_re2_case_sensitive_by_default_with_flags(tmp_path: Path) -> None:
    assert _one(tmp_path, "sel:\n    CommandLine|re: '-Encoded[A-Z]ommand\\s'\ncondition: sel") == ["ev2"]
    assert _one(tmp_path, "sel:\n    CommandLine|re: '-encodedcommand'\ncondition: sel") == []
    assert _one(tmp_path, "sel:\n    CommandLine|re|i: '-encodedcommand'\ncondition: sel") == ["ev2"]


def test_regex_runs_in_linear_time_and_backtracking_features_are_refused(tmp_path: Path) -> None:
    evil = [win(1, {"CommandLine": "a" * 200_000 + "!"}, n=9)]
    rs = ruleset(tmp_path, proc_rule("T", "sel:\n    CommandLine|re: '^(a+)+$'\ncondition: sel"))
    start = time.perf_counter()
    assert matched(rs, evil) == {}
    # Exponential for a backtracking engine (it would not finish); linear for RE2. Generous bound: a check
    # that it finishes, not a speed measurement.
    assert time.perf_counter() - start < 60
    bad = ruleset(tmp_path, proc_rule("B", "sel:\n    CommandLine|re: '(?<=x)y'\ncondition: sel"),
                  proc_rule("G", "sel:\n    CommandLine|contains: 'lsass'\ncondition: sel"))
    assert [r.title for r in bad.primary] == ["G"]
    assert len(bad.errors) == 1 and "regular expression" in bad.errors[0].reason.lower()


def test_windash_base64offset_cidr_exists_null_and_fieldref(tmp_path: Path) -> None:
    assert _one(tmp_path, "sel:\n    CommandLine|contains|windash: '-dump'\ncondition: sel") == ["ev3"]  # en dash
    assert _one(tmp_path, "sel:\n    CommandLine|base64offset|contains: 'world'\ncondition: sel") == ["ev5"]
    assert _one(tmp_path, "sel:\n    DestinationIp|cidr: '10.0.0.0/8'\ncondition: sel") == ["ev1"]
    assert _one(tmp_path, "sel:\n    DestinationIp|cidr: '192.168.0.0/16'\ncondition: sel") == []
    assert _one(tmp_path, "sel:\n    OriginalFileName|exists: true\ncondition: sel") == ["ev3"]
    assert sorted(_one(tmp_path, "sel:\n    OriginalFileName|exists: false\ncondition: sel")) == ["ev1", "ev2", "ev5"]
    assert sorted(_one(tmp_path, "sel:\n    User: null\ncondition: sel")) == ["ev3", "ev5"]
    assert _one(tmp_path, "sel:\n    CurrentDirectory|fieldref|startswith: Image\ncondition: sel") == []
    assert _one(tmp_path, "sel:\n    Image|fieldref|endswith: Image\ncondition: sel") != []


def test_numeric_comparisons_and_expand_placeholders(tmp_path: Path) -> None:
    assert sorted(_one(tmp_path, "sel:\n    LogonId|gte: 7\ncondition: sel")) == ["ev1", "ev2"]
    assert _one(tmp_path, "sel:\n    LogonId|lt: 5\ncondition: sel") == ["ev3"]
    # No placeholder values are configured: %Admins% matches anything, never fails to compile.
    assert sorted(_one(tmp_path, "sel:\n    User|expand: 'CORP\\%Admins%'\ncondition: sel")) == ["ev1", "ev2"]


def test_not_on_a_missing_field_is_true_and_keywords_search_the_record(tmp_path: Path) -> None:
    assert sorted(_one(tmp_path, "sel:\n    Image|endswith: '.exe'\nflt:\n    User|contains: 'alice'\n"
                                 "condition: sel and not flt")) == ["ev2", "ev3", "ev5"]
    assert _one(tmp_path, "kw:\n    - 'LSASS'\ncondition: kw") == ["ev3"]


def test_log_source_routes_rules_to_their_events_only(tmp_path: Path) -> None:
    # ev4 is a Sysmon 3 (network), ev6 a Security event: process_creation sees neither.
    assert "ev4" not in _one(tmp_path, "sel:\n    Image|endswith: 'cmd.exe'\ncondition: sel")
    assert _one(tmp_path, "sel:\n    CommandLine|contains: 'payload'\ncondition: sel") == []


def test_standalone_sql_agrees_with_the_engine(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, *(proc_rule(f"R{i}", d) for i, d in enumerate([
        "sel:\n    CommandLine|contains: 'whoami'\ncondition: sel",
        "sel:\n    Image|endswith:\n        - '\\cmd.exe'\n        - '\\powershell.exe'\n        - 'a'\n"
        "        - 'b'\n        - 'c'\ncondition: sel",
        "sel:\n    OriginalFileName|exists: false\ncondition: sel",
        "sel:\n    CommandLine|re|i: 'ENCODED'\ncondition: sel",
    ])))
    con = duckdb.connect()
    con.register("events", table(EVENTS))
    by_engine: dict[str, set[str]] = {}
    for m in Engine(rs).evaluate(table(EVENTS)):
        by_engine.setdefault(m.rule.id, set()).add(m.event["event.id"])
    for r in rs.primary:
        got = {row[0] for row in con.execute(r.sql()).fetchall()}
        assert got == by_engine.get(r.id, set()), r.title
        assert got, r.title


def test_null_matches_empty_values_and_nested_data_is_matched_unescaped(tmp_path: Path) -> None:
    events = [
        win(1, {"Image": "a.exe", "StartModule": ""}, n=1),
        win(1, {"Image": "b.exe", "Data": {"#text": [r"C:\temp\x.msi", "3472"]}}, n=2),
        win(1, {"Image": "c.exe", "Data": {"#text": [r"\\server\share\x.msi"]}}, n=3),
    ]
    rs = ruleset(tmp_path, proc_rule("N", "sel:\n    StartModule: null\ncondition: sel"),
                 proc_rule("U", "sel:\n    Data|contains: '\\\\\\\\'\ncondition: sel"),
                 proc_rule("T", "sel:\n    Data|contains: ':\\temp\\'\ncondition: sel"))
    got = matched(rs, events)
    assert sorted(got["N"]) == ["ev1", "ev2", "ev3"]  # "" and absent are both null
    assert got["U"] == ["ev3"]  # a UNC path, not the JSON escaping of C:\temp
    assert got["T"] == ["ev2"]


def test_a_rule_that_fails_at_run_time_is_set_aside_and_the_others_still_match(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, proc_rule("Bad", "sel:\n    Image: x\ncondition: sel"),
                 proc_rule("Good", "sel:\n    CommandLine|contains: 'whoami'\ncondition: sel"))
    bad = next(r for r in rs.rules if r.title == "Bad")
    bad.condition = "error('boom') IS NULL"  # raises inside DuckDB for every row
    bad.plan = None  # made from the condition it had: parsed again from the new one
    engine = Engine(rs)
    found = engine.evaluate(table(EVENTS))
    assert [(m.rule.title, m.event["event.id"]) for m in found] == [("Good", "ev1")]
    assert "boom" in engine.failed[bad.id]
    assert [m.rule.title for m in engine.evaluate(table(EVENTS))] == ["Good"]  # skipped from then on


def test_process_creation_rules_also_run_on_security_4688(tmp_path: Path) -> None:
    events = [*EVENTS, win(4688, {"NewProcessName": r"C:\Windows\System32\cmd.exe", "CommandLine": "cmd /c whoami",
                                  "ParentProcessName": r"C:\Windows\explorer.exe"}, channel="Security", n=7)]
    rs = ruleset(tmp_path, proc_rule("T", "sel:\n    Image|endswith: '\\cmd.exe'\n"
                                          "    CommandLine|contains: 'whoami'\ncondition: sel"))
    assert len(rs.primary) == 1 and [r.variant for r in rs.rules] == [None, "security-4688"]
    assert sorted(matched(rs, events)["T"]) == ["ev1", "ev7"]
