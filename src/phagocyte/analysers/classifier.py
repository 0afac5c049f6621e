"""Learned script classifier, one per language, on deobfuscated text.

Why on deobfuscated text and why this model: obfuscation makes raw malicious text look like
noise that shares nothing with the next sample, while the peeled text names the same cmdlets,
COM objects and APIs; word and word-pair TF-IDF (hashed, so no vocabulary to store) with logistic
regression is fast (thousands of files per second) and its weights can be read. Character
n-grams (`char_wb`, 2-5) sit beside the words when `chars=True`: obfuscation and API names show
in the shapes of characters. The decision threshold is chosen at training time on an inner
split of the training data (the one giving at most `target_fpr` false positives there), never on
data the model is judged on, and kept in the model's metadata; `score()` maps it onto the verdict's
`malicious` cut (0.7). The scanner still weighs the plain probability: with the shift, the noisy-OR
with the heuristics raised false positives on both evaluated languages (docs/scan.md).
Models are trained by command (`phago scan-train`) on data the user may use; none trained on
unlicensed data ships with Phagocyte. A model folder holds `model.joblib` (a pickle: load only
models you trained) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from phagocyte.errors import InputError

__all__ = ["ScriptClassifier", "TrainingSet", "dedupe", "group_key", "near_duplicate_groups", "to_score"]

_TOKEN = r"(?u)[A-Za-z_$][\w$.\-]{1,48}|\d{1,6}|[^\w\s]{1,2}"
_MAX_CHARS = 200_000


_MALICIOUS_CUT = 0.7  # verdict.MALICIOUS; a model score at the fitted threshold lands here
_TARGET_FPR = 0.005
_INNER_SHARE = 0.25


def _pipeline(chars: bool = False) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    words = make_pipeline(
        HashingVectorizer(token_pattern=_TOKEN, ngram_range=(1, 2), n_features=2**20, lowercase=True,
                          alternate_sign=False, norm=None, dtype=np.float32),
        TfidfTransformer(sublinear_tf=True))
    features = words
    if chars:
        features = make_union(words, make_pipeline(
            HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=2**20, lowercase=True,
                              alternate_sign=False, norm=None, dtype=np.float32),
            TfidfTransformer(sublinear_tf=True)))
    return make_pipeline(features, LogisticRegression(C=4.0, max_iter=3000, class_weight="balanced"))


def group_key(text: str) -> str:
    """Near-copies (same text up to case and whitespace) share a key, so no split separates them."""
    norm = re.sub(r"\s+", " ", text.lower())[:100_000]
    return hashlib.sha1(norm.encode("utf-8", "replace")).hexdigest()


NEAR_DUPLICATE = 0.9
"""Cosine similarity of word TF-IDF above which two texts count as near-copies (set a priori, not fitted)."""


def near_duplicate_groups(texts: Sequence[str], threshold: float = NEAR_DUPLICATE, *, block: int = 512) -> list[str]:
    """One group id per text; texts joined by a chain of cosine similarities >= `threshold` share it.

    Why: distinct bytes are not distinct contents. A tool copied with a changed banner, or 386 droppers
    built from one template, would otherwise sit on both sides of a split (or of the inner split that
    fits the threshold) and flatter the model. Identical normalised texts (`group_key`) are always joined.
    Words and word pairs as the model sees them, hashed; similarities computed a block of rows at a
    time, so memory stays linear in the number of texts plus the pairs found.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    n = len(texts)
    if n == 0:
        return []
    vec = HashingVectorizer(token_pattern=_TOKEN, n_features=2**18, lowercase=True, alternate_sign=False,
                            norm=None, dtype=np.float32)
    x = TfidfTransformer(sublinear_tf=True).fit_transform(vec.transform([t[:_MAX_CHARS] for t in texts])).tocsr()
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for start in range(0, n, block):
        sim = (x[start:start + block] @ x.T).tocoo()
        keep = sim.data >= threshold
        rows.append(sim.row[keep] + start)
        cols.append(sim.col[keep])
    keys = [group_key(t) for t in texts]  # an empty text has no words: join exact copies by their key
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        j = first.setdefault(k, i)
        if j != i:
            rows.append(np.array([i]))
            cols.append(np.array([j]))
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return [f"near-{int(g)}" for g in label]


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.asarray(np.log(q / (1 - q)))


def to_score(p: np.ndarray, threshold: float) -> np.ndarray:
    """Shift the model's log-odds so that `threshold` becomes the verdict's malicious cut (monotone)."""
    shifted = _logit(p) - _logit(np.asarray(threshold)) + _logit(np.asarray(_MALICIOUS_CUT))
    return np.asarray(1.0 / (1.0 + np.exp(-shifted)))


def choose_threshold(texts: Sequence[str], labels: np.ndarray, *, chars: bool, target_fpr: float = _TARGET_FPR,
                     seed: int = 0) -> float:
    """The lowest probability keeping inner-split false positives at or under `target_fpr`.

    Why nested: a threshold picked where the model is judged flatters it; an inner, grouped split of
    the training data only gives an honest one. 0.5 when the data is too small to split.
    """
    from sklearn.model_selection import GroupShuffleSplit

    groups = near_duplicate_groups(texts)
    if len(set(groups)) < 8:
        return 0.5
    inner, held = next(GroupShuffleSplit(n_splits=1, test_size=_INNER_SHARE, random_state=seed)
                       .split(np.zeros(len(texts)), labels, groups))
    if len(set(labels[inner].tolist())) < 2 or not (labels[held] == 0).any():
        return 0.5
    model = _pipeline(chars).fit([texts[i] for i in inner], labels[inner])
    p = model.predict_proba([texts[i] for i in held])[:, 1]
    neg = np.sort(p[labels[held] == 0])
    allowed = int(np.floor(target_fpr * len(neg)))
    t = float(neg[-(allowed + 1)]) + 1e-6
    return min(max(t, 0.05), 0.95)


