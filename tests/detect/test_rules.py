"""Rule loading: the compiled-rule cache (JSON, rebuilt when a rule changes or the file is damaged)."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest

from phagocyte.detect import rules as rules_mod
from phagocyte.detect.rules import BUILTIN_RULES, RuleSet, load_rules
from phagocyte.detect.sigma.backend import CompiledRule
from tests.detect.helpers import proc_rule


def _cached_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(files: list[Path]) -> RuleSet:
        raise AssertionError("compiled, not read from the cache")
    monkeypatch.setattr(rules_mod, "_compile", refuse)


def test_cache_round_trip_gives_the_same_rules_and_is_rebuilt_when_damaged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tuple(f.name for f in dataclasses.fields(CompiledRule)) == rules_mod.RULE_FIELDS
    cache = tmp_path / "cache"
    first = load_rules([BUILTIN_RULES], cache_dir=cache)
    (cached,) = cache.glob("rules-*.json")
    good = cached.read_bytes()
    with monkeypatch.context() as m:
        _cached_only(m)
        assert load_rules([BUILTIN_RULES], cache_dir=cache) == first
    head, *lines = good.splitlines(keepends=True)
    for damaged in (b"{not json", good[:len(good) // 2], b"".join([head, *lines[:-1]]),  # cut short
                    b"".join([head.replace(b'"format":', b'"format":-', 1), *lines]),  # another layout
                    b"".join([head, b'[1, 2]\n', *lines[1:]]), b""):
        cached.write_bytes(damaged)
        assert load_rules([BUILTIN_RULES], cache_dir=cache) == first
        assert cached.read_bytes() == good  # rebuilt


def test_a_loaded_rule_set_holds_each_distinct_value_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Security 4688 variant of a process-creation rule shares its metadata with the rule; rules
    of a route share its `Route`; equal literal lists and columns are one object (cold or warm)."""
    folder = tmp_path / "rules"
    folder.mkdir()
    for i in range(3):
        (folder / f"r{i}.yml").write_text(proc_rule(f"Rule {i}", "sel:\n    CommandLine|contains: mimikatz\n"
                                                    "condition: sel", extra=f"description: Finds {i}\n"
                                                    "tags:\n    - attack.execution\n"))
    cache = tmp_path / "cache"
    cold = load_rules([folder], cache_dir=cache)
    _cached_only(monkeypatch)
    warm = load_rules([folder], cache_dir=cache)
    assert warm == cold
    for rs in (cold, warm):
        assert len(rs.rules) == 6
        primary, variant = rs.rules[0], rs.rules[1]
        assert variant.variant == "security-4688" and variant.id is primary.id
        assert variant.description is primary.description and variant.path is primary.path
        assert variant.tags is primary.tags and primary.tags == ("attack.execution",)
        assert rs.rules[2].tags is primary.tags and rs.rules[2].description == "Finds 1"
        assert all(r.route is rs.rules[0].route for r in rs.rules[::2])
        assert all(r.route is rs.rules[1].route for r in rs.rules[1::2])
        assert all(r.needs is primary.needs and r.columns is primary.columns for r in rs.rules)


def test_a_changed_rule_file_is_compiled_again(tmp_path: Path) -> None:
    rule = tmp_path / "r.yml"
    rule.write_text(proc_rule("Before", "sel:\n    Image: a\ncondition: sel"))
    assert [r.title for r in load_rules([rule], cache_dir=tmp_path / "c").primary] == ["Before"]
    rule.write_text(proc_rule("After", "sel:\n    Image: a\ncondition: sel"))
    os.utime(rule, ns=(1, 2_000_000_000_000_000_000))
    assert [r.title for r in load_rules([rule], cache_dir=tmp_path / "c").primary] == ["After"]


def test_cache_keeps_the_newest_rule_sets_and_survives_an_unwritable_folder(tmp_path: Path) -> None:
    from phagocyte.detect.rules import CACHE_KEEP

    cache = tmp_path / "cache"
    cache.mkdir()
    for i in range(CACHE_KEEP + 3):
        f = cache / f"rules-old{i:02d}.json"
        f.write_text("{}")
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
    first = load_rules([BUILTIN_RULES], cache_dir=cache)
    kept = sorted(p.name for p in cache.glob("rules-*.json"))
    assert len(kept) == CACHE_KEEP and "rules-old00.json" not in kept
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    assert load_rules([BUILTIN_RULES], cache_dir=blocked / "cache") == first  # compiled, not cached


def _many_rules(folder: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        (folder / f"r{i:03d}.yml").write_text(proc_rule(f"Rule {i}", f"sel:\n    Image|endswith: '\\\\t{i}.exe'\n"
                                                        "condition: sel"))
    (folder / "r005.yml").write_text("title: [broken")  # a parse error, in its place


FILTER = """title: Not for admins
logsource:
    product: windows
    category: process_creation
filter:
    rules: any
    selection:
        User: admin
    condition: not selection
"""


def test_rules_compiled_by_several_processes_are_the_same_as_by_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phagocyte.detect import rules as rules_mod

    _many_rules(tmp_path / "many", 30)
    paths = [tmp_path / "many", BUILTIN_RULES]  # the built-in pack has correlations (compiled here)
    monkeypatch.setattr(rules_mod, "COMPILE_JOBS_MIN_FILES", 1)
    # Earlier tests may leave idle pool threads (AnyIO's), which make compile_jobs() refuse to
    # fork; they only wait on a queue, so forking here is safe.
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setenv("PHAGO_COMPILE_JOBS", "1")
    one = load_rules(paths)
    monkeypatch.setenv("PHAGO_COMPILE_JOBS", "3")
    calls: list[int] = []
    real = rules_mod._compile_parallel
    monkeypatch.setattr(rules_mod, "_compile_parallel", lambda *a: calls.append(a[2]) or real(*a))
    several = load_rules(paths)
    assert calls == [3]  # the parallel path ran
    assert rules_mod._to_json(several) == rules_mod._to_json(one)
    assert one.correlations and one.errors and len(one.primary) >= 29
    # A filter changes rules of other files: everything is compiled in one process, the same way.
    (tmp_path / "many" / "zz_filter.yml").write_text(FILTER)
    calls.clear()
    filtered = load_rules(paths)
    assert calls == []
    monkeypatch.setenv("PHAGO_COMPILE_JOBS", "1")
    assert rules_mod._to_json(load_rules(paths)) == rules_mod._to_json(filtered)


def test_no_forked_compile_while_other_threads_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork copies a lock another thread may hold: with a second thread, one process compiles."""
    from phagocyte.detect import rules as rules_mod

    monkeypatch.setenv("PHAGO_COMPILE_JOBS", "3")
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert rules_mod.compile_jobs() == 3
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    monkeypatch.undo()
    monkeypatch.setenv("PHAGO_COMPILE_JOBS", "3")
    worker.start()
    try:
        assert rules_mod.compile_jobs() == 1
    finally:
        stop.set()
        worker.join()
