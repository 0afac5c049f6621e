"""Rule loading: the compiled-rule cache (JSON, rebuilt when a rule changes or the file is damaged)."""

from __future__ import annotations

import os
from pathlib import Path

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