def dedupe(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[str], list[int], dict[str, int]]:
    """Distinct contents only; a content seen under both labels is dropped (label noise)."""
    by_hash: dict[str, tuple[str, set[int]]] = {}
    for t, y in zip(texts, labels, strict=True):
        h = hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()
        by_hash.setdefault(h, (t, set()))[1].add(int(y))
    out_t, out_y = [], []
    conflicts = 0
    for t, ys in by_hash.values():
        if len(ys) > 1:
            conflicts += 1
            continue
        out_t.append(t)
        out_y.append(next(iter(ys)))
    return out_t, out_y, {"input": len(texts), "distinct": len(by_hash), "conflicting": conflicts}


@dataclass
class TrainingSet:
    """Where a model's data came from, for its model card."""

    language: str
    malicious: list[str] = field(default_factory=list)
    benign: list[str] = field(default_factory=list)
    licences: str = "stated by the user at training time"


class ScriptClassifier:
    """One fitted pipeline per language; `predict_proba_text(language, text)` -> P(malicious)."""

    def __init__(self, models: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> None:
        self.models: dict[str, Any] = models or {}
        self.meta: dict[str, Any] = meta or {}

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.models)

    def fit(self, language: str, texts: Sequence[str], labels: Sequence[int], *, chars: bool = False,
            target_fpr: float = _TARGET_FPR) -> dict[str, Any]:
        """Fit on distinct contents; the threshold comes from an inner split of these same training data."""
        texts, labels, stats = dedupe(texts, labels)
        if len(set(labels)) < 2:
            raise InputError(f"training {language}: need malicious and benign examples, got labels {set(labels)}")
        cut = [t[:_MAX_CHARS] for t in texts]
        y = np.asarray(labels)
        threshold = choose_threshold(cut, y, chars=chars, target_fpr=target_fpr)
        model = _pipeline(chars)
        model.fit(cut, y)
        self.models[language] = model
        out: dict[str, Any] = dict(stats)
        out.update(malicious=int(y.sum()), benign=int(len(y) - y.sum()), threshold=round(threshold, 4),
                   target_fpr=target_fpr, chars=chars)
        self.meta.setdefault("languages", {})[language] = out
        return out

    def threshold(self, language: str) -> float:
        """The probability chosen at training time (0.5 for models saved before thresholds were fitted)."""
        return float(self.meta.get("languages", {}).get(language, {}).get("threshold", 0.5))

    def score(self, language: str, texts: Iterable[str]) -> np.ndarray:
        """Probabilities on the verdict's scale: the fitted threshold maps to 0.7 (malicious)."""
        return to_score(self.predict_proba(language, texts), self.threshold(language))

    def score_text(self, language: str, text: str) -> float:
        return float(self.score(language, [text])[0])

    def predict_proba(self, language: str, texts: Iterable[str]) -> np.ndarray:
        model = self.models[language]
        return np.asarray(model.predict_proba([t[:_MAX_CHARS] for t in texts])[:, 1])

    def predict_proba_text(self, language: str, text: str) -> float:
        return float(self.predict_proba(language, [text])[0])

    def save(self, folder: str | os.PathLike[str], sources: Sequence[TrainingSet] = ()) -> Path:
        import joblib
        import sklearn

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.meta.update(created=datetime.now(UTC).isoformat(timespec="seconds"), sklearn=sklearn.__version__,
                         sources=[s.__dict__ for s in sources])
        joblib.dump({"models": self.models, "meta": self.meta}, out / "model.joblib")
        (out / "meta.json").write_text(json.dumps(self.meta, indent=2))
        (out / "MODEL_CARD.md").write_text(_card(self.meta))
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ScriptClassifier:
        import joblib

        path = Path(folder) / "model.joblib"
        if not path.exists():
            raise InputError(f"no model at {path} (train one with `phago scan train`)")
        blob = joblib.load(path)
        return cls(blob["models"], blob["meta"])


def _card(meta: dict[str, Any]) -> str:
    lines = ["# Phagocyte script classifier — model card", "",
             "Word and word-pair TF-IDF (hashed, 2^20 features), with character 2-5-grams (`char_wb`, hashed, 2^20)",
             "beside them when `chars` is true, + logistic regression (class-balanced), one model per language,",
             "trained on the **deobfuscated** text of each script. The decision threshold (`threshold` below) was",
             "chosen on an inner 25 % split of the training data, grouped by near-duplicates (word TF-IDF cosine",
             ">= 0.9), as the lowest probability keeping false positives there at or under `target_fpr`;",
             "`phago scan` weighs the probability itself and names it.", "",
             f"- created: {meta.get('created')}", f"- scikit-learn: {meta.get('sklearn')}", "",
             "## Training data", ""]
    for s in meta.get("sources", []):
        lines.append(f"- {s['language']}: malicious {s['malicious']}; benign {s['benign']}; licences: {s['licences']}")
    lines += ["", "## Counts (after removing duplicate contents and contents seen under both labels)", ""]
    for lang, st in meta.get("languages", {}).items():
        lines.append(f"- {lang}: {json.dumps(st)}")
    lines += ["", "## Limits", "",
              "A lexical model: it learns the words of its training families. New families, other languages",
              "and benign code unlike the training negatives are where it errs; the heuristics and YARA run beside it.",
              "`model.joblib` is a pickle: load only models you trained yourself."]
    return "\n".join(lines) + "\n"
