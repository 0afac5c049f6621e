"""The learned classifier: hashed words and structure, one multinomial logistic regression.

Features are the message's words and word pairs (subject and body, visible HTML text), character
3-5-grams of the subject and the start of the text, link structure (host labels, path words),
HTML structure (tag and attribute names), mixed-script words, plus structure tokens: every signal
code that fired, the MIME layout, attachment true types, link top-level domains and header names.
They are hashed (no vocabulary to store), so a team retrains on its own mail with
`phago email train` and the model is two arrays and a JSON file: loading it executes nothing
(no pickle). Logistic regression gives probabilities calibrated by its log loss (to equal class
shares: the class weights are balanced), and each token's contribution is readable, which is what
the verdict's `model` reason shows. Each token family with many tokens per message (words, character
n-grams, link and HTML structure) is an l2-normalised block, so that no family outweighs the others
by its count alone.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import murmurhash3_32

from phagocyte.email.domains import url_host
from phagocyte.email.parse import ParsedMessage
from phagocyte.email.signals import Reason, message_urls

__all__ = ["CLASSES", "EmailModel", "columns", "features", "model_card", "train"]

N_FEATURES = 2**20
MAX_TOKENS = 4_000
CLASSES = ("clean", "phishing", "spam")
_WORD = re.compile(r"[^\W\d_]{2,24}|\d{1,6}")
_FORMAT = "phagocyte-email-model/3"
"""/2: character n-grams, link, HTML-structure and mixed-script tokens added (a /1 model's weights
would be read against tokens it never saw). /3: link and HTML structure are l2-normalised blocks (a /2
model's weights were learnt for 1.0 per token)."""
CHAR_TEXT = 3_000
_URL_SPLIT = re.compile(r"[/?=&.\-_:#%]+")
_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]{0,10})\b([^>]{0,400})>")
_ATTR = re.compile(r"([a-zA-Z-]{2,20})\s*=")
_LATIN = re.compile(r"[a-zA-Z]")
_CYR_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u04ff]")


def features(pm: ParsedMessage, reasons: Sequence[Reason]) -> list[tuple[str, float]]:
    """(token, value) pairs of one message.

    Words and word pairs (one l2-normalised block), character 3-5-grams of the subject and the
    first 3,000 characters of text (a second block: they survive misspellings, homoglyph tricks
    and languages the word list splits badly), link structure (host labels, path words, length,
    query), HTML structure (tag and attribute names: layout of marketing and phishing kits), words
    mixing Latin and Cyrillic/Greek letters, and structure tokens (signals, MIME layout, headers).
    """
    words = _WORD.findall((pm.subject + " \n " + pm.text)[:60_000].lower())[:MAX_TOKENS]
    text = set(words)
    text.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    text.update("s:" + w for w in _WORD.findall(pm.subject.lower())[:40])
    weight = 1.0 / math.sqrt(len(text)) if text else 0.0
    pairs = [(t, weight) for t in text]
    grams = _char_grams(pm.subject + " " + pm.text[:CHAR_TEXT])
    weight = 1.0 / math.sqrt(len(grams)) if grams else 0.0
    pairs.extend(("c:" + g, weight) for g in grams)
    struct = {"sig:" + r.code for r in reasons}
    struct.update("ct:" + ct for ct in pm.structure[:50])
    struct.update("hdr:" + k.lower() for k, _ in pm.headers[:80])
    urls = message_urls(pm)
    struct.update("tld:" + url_host(u).rsplit(".", 1)[-1] for u in urls[:100])
    struct.add(f"urls:{min(len(urls), 20) // 5}")
    struct.add(f"words:{min(int(math.log2(len(words) + 1)), 12)}")
    struct.add(f"html:{bool(pm.html)}")
    pairs.extend((t, 1.0) for t in struct)
    # Link and HTML structure are l2-normalised blocks like the text: at 1.0 per token, the 30-80 tag and
    # attribute names of any HTML mail outweighed what its words said (a mail client's markup is not phishing).
    for block in (_url_tokens(urls[:100]), _html_tokens(pm.html[:3])):
        weight = 1.0 / math.sqrt(len(block)) if block else 0.0
        pairs.extend((t, weight) for t in block)
    mixed = sum(1 for w in (pm.subject + " " + pm.text[:20_000]).split() if _LATIN.search(w) and _CYR_GREEK.search(w))
    pairs.append((f"mixed:{min(mixed, 3)}", 1.0))
    return pairs


