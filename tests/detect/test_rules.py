"""Rule loading: the compiled-rule cache (JSON, rebuilt when a rule changes or the file is damaged)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from phagocyte.detect.rules import BUILTIN_RULES, load_rules
from tests.detect.helpers import proc_rule


def test_cache_round_trip_gives_the_same_rules_and_is_rebuilt_when_damaged(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_rules([BUILTIN_RULES], cache_dir=cache)
    (cached,) = cache.glob("rules-*.json")
    assert load_rules([BUILTIN_RULES], cache_dir=cache) == first
    cached.write_text("{not json")
    assert load_rules([BUILTIN_RULES], cache_dir=cache) == first


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
