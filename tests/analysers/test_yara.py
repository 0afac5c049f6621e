"""YARA through yara-x: bad rules reported and skipped, externals, the on-disk cache; real rule sets."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from phagocyte.analysers.scan import Scanner
from phagocyte.analysers.yara import YaraRules, rule_files
from tests.conftest import evaldata

GOOD = 'rule Evil_String { meta: description = "test" strings: $a = "EvilPayload" condition: $a }\n'
BAD = "rule Broken { condition: undefined_identifier }\n"
EXTERNAL = 'rule Named { condition: filename == "dropper.js" }\n'


def _rules(tmp_path: Path) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "good.yar").write_text(GOOD + BAD)
    (d / "named.yar").write_text(EXTERNAL)
    (d / "syntax.yar").write_text("rule { this is not yara")
    return d


def test_bad_rules_are_reported_and_the_rest_compile(tmp_path: Path) -> None:
    rules = YaraRules.compile([_rules(tmp_path)])
    skipped = {(Path(s["file"]).name, s["rule"]) for s in rules.skipped}
    assert ("good.yar", "Broken") in skipped
    assert ("syntax.yar", "*") in skipped
    assert [m.rule for m in rules.scan(b"xx EvilPayload xx")] == ["Evil_String"]
    assert rules.scan(b"clean") == []


def test_externals_are_set_per_scan(tmp_path: Path) -> None:
    rules = YaraRules.compile([_rules(tmp_path)])
    assert [m.rule for m in rules.scan(b"x", externals={"filename": "dropper.js"})] == ["Named"]
    assert rules.scan(b"x", externals={"filename": "other.js"}) == []


def test_compiled_set_is_cached_and_rebuilt_on_change(tmp_path: Path) -> None:
    src, cache = _rules(tmp_path), tmp_path / "cache"
    first = YaraRules.compile([src], cache_dir=cache)
    builds = list(cache.glob("yara-*/rules.bin"))
    assert len(builds) == 1
    again = YaraRules.compile([src], cache_dir=cache)
    assert again.report == first.report and [m.rule for m in again.scan(b"EvilPayload")] == ["Evil_String"]
    (src / "good.yar").write_text(GOOD.replace("EvilPayload", "OtherPayload"))
    changed = YaraRules.compile([src], cache_dir=cache)
    assert len(list(cache.glob("yara-*/rules.bin"))) == 2
    assert [m.rule for m in changed.scan(b"OtherPayload")] == ["Evil_String"]


def test_yara_matches_raise_the_verdict(tmp_path: Path) -> None:
    rules = YaraRules.compile([_rules(tmp_path)])
    v = Scanner(yara=rules).scan_bytes(b"var x = 'EvilPayload';", "a.js")
    assert any(r.source == "yara" and r.name == "Evil_String" for r in v.reasons)


@pytest.mark.evaldata
def test_real_rule_sets_compile_with_few_skips() -> None:
    rng = random.Random(6)
    sig = rule_files([evaldata("yara_signature_base") / "yara"])
    community = rule_files([evaldata("yara_rules_community")])
    assert len(sig) > 500 and len(community) > 300  # community: only what its index.yar includes
    assert not any("/utils/" in str(f) or "/deprecated/" in str(f) for f in community)
    sample = rng.sample(sig, 60) + rng.sample(community, 60)
    rules = YaraRules.compile(sample)
    assert len(rules.skipped) < 30, rules.skipped


def test_fast_scan_still_counts_hits_for_rules_that_need_them(tmp_path: Path) -> None:
    """Fast mode stops tracking every offset; rules whose condition counts or locates hits must still work."""
    (tmp_path / "count.yar").write_text(
        'rule Three_Hits { strings: $a = "evilbit" condition: #a >= 3 }\n'
        'rule Late_Hit { strings: $b = "marker" condition: @b[1] > 20 }\n')
    rules = YaraRules.compile([tmp_path / "count.yar"])
    assert [m.rule for m in rules.scan(b"evilbit evilbit evilbit")] == ["Three_Hits"]
    assert rules.scan(b"evilbit evilbit") == []
    assert [m.rule for m in rules.scan(b"." * 30 + b"marker")] == ["Late_Hit"]
    assert rules.scan(b"marker" + b"." * 30) == []


def test_a_timed_out_scan_is_reported_not_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yara_x

    rules = YaraRules.compile([_rules(tmp_path)], timeout=1)

    class Stuck:
        def set_global(self, name: str, value: object) -> None:
            pass

        def scan(self, data: bytes) -> object:
            raise yara_x.TimeoutError("timeout")

    monkeypatch.setattr(rules, "_scanner", Stuck())
    v = Scanner(yara=rules).scan_bytes(b"var x = 'EvilPayload';", "a.js")
    assert rules.timeouts == 1
    assert any("YARA scan of the raw bytes timed out (1 s)" in e for e in v.errors), v.errors
    assert not any(r.source == "yara" for r in v.reasons)
