"""Learned script classifier, one per language, on deobfuscated text.

Why on deobfuscated text and why this model: obfuscation makes raw malicious text look like
noise that shares nothing with the next sample, while the peeled text names the same cmdlets,
COM objects and APIs; word and word-pair TF-IDF (hashed, so no vocabulary to store) with logistic
regression is fast (thousands of files per second), calibrated enough to combine with the
heuristics, and its weights can be read. Models are trained by command (`phago scan train`) on
data the user may use; none trained on unlicensed data ships with Phagocyte. A model folder holds
`model.joblib` (a pickle: load only models you trained) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from phagocyte.errors import InputError

__all__ = ["ScriptClassifier", "TrainingSet", "dedupe"]

_TOKEN = r"(?u)[A-Za-z_$][\w$.\-]{1,48}|\d{1,6}|[^\w\s]{1,2}"
_MAX_CHARS = 200_000


def _pipeline() -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        HashingVectorizer(token_pattern=_TOKEN, ngram_range=(1, 2), n_features=2**20, lowercase=True,
                          alternate_sign=False, norm=None, dtype=np.float32),
        TfidfTransformer(sublinear_tf=True),
        LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced"),
    )


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

    def fit(self, language: str, texts: Sequence[str], labels: Sequence[int]) -> dict[str, int]:
        texts, labels, stats = dedupe(texts, labels)
        if len(set(labels)) < 2:
            raise InputError(f"training {language}: need malicious and benign examples, got labels {set(labels)}")
        model = _pipeline()
        model.fit([t[:_MAX_CHARS] for t in texts], np.asarray(labels))
        self.models[language] = model
        stats.update(malicious=int(sum(labels)), benign=int(len(labels) - sum(labels)))
        self.meta.setdefault("languages", {})[language] = stats
        return stats

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
             "Word and word-pair TF-IDF (hashed, 2^20 features) + logistic regression (class-balanced),",
             "one model per language, trained on the **deobfuscated** text of each script.", "",
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
