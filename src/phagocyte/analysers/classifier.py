"""Learned script classifier, one per language, on deobfuscated text.

Why on deobfuscated text and why this model: obfuscation makes raw malicious text look like
noise that shares nothing with the next sample, while the peeled text names the same cmdlets,
COM objects and APIs; word and word-pair TF-IDF (hashed, so no vocabulary to store) with logistic
regression is fast (thousands of files per second) and its weights can be read. Character
n-grams (`char_wb`, 2-5) sit beside the words when `chars=True`: obfuscation and API names show
in the shapes of characters. The decision threshold is chosen at training time on an inner
split of the training data (the one giving at most `target_fpr` false positives there), never on
data the model is judged on, and kept in the model's metadata; `score()` maps it onto the verdict's
`malicious` cut (0.7).

The verdict's score with a model is a **second-level (stacked) model**, one per language: a logistic
regression on the text model's log-odds and the heuristics (rule hits, the obfuscation weight, decoding
layers). Why: the heuristics and the text model see the same obfuscation, so a noisy-OR of the two counted
it twice and made `phago scan --model` worse than the classifier alone (docs/scan.md). Its inputs are the
text model's *out-of-fold* probabilities from an inner grouped cross-validation on the training data (a
probability from a model that saw the file would be overconfident), its coefficients are kept non-negative
(more evidence never lowers the score), and its own threshold comes from a second inner cross-validation,
mapped onto 0.7.
Models are trained by command (`phago scan-train`) on data the user may use; none trained on
unlicensed data ships with Phagocyte. A model folder holds `model.joblib` (a pickle: load only
models you trained) and `MODEL_CARD.md`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from phagocyte.errors import InputError

__all__ = ["FORMAT", "ScriptClassifier", "TrainingSet", "dedupe", "group_key", "near_duplicate_groups",
           "stack_features", "to_score"]

FORMAT = "phagocyte-scan-model/2"
"""Model file format: 2 adds the stacked combination (models without it are refused, not silently mixed)."""

_TOKEN = r"(?u)[A-Za-z_$][\w$.\-]{1,48}|\d{1,6}|[^\w\s]{1,2}"
_MAX_CHARS = 200_000


_MALICIOUS_CUT = 0.7  # verdict.MALICIOUS; a model score at the fitted threshold lands here
_TARGET_FPR = 0.005
_INNER_SHARE = 0.25
_INNER_FOLDS = 5
_LAYER_KINDS = ("arrays", "base64", "char-codes", "eval", "execute", "format", "iex", "packer", "replace", "strings",
                "xor")  # heuristics._HEAVY: the decoding steps benign code rarely needs


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
                     seed: int = 0, groups: Sequence[str] | None = None) -> float:
    """The lowest probability keeping inner-split false positives at or under `target_fpr`.

    Why nested: a threshold picked where the model is judged flatters it; an inner, grouped split of
    the training data only gives an honest one. 0.5 when the data is too small to split.
    """
    from sklearn.model_selection import GroupShuffleSplit

    groups = list(groups) if groups is not None else near_duplicate_groups(texts)
    if len(set(groups)) < 8:
        return 0.5
    inner, held = next(GroupShuffleSplit(n_splits=1, test_size=_INNER_SHARE, random_state=seed)
                       .split(np.zeros(len(texts)), labels, groups))
    if len(set(labels[inner].tolist())) < 2 or not (labels[held] == 0).any():
        return 0.5
    model = _pipeline(chars).fit([texts[i] for i in inner], labels[inner])
    p = model.predict_proba([texts[i] for i in held])[:, 1]
    return _fpr_threshold(p, labels[held], target_fpr)


def _distinct(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[int], dict[str, int]]:
    """Indices of the first copy of each distinct content seen under one label only, and the counts."""
    by_hash: dict[str, tuple[int, set[int]]] = {}
    for i, (t, y) in enumerate(zip(texts, labels, strict=True)):
        h = hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()
        by_hash.setdefault(h, (i, set()))[1].add(int(y))
    keep = [i for i, ys in by_hash.values() if len(ys) == 1]
    conflicts = sum(len(ys) > 1 for _, ys in by_hash.values())
    return keep, {"input": len(texts), "distinct": len(by_hash), "conflicting": conflicts}


def dedupe(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[str], list[int], dict[str, int]]:
    """Distinct contents only; a content seen under both labels is dropped (label noise)."""
    keep, stats = _distinct(texts, labels)
    return [texts[i] for i in keep], [int(labels[i]) for i in keep], stats


def stack_features(language: str, reasons: Iterable[Any], layers: Sequence[str]) -> list[float]:
    """The heuristics as the stacked model sees them: one hit flag per rule of `language`, the obfuscation
    weight, and log counts of the heavy decoding steps and of all steps. `reasons` are the verdict's
    (only `heuristic` ones count), `layers` its decoding steps; the same function serves training and scanning.
    """
    from phagocyte.analysers.scripts.heuristics import RULES

    hits: dict[str, float] = {}
    for r in reasons:
        if getattr(r, "source", "") == "heuristic":
            hits[r.name] = max(hits.get(r.name, 0.0), float(r.weight))
    names = sorted({r.name for r in RULES.get(language, ())})
    out = [float(n in hits) for n in names] + [hits.get("obfuscated", 0.0)]
    out += [float(np.log1p(sum(layer == k for layer in layers))) for k in _LAYER_KINDS]
    return [*out, float(np.log1p(len(layers)))]


def _text_features(language: str, texts: Sequence[str]) -> list[list[float]]:
    """Stacking features when only texts are given: the heuristics run on the text, no decoding layers."""
    from phagocyte.analysers.scripts.heuristics import match_rules

    return [stack_features(language, match_rules(language, t[:_MAX_CHARS]), []) for t in texts]


def _inner_folds(labels: np.ndarray, groups: Sequence[str], seed: int
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """Inner cross-validation folds of the training data, grouped by near-duplicates when the data allow it
    (tiny training sets fall back to stratified folds, and the model's metadata says so)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    per_class = min(len({g for g, y in zip(groups, labels, strict=True) if y == c}) for c in (0, 1))
    if per_class >= 2:
        cv: Any = StratifiedGroupKFold(min(_INNER_FOLDS, per_class), shuffle=True, random_state=seed)
        return list(cv.split(np.zeros(len(labels)), labels, groups)), True
    smallest = int(min(labels.sum(), len(labels) - labels.sum()))
    if smallest < 2:
        raise InputError("training: at least 2 malicious and 2 benign distinct scripts are needed")
    cv = StratifiedKFold(min(_INNER_FOLDS, smallest), shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(labels)), labels)), False