def _char_grams(text: str) -> set[str]:
    """Character 3-, 4- and 5-grams of each word padded with spaces (a shorter word counts whole)."""
    padded = [f" {w} " for w in set(text.lower().split())]  # 3 characters or more: one 3-gram at least
    grams = {w[i:i + 3] for w in padded for i in range(len(w) - 2)}
    grams.update(w[i:i + 4] for w in padded for i in range(max(len(w) - 3, 1)))
    grams.update(w[i:i + 5] for w in padded for i in range(max(len(w) - 4, 1)))
    return grams


def _url_tokens(urls: Sequence[str]) -> set[str]:
    """Link structure: the last host labels before the TLD, path and query words, length band, query."""
    out: set[str] = set()
    for u in urls:
        h = url_host(u)
        out.update("uh:" + p for p in h.split(".")[:-1][-3:])
        path = u.split(h, 1)[-1] if h else u
        out.update("up:" + p for p in _URL_SPLIT.split(path.lower())[:20] if 1 < len(p) < 20 and not p.isdigit())
        out.add(f"ulen:{min(len(u) // 40, 5)}")
        out.add(f"uq:{'?' in u}")
    return out


def _html_tokens(htmls: Sequence[str]) -> set[str]:
    """HTML structure: which tags and which tag.attribute pairs occur (bounded scan, nothing parsed)."""
    out: set[str] = set()
    for h in htmls:
        for m in itertools.islice(_TAG.finditer(h[:200_000]), 3_000):
            tag = m.group(1).lower()
            out.add("t:" + tag)
            out.update(f"a:{tag}.{a.lower()}" for a in _ATTR.findall(m.group(2))[:10])
    return out


try:  # private, pinned sklearn (requirements.lock); the pure-Python path below gives the same columns
    from sklearn.feature_extraction._hashing_fast import transform as _hash_rows
except ImportError:  # pragma: no cover
    _hash_rows = None


@lru_cache(maxsize=1 << 16)
def _column(token: str) -> int:
    """The hashed column of a token: sklearn's FeatureHasher scheme (signed MurmurHash3, seed 0, abs mod n),
    one cached C call per token instead of a FeatureHasher call per message (its fixed cost dominated)."""
    h = murmurhash3_32(token, seed=0)
    return (2**31 - 1 - (N_FEATURES - 1)) % N_FEATURES if h == -(2**31) else abs(h) % N_FEATURES


def columns(pairs: Sequence[tuple[str, float]]) -> tuple[Any, Any]:
    """(column indices, values) of one message's feature pairs, in the pairs' order.

    FeatureHasher's own Cython loop does it in one call (its public `transform` adds a fixed cost
    per call and merges the tokens, which `explain` needs apart); `_column` is the fallback."""
    if _hash_rows is not None:
        idx, _, vals = _hash_rows([pairs], N_FEATURES, np.float64, False, 0)
        if len(idx) == len(pairs):  # it skips zero values: then the token order would be lost
            return np.asarray(idx, dtype=np.int64), np.asarray(vals, dtype=np.float64)
    col = _column
    cols = np.array([col(t) for t, _ in pairs], dtype=np.int64)
    vals = np.array([v for _, v in pairs], dtype=np.float64)
    return cols, vals


def _matrix(rows: Sequence[Sequence[tuple[str, float]]]) -> Any:
    """Sparse (messages x N_FEATURES) matrix of feature rows; colliding tokens add up."""
    from scipy.sparse import csr_matrix

    parts = [columns(r) for r in rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c, _ in parts])
    indices = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
    data = np.concatenate([v for _, v in parts]) if parts else np.zeros(0)
    x = csr_matrix((data, indices, indptr), shape=(len(rows), N_FEATURES))
    x.sum_duplicates()
    return x


