"""One verdict per analysed file, script block or command line, and its alert.

Why a score and reasons together: triage ranks by score, but an analyst acts on reasons; every
heuristic, YARA rule or model that moved the score leaves a reason with its weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from phagocyte.alerts import alert_id, make_alert

__all__ = ["MALICIOUS", "SUSPICIOUS", "Reason", "Verdict", "combine", "label_for"]

MALICIOUS = 0.7
SUSPICIOUS = 0.4


def label_for(score: float) -> str:
    return "malicious" if score >= MALICIOUS else "suspicious" if score >= SUSPICIOUS else "clean"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why the score moved: `source` is `heuristic`, `yara`, `model`, `office`, `pdf`, `pe`, `elf`."""

    source: str
    name: str
    weight: float
    detail: str = ""
    techniques: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" + (f" ({self.detail})" if self.detail else "")


def combine(weights: list[float]) -> float:
    """Noisy-OR of independent pieces of evidence: many weak signs add up, none exceeds 1."""
    p = 1.0
    for w in weights:
        p *= 1.0 - min(max(w, 0.0), 1.0)
    return 1.0 - p


@dataclass(slots=True)
class Verdict:
    path: str
    kind: str
    """What the input was taken for: `powershell`, `javascript`, `vba`, `office`, `pdf`, `pe`, ..."""
    score: float = 0.0
    reasons: list[Reason] = field(default_factory=list)
    indicators: dict[str, list[str]] = field(default_factory=dict)
    deobfuscated: str | None = None
    layers: list[str] = field(default_factory=list)
    """Names of the decoding steps applied, in order (`base64`, `gzip`, `char-array`, `iex`...)."""
    sha256: str | None = None
    size: int = 0
    errors: list[str] = field(default_factory=list)
    """Limits hit and parts that could not be read: the analysis went on without them."""
    stacked: bool = False
    """The `model` reason is a stacked score over the heuristics: they explain but no longer add (`rescore`)."""

    @property
    def label(self) -> str:
        return label_for(self.score)

    def add(self, reason: Reason) -> None:
        if all((r.source, r.name) != (reason.source, reason.name) for r in self.reasons):
            self.reasons.append(reason)

    def rescore(self, model_score: float | None = None) -> None:
        """Score = noisy-OR of the reasons' weights; a model probability, when given, counts as one more.

        When `stacked`, the `model` reason's weight is a stacked score that already weighs the heuristics, so
        `heuristic` reasons stay as explanation but leave the noisy-OR (counting them twice raised false
        positives); YARA and file-analyser reasons still add."""
        skip = {"heuristic"} if self.stacked and any(r.source == "model" for r in self.reasons) else set()
        weights = [r.weight for r in self.reasons if r.source not in skip]
        if model_score is not None:
            weights.append(model_score)
        self.score = round(combine(weights), 4)

    @property
    def techniques(self) -> list[str]:
        seen: list[str] = []
        for r in self.reasons:
            seen.extend(t for t in r.techniques if t not in seen)
        return seen

    def to_json(self, *, text_limit: int = 65536) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "score": self.score,
            "kind": self.kind,
            "reasons": [str(r) for r in sorted(self.reasons, key=lambda r: -r.weight)],
            "indicators": self.indicators,
            "sha256": self.sha256,
            "size": self.size,
        }
        if self.techniques:
            out["techniques"] = self.techniques
        if self.layers:
            out["layers"] = self.layers
        if self.deobfuscated is not None:
            out["deobfuscated"] = self.deobfuscated[:text_limit]
            if len(self.deobfuscated) > text_limit:
                out["deobfuscated_truncated"] = True
        if self.errors:
            out["errors"] = self.errors
        return out

    def to_alert(self, event: Mapping[str, Any] | None = None, *, timestamp: datetime | None = None
                 ) -> dict[str, Any]:
        """The verdict as a `scan` alert (for triage), on the event it was found in when there is one.

        A file's alert (no event) is referenced by its path (`log.file.path`) and identified by path
        and content: the same file judged again is the same alert, another file or a changed one a
        new one (the verdict's message alone is not unique)."""
        top = sorted(self.reasons, key=lambda r: -r.weight)
        level = "high" if self.label == "malicious" else "medium" if self.label == "suspicious" else "low"
        fields: dict[str, Any] = {
            "related.ip": self.indicators.get("ip") or None,
            "related.hosts": self.indicators.get("domain") or None,
            "related.hash": ([self.sha256] if self.sha256 else []) + self.indicators.get("hash", []) or None,
        }
        if event is None:
            fields.update({"file.path": self.path, "file.hash.sha256": self.sha256, "log.file.path": self.path})
        if self.indicators.get("url"):
            fields["url.full"] = self.indicators["url"][0]
        rule_id = f"scan.{self.kind}.{self.label}"
        alert = make_alert(
            source="scan",
            rule_id=rule_id,
            rule_name=f"{self.label.capitalize()} {self.kind} code",
            level=level,
            event=event,
            techniques=self.techniques,
            description="; ".join(str(r) for r in top[:5]) or None,
            ruleset="phagocyte-scan",
            message=f"{self.label} {self.kind} ({self.score:.2f}): " + ", ".join(r.name for r in top[:3]),
            risk_score=round(self.score * 100, 1),
            fields=fields,
            timestamp=timestamp,
        )
        if event is None:
            alert["event.id"] = alert_id("scan", rule_id, f"{self.path}|{self.sha256}")
        return alert