def _second_level() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))


@dataclass
class Stacker:
    """The second-level model: logistic regression on [text log-odds, heuristic features], coefficients >= 0.

    Why non-negative: a heuristic hit or a higher text probability must never lower the verdict's score
    (an analyst reads the reasons as evidence for malice). A feature whose fitted weight is negative is
    dropped and the model refitted, until every weight is >= 0 (columns kept in `keep`).
    """

    model: Any = None
    keep: list[int] = field(default_factory=list)
    threshold: float = 0.5
    """Stacked probability giving <= target_fpr false positives in an inner CV; mapped onto 0.7 by `score`."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> Stacker:
        keep = list(range(x.shape[1]))
        while True:
            model = _second_level().fit(x[:, keep], y)
            coef = model[-1].coef_[0]
            bad = [k for k, c in zip(keep, coef, strict=True) if c < 0]
            if not bad or len(keep) == 1:
                break
            keep = [k for k in keep if k not in bad]
        self.model, self.keep = model, keep
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(x[:, self.keep])[:, 1])

    def score(self, x: np.ndarray) -> np.ndarray:
        """On the verdict's scale: the fitted threshold lands on 0.7 (malicious), monotone in the probability."""
        return to_score(self.predict(x), self.threshold)

    def weights(self, n: int) -> list[float]:
        """Weight per input column on the standardised scale (0 for a dropped column), for the model card."""
        out = [0.0] * n
        for k, c in zip(self.keep, self.model[-1].coef_[0], strict=True):
            out[k] = round(float(c), 4)
        return out


def _fpr_threshold(p: np.ndarray, y: np.ndarray, target_fpr: float) -> float:
    neg = np.sort(p[y == 0])
    if len(neg) == 0:
        return 0.5
    t = float(neg[-(int(np.floor(target_fpr * len(neg))) + 1)]) + 1e-6
    return min(max(t, 0.05), 0.95)


@dataclass
class TrainingSet:
    """Where a model's data came from, for its model card."""

    language: str
    malicious: list[str] = field(default_factory=list)
    benign: list[str] = field(default_factory=list)
    licences: str = "stated by the user at training time"