@dataclass
class EmailModel:
    classes: tuple[str, ...]
    coef: Any
    """Dense (classes x N_FEATURES) float32 array (zero where a token was never seen)."""
    intercept: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def proba(self, rows: Sequence[list[tuple[str, float]]]) -> Any:
        return np.vstack([self.proba_one(columns(r)) for r in rows]) if rows else np.zeros((0, len(self.classes)))

    def proba_one(self, cols_vals: tuple[Any, Any]) -> Any:
        """Class probabilities of one message from its `columns` (gathering its weights is cheaper
        than a sparse product over a million columns)."""
        cols, vals = cols_vals
        logits = self.coef[:, cols] @ vals + self.intercept
        if len(self.classes) == 2:  # binary logistic regression: one weight vector for the second class
            logits = np.array([0.0, logits[-1]])
        logits = logits - logits.max()
        e = np.exp(logits)
        return e / e.sum()

    def explain(self, pairs: list[tuple[str, float]], label: str = "phishing", top: int = 6,
                cols_vals: tuple[Any, Any] | None = None) -> list[str]:
        """The tokens that pushed this message most towards `label` (for the verdict's reasons)."""
        if label not in self.classes or not pairs:
            return []
        k = self.classes.index(label)
        row = self.coef[min(k, self.coef.shape[0] - 1)]
        sign = -1.0 if len(self.classes) == 2 and k == 0 else 1.0
        cols, vals = cols_vals if cols_vals is not None else columns(pairs)
        contrib = sign * row[cols] * vals
        best = np.argsort(-contrib)[:top]
        return [f"{pairs[i][0]} (+{contrib[i]:.2f})" for i in best if contrib[i] > 0]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        nz = np.nonzero(np.any(self.coef != 0, axis=0))[0].astype(np.int32)
        np.savez_compressed(folder / "weights.npz", index=nz, coef=self.coef[:, nz].astype(np.float32),
                            intercept=np.asarray(self.intercept, dtype=np.float64))
        meta = dict(self.meta, format=_FORMAT, classes=list(self.classes), n_features=N_FEATURES)
        (folder / "model.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (folder / "MODEL_CARD.md").write_text(model_card(meta))

    @staticmethod
    def problem(folder: Path) -> str | None:
        """Why `folder` holds no model this version can use (None when it can): read before starting workers."""
        try:
            meta = json.loads((folder / "model.json").read_text())
        except (OSError, ValueError) as exc:
            return f"{folder}: no readable model.json ({type(exc).__name__})"
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("n_features") != N_FEATURES:
            found = meta.get("format") if isinstance(meta, dict) else None
            return (f"{folder}: a {found or 'unknown'} model, this version reads {_FORMAT}: "
                    "retrain it (phago email train)")
        return None

    @classmethod
    def load(cls, folder: Path) -> EmailModel:
        why = cls.problem(folder)
        if why:
            raise ValueError(why)
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / "weights.npz", allow_pickle=False) as z:
            coef = np.zeros((z["coef"].shape[0], N_FEATURES), dtype=np.float32)
            coef[:, z["index"]] = z["coef"]
            intercept = z["intercept"]
        return cls(tuple(meta["classes"]), coef, intercept, meta)


def model_card(meta: dict[str, Any]) -> str:
    """A model card to fill in: what the model saw; its licences and quality are the trainer's to state."""
    counts = meta.get("counts", {})
    sources = meta.get("sources", {})
    lines = [
        "# Model card: Phagocyte e-mail classifier", "",
        f"- Format: `{_FORMAT}`; multinomial logistic regression (C = {meta.get('C')}, balanced class weights) "
        f"on {N_FEATURES:,} hashed features (no pickle): words and word pairs, character 3-5-grams, link and "
        "HTML structure, signals, MIME layout, header names.",
        f"- Trained: {meta.get('trained')}; classes: {', '.join(meta.get('classes', []))}.",
        f"- Provenance stripped before training: {meta.get('strip_provenance', 'unknown')} "
        "(see docs/email.md: dates, Received chains, list headers and footers removed).",
        "", "## Training data", "", "| class | messages | source |", "|---|---|---|",
    ]
    lines += [f"| {c} | {n} | {sources.get(c, '')} |" for c, n in counts.items()]
    lines += [
        "", "## To fill in before sharing this model", "",
        "- Licence of each training source (a model may not be distributed beyond what its data allows).",
        "- Measured quality: precision, recall and F1 on phishing, false-positive rate on each kind of",
        "  legitimate mail, by cross-validation on held-out mail (`bench/email_eval.py` shows how).",
        "- Known biases of the training mail (era, language, senders, topics).", "",
    ]
    return "\n".join(lines)


def train(rows: Sequence[list[tuple[str, float]]], labels: Sequence[str], c: float = 10.0,
          meta: dict[str, Any] | None = None) -> EmailModel:
    """Fit the classifier on feature rows (from `features`) and labels among CLASSES."""
    from sklearn.linear_model import LogisticRegression

    classes = tuple(c_ for c_ in CLASSES if c_ in set(labels))
    if len(classes) < 2 or "clean" not in classes:
        raise ValueError(f"training needs clean mail and at least one other class, got {sorted(set(labels))}")
    y = np.array([classes.index(lbl) for lbl in labels])
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    clf.fit(_matrix(rows), y)
    counts = {cl: int((y == i).sum()) for i, cl in enumerate(classes)}
    info = {"trained": datetime.now(UTC).isoformat(timespec="seconds"), "counts": counts, "C": c}
    return EmailModel(classes, clf.coef_.astype(np.float32), clf.intercept_.astype(np.float64),
                      dict(meta or {}, **info))
