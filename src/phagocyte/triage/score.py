"""The risk model: a logistic regression over group features, stored as plain JSON.

Why a linear model: each feature's contribution (coefficient × standardised value) is the reason
an analyst reads next to the score, and the whole model is a few numbers in `model.json` (no
pickle: loading a model never runs code). Dispositions are conservative by construction: a group
whose rule has no verdicts behind it, or whose probability sits between the thresholds, is
deferred to a human; only a well-supported, clearly benign group is auto-closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phagocyte.triage.features import BASE_FEATURES, FEATURE_TEXT, FEATURES, GroupFeatures, host_context
from phagocyte.triage.suppress import SuppressionConfig

__all__ = ["AUTO_CLOSE", "DEFER", "ESCALATE", "MONITOR", "RiskModel", "Thresholds", "disposition"]

ESCALATE, MONITOR, AUTO_CLOSE, DEFER = "escalate", "monitor", "auto_close", "defer"
MODEL_FILE = "model.json"
TRAIN_FILE = "train.npz"


@dataclass(frozen=True)
class Thresholds:
    """Fixed a priori (never tuned on the data a figure is reported for)."""

    escalate: float = 0.5
    """Probability of attack at or above which a group is escalated."""
    monitor: float = 0.2
    """Below this a group is not worth a human's time now (monitor)."""
    auto_close: float = 0.02
    """Below this, with enough verdicts behind its rule, a group is closed automatically."""
    min_support: int = 20
    """Verdicts on a rule needed before any of its groups may be auto-closed or monitored."""


