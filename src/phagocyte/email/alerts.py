"""A phishing verdict as an ECS alert for triage: the message's indicators become its entities."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from phagocyte.alerts import make_alert

__all__ = ["verdict_to_alert"]

# Phishing (T1566): attachment, link; plus user execution when an executable or macro is attached.
_TECHNIQUES = {"attachment": "T1566.001", "url": "T1566.002"}
_EXECUTION = {"attachment_executable", "attachment_office_macro", "attachment_double_extension", "html_smuggling"}


def _level(score: float, label: str) -> str:
    if label != "phishing":
        return "low" if label == "spam" else "informational"
    return "critical" if score >= 0.95 else "high" if score >= 0.75 else "medium"


def _when(date: str) -> datetime | None:
    try:
        dt = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError, IndexError):
        return None
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def verdict_to_alert(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """ECS alert dict from `Verdict.to_dict()`: url.*, source.ip, related.*, file.*, email sender as user."""
    ind = verdict.get("indicators", {})
    reasons = verdict.get("reasons", [])
    codes = [r["code"] for r in reasons]
    cats = {r["category"] for r in reasons}
    techniques = [t for c, t in _TECHNIQUES.items() if c in cats] or ["T1566"]
    if _EXECUTION & set(codes):
        techniques.append("T1204.002")
    atts = ind.get("attachments", [])
    sender = ind.get("sender", {})
    rcpt = ind.get("recipients", [])
    hosts = list(dict.fromkeys(ind.get("domains", []) + [h["from"] for h in sender.get("received", []) if h["from"]]))
    fields: dict[str, Any] = {
        "url.full": ind["urls"][0] if ind.get("urls") else None,
        "url.domain": ind["domains"][0] if ind.get("domains") else None,
        "source.ip": sender.get("origin_ip") or None,
        "related.ip": ind.get("ips") or None,
        "related.hosts": hosts[:50] or None,
        "related.hash": [h for a in atts for h in (a["sha256"], a["md5"])][:50] or None,
        "related.user": [u for u in (sender.get("from"), sender.get("reply_to"), *rcpt) if u][:50] or None,
        "file.name": atts[0]["name"] if atts and atts[0].get("name") else None,
        "file.hash.sha256": atts[0]["sha256"] if atts else None,
        # the user at risk is the recipient (its mailbox name, as directory logons name it); the sender
        # and every recipient address stay in related.user
        "user.name": rcpt[0].split("@", 1)[0] if len(rcpt) == 1 else None,
        "log.file.path": verdict.get("path") or None,
        "event.dataset": "email.verdict",
        "event.category": ["email", "threat"],
        "event.type": ["indicator"],
    }
    top = "; ".join(f"{r['code']}: {', '.join(map(str, r['evidence'][:1]))}" for r in reasons[:3])
    return make_alert(
        source="email",
        rule_id=f"email-{verdict['label']}",
        rule_name=f"E-mail judged {verdict['label']}",
        level=_level(float(verdict["score"]), verdict["label"]),
        timestamp=_when(verdict.get("date", "")),
        techniques=techniques,
        tactics=["initial-access"] + (["execution"] if "T1204.002" in techniques else []),
        description=top[:1000],
        ruleset="phagocyte-email",
        message=f"{verdict['label']} ({float(verdict['score']):.2f}): {verdict.get('subject', '')[:200]}",
        risk_score=round(float(verdict["score"]) * 100, 1),
        fields=fields,
    )
