"""The classifier: trains, saves without pickle, reloads identically, explains; and learns real mail."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import pytest

from phagocyte.email.model import EmailModel, features, train
from phagocyte.email.parse import parse_message
from phagocyte.email.provenance import strip_provenance
from phagocyte.email.signals import collect
from phagocyte.email.verdict import analyse
from tests.conftest import evaldata
from tests.email.messages import message

PHISH = ["Your mailbox is full. Verify your account now or it will be suspended within 24 hours.",
         "Unusual sign-in activity detected. Confirm your password immediately to restore access.",
         "Your payment failed. Update your payment information today to keep your subscription.",
         "Final notice: your account has been locked. Log in here to unlock your account."]
HAM = ["The build is green again; I merged the fix for the parser and tagged the release.",
       "Minutes of the meeting: budget approved, next review in two weeks, Ann owns the plan.",
       "Could you send me the slides from yesterday's talk? The link in the agenda is broken.",
       "Lunch on Friday? The new place near the station has good soup and a quiet room."]


def _row(raw: bytes) -> list[tuple[str, float]]:
    pm = parse_message(raw)
    reasons, _ = collect(pm)
    return features(pm, reasons)


@functools.cache
def _toy_model() -> EmailModel:
    """Trained once per session: every test reads it, none changes it."""
    rows = [_row(message(text=t, subject="Account notice")) for t in PHISH] + [_row(message(text=t)) for t in HAM]
    return train(rows, ["phishing"] * len(PHISH) + ["clean"] * len(HAM))


def test_model_separates_training_mail_and_explains_with_words(tmp_path: Path) -> None:
    model = _toy_model()
    v = analyse(message(text="Verify your account now: your mailbox is full and access will be suspended."),
                model=model)
    assert v.label == "phishing" and v.probabilities is not None
    model_reason = next(r for r in v.reasons if r.code == "model")
    assert any("verify" in e or "account" in e or "suspended" in e for e in model_reason.evidence)
    assert analyse(message(text="The minutes of the meeting and the slides from the talk."), model=model).label \
        == "clean"


def test_model_round_trips_without_pickle(tmp_path: Path) -> None:
    model = _toy_model()
    model.save(tmp_path / "m")
    again = EmailModel.load(tmp_path / "m")
    rows = [_row(message(text=PHISH[0])), _row(message(text=HAM[0]))]
    assert np.allclose(model.proba(rows), again.proba(rows))
    assert again.classes == ("clean", "phishing")
    with np.load(tmp_path / "m" / "weights.npz", allow_pickle=False) as z:
        assert set(z.files) == {"index", "coef", "intercept"}


def test_training_needs_clean_mail_and_another_class() -> None:
    with pytest.raises(ValueError):
        train([_row(message())], ["phishing"])


def test_real_mail_held_out_with_provenance_stripped() -> None:
    """Train on part of the real corpora (provenance stripped), judge messages it never saw."""
    phish = sorted((evaldata("email") / "phishing_pot" / "email").glob("*.eml"))
    ham = sorted((evaldata("email") / "spamassassin_public_corpus" / "easy-ham-1").iterdir())
    modern = sorted(p for p in (evaldata("email_modern_ham") / "usrp-users").glob("*.eml"))
    rng = random.Random(7)
    sets = {"phishing": rng.sample(phish, 120), "clean": rng.sample(ham, 70) + rng.sample(modern, 50)}
    train_rows, train_labels, test = [], [], []
    for label, files in sets.items():
        for i, f in enumerate(files):
            raw = strip_provenance(f.read_bytes())
            if i % 4 == 0:
                test.append((label, raw))
            else:
                train_rows.append(_row(raw))
                train_labels.append(label)
    model = train(train_rows, train_labels)
    right = sum(analyse(raw, model=model).label == ("phishing" if label == "phishing" else "clean")
                for label, raw in test)
    assert right / len(test) >= 0.85, f"{right}/{len(test)} held-out messages right"


def test_hashing_matches_sklearn_feature_hasher() -> None:
    """Our cached per-token hashing must give FeatureHasher's columns, or saved models would read wrong weights."""
    from sklearn.feature_extraction import FeatureHasher

    from phagocyte.email.model import N_FEATURES, _matrix

    rows = [_row(message(text=t, subject="Ação — conta")) for t in PHISH + HAM] + [[("", 1.0), ("x", 2.0), ("x", 1.0)]]
    ours = _matrix(rows)
    theirs = FeatureHasher(n_features=N_FEATURES, input_type="pair", alternate_sign=False).transform(rows).tocsr()
    assert (ours != theirs).nnz == 0 and ours.nnz == theirs.nnz


def test_columns_keep_each_token_in_order() -> None:
    """`explain` reads token i's weight at column i: the fast and the fallback hashing must agree, zeros included."""
    from phagocyte.email.model import _column, columns

    pairs = [*_row(message(text=PHISH[0])), ("zero", 0.0), ("", 1.0)]
    cols, vals = columns(pairs)
    assert list(cols) == [_column(t) for t, _ in pairs] and list(vals) == [v for _, v in pairs]


def test_html_and_link_structure_are_normalised_blocks() -> None:
    # A mail client's markup (dozens of tag and attribute names) must not outweigh the words by its
    # count: each block of structure tokens has unit l2 norm, whatever the number of tags or links.
    small = "<html><body><p>See <a href='https://example.org/a'>this</a></p></body></html>"
    tags = "".join(f"<div class='c{i}' style='x' id='d{i}'><span lang='en'>x</span></div>" for i in range(40))
    big = f"<html><head><meta http-equiv='x' content='y' charset='z'></head><body>{tags}" + "".join(
        f"<a href='https://host{i}.example.org/p{i}/q?x={i}'>l</a>" for i in range(30)) + "</body></html>"
    for html in (small, big):
        pairs = _row(message(text="Hello", html=html))
        for prefix in (("t:", "a:"), ("uh:", "up:", "ulen:", "uq:")):
            values = [v for t, v in pairs if t.startswith(prefix)]
            assert len(values) >= 2
            assert sum(v * v for v in values) == pytest.approx(1.0)