class ScriptClassifier:
    """One fitted pipeline per language; `predict_proba_text(language, text)` -> P(malicious)."""

    def __init__(self, models: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                 stackers: dict[str, Stacker] | None = None) -> None:
        self.models: dict[str, Any] = models or {}
        self.meta: dict[str, Any] = meta or {}
        self.stackers: dict[str, Stacker] = stackers or {}

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.models)

    def fit(self, language: str, texts: Sequence[str], labels: Sequence[int], *, chars: bool = False,
            target_fpr: float = _TARGET_FPR, features: Sequence[Sequence[float]] | None = None,
            stack: bool = True) -> dict[str, Any]:
        """Fit on distinct contents; every threshold and the stacked model come from inner splits of these data.

        `features` are `stack_features` of each text's verdict (heuristics on the text itself when absent).
        `stack=False` fits the text model alone (an evaluation baseline; `phago scan` refuses such a model).
        """
        keep, stats = _distinct(texts, labels)
        cut = [texts[i][:_MAX_CHARS] for i in keep]
        y = np.asarray([int(labels[i]) for i in keep])
        if len(set(y.tolist())) < 2:
            raise InputError(f"training {language}: need malicious and benign examples, got labels {set(y.tolist())}")
        groups = near_duplicate_groups(cut)
        threshold = choose_threshold(cut, y, chars=chars, target_fpr=target_fpr, groups=groups)
        out: dict[str, Any] = dict(stats)
        out.update(malicious=int(y.sum()), benign=int(len(y) - y.sum()), threshold=round(threshold, 4),
                   target_fpr=target_fpr, chars=chars)
        if stack:
            feats = np.asarray([list(features[i]) for i in keep] if features is not None
                               else _text_features(language, cut), dtype=np.float64).reshape(len(cut), -1)
            self.stackers[language], info = self._fit_stack(cut, y, groups, feats, chars, target_fpr)
            out["stack"] = info
        model = _pipeline(chars)
        model.fit(cut, y)
        self.models[language] = model
        self.meta.setdefault("languages", {})[language] = out
        return out

    @staticmethod
    def _fit_stack(texts: list[str], y: np.ndarray, groups: list[str], feats: np.ndarray, chars: bool,
                   target_fpr: float, seed: int = 1) -> tuple[Stacker, dict[str, Any]]:
        """Out-of-fold text probabilities (inner grouped CV), the stacked model on them, and its threshold
        from a second inner CV of the stacked model: nothing here sees a probability of a model fitted on
        the same file."""
        folds, grouped = _inner_folds(y, groups, seed)
        oof = np.zeros(len(texts))
        for a, b in folds:
            oof[b] = _pipeline(chars).fit([texts[i] for i in a], y[a]).predict_proba([texts[i] for i in b])[:, 1]
        x = np.column_stack([_logit(oof), feats])
        inner = np.zeros(len(texts))
        for a, b in _inner_folds(y, groups, seed + 1)[0]:
            inner[b] = Stacker().fit(x[a], y[a]).predict(x[b])
        stacker = Stacker().fit(x, y)
        threshold = _fpr_threshold(inner, y, target_fpr)
        stacker.threshold = threshold
        return stacker, {"threshold": round(threshold, 4), "inner_folds": len(folds), "grouped": grouped,
                         "weights": stacker.weights(x.shape[1])}

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

    def combined(self, language: str, proba: np.ndarray, features: Sequence[Sequence[float]]) -> np.ndarray:
        """The verdict's score from the stacked model: text probabilities + `stack_features`, on the 0.7 scale."""
        x = np.column_stack([_logit(np.asarray(proba, dtype=np.float64)),
                             np.asarray(features, dtype=np.float64).reshape(len(proba), -1)])
        return self.stackers[language].score(x)

    def judge(self, language: str, text: str, features: Sequence[float], *, top: int = 5
              ) -> tuple[float, float, list[str]]:
        """(combined score, text probability, the words that pushed the text model most towards malicious)."""
        model = self.models[language]
        feats = model[0]
        tokens: list[str] | None = None
        if hasattr(feats, "steps"):  # words only (the default): tokenise once, for the vector and the names
            hv = feats.steps[0][1]
            tokens = hv.build_analyzer()(text[:_MAX_CHARS])
            x = feats.steps[1][1].transform(_single_hasher(hv.n_features).transform([tokens]))
        else:
            x = model[:-1].transform([text[:_MAX_CHARS]])
        p = float(model[-1].predict_proba(x)[0, 1])
        score = float(self.combined(language, np.array([p]), [list(features)])[0])
        return score, p, _top_tokens(model, x, text, top, tokens)

    def save(self, folder: str | os.PathLike[str], sources: Sequence[TrainingSet] = ()) -> Path:
        import joblib
        import sklearn

        missing = sorted(set(self.models) - set(self.stackers))
        if missing:
            raise InputError(f"cannot save: no stacked combination for {', '.join(missing)} (fit with stack=True)")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        self.meta.update(format=FORMAT, created=datetime.now(UTC).isoformat(timespec="seconds"),
                         sklearn=sklearn.__version__, sources=[s.__dict__ for s in sources])
        joblib.dump({"models": self.models, "stackers": self.stackers, "meta": self.meta}, out / "model.joblib")
        (out / "meta.json").write_text(json.dumps(self.meta, indent=2))
        (out / "MODEL_CARD.md").write_text(_card(self.meta))
        return out

    @staticmethod
    def problem(folder: str | os.PathLike[str]) -> str | None:
        """Why `folder` holds no model this version can use (None when it can), read from `meta.json`
        before anything is unpickled."""
        path = Path(folder)
        if not (path / "model.joblib").exists():
            return f"no model at {path / 'model.joblib'} (train one with `phago scan-train`)"
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            return f"{path}: no readable meta.json ({type(exc).__name__})"
        found = meta.get("format") if isinstance(meta, dict) else None
        if found != FORMAT:
            return (f"{path}: a {found or 'phagocyte-scan-model/1 (no stacked combination)'} model, this version "
                    f"reads {FORMAT}: retrain it (phago scan-train)")
        return None

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ScriptClassifier:
        import joblib

        why = cls.problem(folder)
        if why:
            raise InputError(why)
        blob = joblib.load(Path(folder) / "model.joblib")
        if not isinstance(blob, dict) or set(blob.get("models", {})) - set(blob.get("stackers", {})):
            raise InputError(f"{folder}: model.joblib lacks the stacked combination: retrain it (phago scan-train)")
        return cls(blob["models"], blob["meta"], blob["stackers"])


