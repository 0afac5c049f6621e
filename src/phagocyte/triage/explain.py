"""Explanation: the plain-language paragraph an analyst reads first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from phagocyte.attack import tactic

__all__ = ["iso", "summary"]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def summary(*, disposition: str, deferred: bool, n_alerts: int, n_groups: int, rules: Sequence[tuple[str, int]],
            hosts: Sequence[str], tactics: Sequence[str], first: float, last: float, score: float,
            reasons: Sequence[str]) -> str:
    """One paragraph: what happened, where, when, how it progressed, and why this disposition."""
    minutes = (last - first) / 60
    span = f"{minutes:.0f} minutes" if minutes < 120 else f"{minutes / 60:.1f} hours"
    top = ", ".join(f"{name} ({n:,}×)" for name, n in rules[:3])
    more = f" and {len(rules) - 3} more rule(s)" if len(rules) > 3 else ""
    where = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "") or "unknown hosts"
    names = [t.name for tid in tactics if (t := tactic(tid)) is not None]
    chain = f" Tactics in kill-chain order: {' → '.join(names)}." if names else ""
    verdict = {
        "escalate": "Escalated to an analyst" if not deferred else
        "Deferred to an analyst because the model has too few verdicts on it or is unsure",
        "monitor": "Kept for monitoring (low risk, not closed)",
        "auto_close": "Closed automatically as routine noise well known from past verdicts",
    }[disposition]
    why = f" Main reasons: {'; '.join(reasons[:3])}." if reasons else ""
    return (f"{n_alerts:,} alert(s) in {n_groups:,} group(s) on {where} between {iso(first)} and {iso(last)} "
            f"({span}): {top}{more}.{chain} {verdict} (score {score:.2f}).{why}")