@dataclass
class _Linear:
    """A standardised logistic regression: p = σ(((x − mean) / std) · coef + intercept)."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> _Linear:
        from sklearn.linear_model import LogisticRegression

        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std = np.where(std > 1e-9, std, 1.0)
        lr = LogisticRegression(C=1.0, max_iter=2000)
        lr.fit((X - mean) / std, y)
        return cls(lr.coef_[0].astype(float), float(lr.intercept_[0]), mean, std)

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = ((X - self.mean) / self.std) @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "intercept": self.intercept, "mean": self.mean.tolist(),
                "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Linear:
        return cls(np.asarray(d["coef"], float), float(d["intercept"]), np.asarray(d["mean"], float),
                   np.asarray(d["std"], float))


@dataclass
class RiskModel:
    """Two logistic stages: `first` on the group's own features; the final one (`coef`, …) adds
    `host_risk`, the first-stage risk of the host's other groups nearby."""

    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    std: np.ndarray
    first: _Linear
    rule_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    """rule → (attack verdicts, noise verdicts), counted in groups."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    suppression: SuppressionConfig = field(default_factory=SuppressionConfig)
    verdicts: int = 0
    """Labelled groups (analyst verdicts) the model has consumed."""
    trained_on: list[str] = field(default_factory=list)
    proposals: list[dict[str, Any]] = field(default_factory=list)
    context_stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    """`context_key(rule)` → (attack, noise) verdicts on the rule's *lone* groups (`lone_prior`)."""

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, rule_stats: Mapping[str, tuple[float, float]],
            **kw: Any) -> RiskModel:
        """Fit the final stage on labelled groups (y = 1 attack, 0 noise); X = `full_features` with
        the `first` stage given in `kw`. Unweighted, so probabilities stay calibrated: ≥ 0.5 means
        an attack is more likely than noise."""
        if len(np.unique(y)) < 2:
            raise ValueError("training needs both attack and noise verdicts")
        second = _Linear.fit(X, y)
        first = kw.pop("first")
        return cls(second.coef, second.intercept, second.mean, second.std, first, dict(rule_stats),
                   verdicts=len(y), **kw)

    @staticmethod
    def fit_first(Xb: np.ndarray, y: np.ndarray) -> _Linear:
        if len(np.unique(y)) < 2:
            raise ValueError("training needs both attack and noise verdicts")
        return _Linear.fit(Xb, y)

    def full_features(self, feats: GroupFeatures) -> np.ndarray:
        """Base features plus the second-stage `host_risk` column."""
        return full_features(self.first, feats)

    @classmethod
    def untrained(cls) -> RiskModel:
        """A model without verdicts: every group is unseen, so everything goes to a human."""
        n, nb = len(FEATURES), len(BASE_FEATURES)
        unsure = float(np.log(0.3 / 0.7))  # p = 0.3: neither escalated nor closed
        return cls(np.zeros(n), unsure, np.zeros(n), np.ones(n),
                   _Linear(np.zeros(nb), unsure, np.zeros(nb), np.ones(nb)))

    def logits(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(((X - self.mean) / self.std) @ self.coef + self.intercept)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(self.logits(X), -50, 50))))

    def reasons(self, x: np.ndarray, top: int = 3) -> list[str]:
        """The features that pushed one group's score up the most, in words."""
        contrib = (x - self.mean) / self.std * self.coef
        order = np.argsort(-contrib)
        return [f"{FEATURE_TEXT[FEATURES[i]]} (+{contrib[i]:.2f})" for i in order[:top] if contrib[i] > 0]

    def save(self, folder: str | Path, X: np.ndarray | None = None, y: np.ndarray | None = None) -> Path:
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": "phagocyte-triage-model/2", "features": list(FEATURES),
            "coef": self.coef.tolist(), "intercept": self.intercept, "mean": self.mean.tolist(),
            "std": self.std.tolist(), "first": self.first.to_dict(),
            "rule_stats": {k: list(v) for k, v in sorted(self.rule_stats.items())},
            "context_stats": {k: list(v) for k, v in sorted(self.context_stats.items())},
            "thresholds": self.thresholds.__dict__, "suppression": self.suppression.to_dict(),
            "verdicts": self.verdicts, "trained_on": self.trained_on, "proposals": self.proposals,
        }
        (d / MODEL_FILE).write_text(json.dumps(doc, indent=1))
        if X is not None and y is not None:
            np.savez_compressed(d / TRAIN_FILE, X=X, y=y)
        return d / MODEL_FILE

    @classmethod
    def load(cls, folder: str | Path) -> RiskModel:
        path = Path(folder) / MODEL_FILE
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"no readable triage model at {path}: {exc}") from exc
        if doc.get("format") != "phagocyte-triage-model/2" or doc.get("features") != list(FEATURES):
            raise ValueError(f"{path} is not a model of this version (features differ): run `phago triage learn`")
        return cls(np.asarray(doc["coef"], float), float(doc["intercept"]), np.asarray(doc["mean"], float),
                   np.asarray(doc["std"], float), _Linear.from_dict(doc["first"]),
                   {k: (float(v[0]), float(v[1])) for k, v in doc["rule_stats"].items()},
                   Thresholds(**doc.get("thresholds", {})), SuppressionConfig.from_dict(doc.get("suppression", {})),
                   int(doc.get("verdicts", 0)), list(doc.get("trained_on", [])), list(doc.get("proposals", [])),
                   {k: (float(v[0]), float(v[1])) for k, v in doc.get("context_stats", {}).items()})

    @staticmethod
    def training_set(folder: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
        p = Path(folder) / TRAIN_FILE
        if not p.exists():
            return None
        with np.load(p, allow_pickle=False) as z:
            return z["X"], z["y"]


def full_features(first: _Linear, feats: GroupFeatures) -> np.ndarray:
    """Base features plus `host_risk` from a first stage."""
    p1 = first.predict(feats.X) if len(feats.X) else np.zeros(0)
    hr = host_context(p1, feats.host_code, feats.start, feats.end)
    return np.column_stack([feats.X, hr]) if len(feats.X) else np.zeros((0, len(FEATURES)))


def disposition(p: np.ndarray, support: np.ndarray, th: Thresholds) -> np.ndarray:
    """escalate / defer / monitor / auto_close per group. Unseen (no verdicts on the rule) or unsure
    → defer (a human decides); auto_close only when clearly benign AND well supported."""
    out = np.full(len(p), DEFER, dtype=object)
    known = support >= th.min_support
    out[p >= th.escalate] = ESCALATE
    out[known & (p < th.monitor)] = MONITOR
    out[known & (p < th.auto_close)] = AUTO_CLOSE
    return out