def _identity(doc: Any) -> Any:
    return doc


@functools.cache
def _single_hasher(n: int) -> Any:
    """Hashes lists of tokens exactly as the words HashingVectorizer hashes a text's tokens (same n, no sign)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(analyzer=_identity, n_features=n, alternate_sign=False, norm=None, dtype=np.float32)


def _top_tokens(model: Any, x: Any, text: str, top: int, tokens: list[str] | None = None) -> list[str]:
    """The words (or word pairs) whose TF-IDF x weight pushed the text model most towards malicious.

    The features are hashed, so names are recovered by hashing the text's own tokens as the
    HashingVectorizer does (one token per row) and keeping those that land on the top columns.
    Tokens without a letter or digit (`(`, `;`, `|`) weigh in the model but explain nothing to a
    reader: they are passed over for the next ones.
    """
    x = x.tocsr()
    coef = model[-1].coef_[0]
    contrib = x.data * coef[x.indices]
    order = [i for i in np.argsort(-contrib)[:top * 3] if contrib[i] > 0]
    if not order:
        return []
    feats = model[0]
    words = feats.steps[0][1] if hasattr(feats, "steps") else feats.transformer_list[0][1].steps[0][1]
    n = words.n_features
    wanted = {int(x.indices[i]): float(contrib[i]) for i in order if x.indices[i] < n}
    names: dict[int, str] = {}
    # most frequent tokens first, a batch at a time, until every wanted column has a name (usually the first
    # batch: a column weighs by its term frequency); then the rest of that batch only, for the shortest name
    counts = Counter(tokens if tokens is not None else words.build_analyzer()(text[:_MAX_CHARS]))
    ranked = [t for t, _ in counts.most_common()]
    for start in range(0, len(ranked), 256):
        batch = ranked[start:start + 256]
        cols = _single_hasher(n).transform([[t] for t in batch]).tocsr()
        for tok, a, b in zip(batch, cols.indptr[:-1], cols.indptr[1:], strict=True):
            col = int(cols.indices[a]) if b > a else -1
            if col in wanted and (col not in names or len(tok) < len(names[col])):
                names[col] = tok
        if len(names) == len(wanted):
            break
    return [f"{names[c]} (+{w:.2f})" for c, w in sorted(wanted.items(), key=lambda kv: -kv[1])
            if c in names and any(ch.isalnum() for ch in names[c])][:top]


def _card(meta: dict[str, Any]) -> str:
    lines = ["# Phagocyte script classifier — model card", "",
             "Word and word-pair TF-IDF (hashed, 2^20 features), with character 2-5-grams (`char_wb`, hashed, 2^20)",
             "beside them when `chars` is true, + logistic regression (class-balanced), one model per language,",
             "trained on the **deobfuscated** text of each script. The decision threshold (`threshold` below) was",
             "chosen on an inner 25 % split of the training data, grouped by near-duplicates (word TF-IDF cosine",
             ">= 0.9), as the lowest probability keeping false positives there at or under `target_fpr`.", "",
             "**Verdict score (stacked combination, format 2):** a logistic regression (standardised inputs,",
             "class-balanced, weights kept >= 0) on the text model's log-odds and the heuristics (one flag per",
             "rule, the obfuscation weight, log counts of decoding steps), fitted on the text model's",
             "out-of-fold probabilities from a 5-fold inner cross-validation of the training data grouped by",
             "near-duplicates; its threshold (`stack.threshold`) comes from a second inner cross-validation",
             "(<= `target_fpr` false positives) and is mapped onto the verdict's malicious cut 0.7.",
             "`stack.weights`: the text log-odds first, then the heuristic features.", "",
             f"- format: {meta.get('format')}",
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
