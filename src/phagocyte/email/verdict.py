"""`analyse`: one message's bytes -> a `Verdict` (label, score, reasons with evidence, indicators).

Without a model the score is the noisy-OR of the signal weights (each signal is an independent
chance that the message is phishing). With a model the score is the model's probability of
`phishing`, the signals being among its features; a few signals no legitimate message carries
(executables, macros, HTML smuggling, credential forms, PDF launch actions) keep a floor of 0.75
whatever the model says, because a model trained on one team's mail may never have seen them.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from phagocyte.email.domains import host_facts, url_host
from phagocyte.email.parse import EmailLimits, ParsedMessage, parse_message
from phagocyte.email.signals import Reason, collect, message_urls

__all__ = ["CRITICAL", "PHISHING_THRESHOLD", "SPAM_THRESHOLD", "Verdict", "analyse"]

PHISHING_THRESHOLD = 0.5
SPAM_THRESHOLD = 0.3
"""Signal-only verdicts: a score in [0.3, 0.5) is `spam` (suspicious, not clearly phishing)."""
CRITICAL = frozenset({"attachment_executable", "attachment_double_extension", "attachment_office_macro",
                      "html_smuggling", "html_credential_form", "attachment_pdf_launch"})
CRITICAL_FLOOR = 0.75
_IP = re.compile(r"[\[(]([0-9a-fA-F:.]{3,45})[\])]")


@dataclass
class Verdict:
    path: str
    label: str
    score: float
    reasons: list[Reason]
    indicators: dict[str, Any]
    subject: str = ""
    message_id: str = ""
    date: str = ""
    probabilities: dict[str, float] | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "label": self.label, "score": round(self.score, 4),
                             "reasons": [r.to_dict() for r in self.reasons], "indicators": self.indicators,
                             "subject": self.subject, "message_id": self.message_id, "date": self.date,
                             "problems": self.problems}
        if self.probabilities is not None:
            d["probabilities"] = {k: round(v, 4) for k, v in self.probabilities.items()}
        return d


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _public_ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(ip) if ip.is_global else None


def indicators(pm: ParsedMessage, attachments: list[dict[str, object]]) -> dict[str, Any]:
    """URLs, domains, IPs, the sender chain and attachments of a message (for the analyst and the alert)."""
    urls = message_urls(pm)
    hosts = [url_host(u) for u in urls]
    domains = list(dict.fromkeys(host_facts(h).domain for h in hosts if h and not host_facts(h).ip_literal))
    ips = list(dict.fromkeys(h for h in hosts if h and host_facts(h).ip_literal))
    chain = []
    for hop in pm.get_all("received")[:30]:
        m = re.match(r"from\s+(\S+)", hop, re.I)
        ip = next((i.group(1) for i in _IP.finditer(hop.split(" by ", 1)[0]) if _valid_ip(i.group(1))), "")
        chain.append({"from": m.group(1)[:255] if m else "", "ip": ip})
    public = [ip for ip in (_public_ip(h["ip"]) for h in chain) if ip]
    ips.extend(ip for ip in dict.fromkeys(public) if ip not in ips)
    from_name, from_addr = pm.address("from")
    recipients = [a.lower() for _, a in email.utils.getaddresses(pm.get_all("to") + pm.get_all("cc"))
                  if "@" in a][:50]
    return {
        "urls": urls[:100],
        "domains": domains[:100],
        "ips": ips[:50],
        "sender": {"from": from_addr, "from_name": from_name, "reply_to": pm.address("reply-to")[1],
                   "return_path": pm.address("return-path")[1], "received": chain,
                   "origin_ip": public[-1] if public else ""},
        "attachments": attachments,
        "recipients": list(dict.fromkeys(recipients)),
    }


def analyse(raw: bytes, path: str = "", model: Any = None, limits: EmailLimits | None = None) -> Verdict:
    """The verdict on one raw message. Never raises on bad input: problems are listed in the verdict."""
    try:
        pm = parse_message(raw, limits)
        reasons, atts = collect(pm)
    except Exception as exc:  # process edge: a parser bug must not end a run over a whole mailbox
        pm = ParsedMessage(problems=[f"message could not be analysed: {type(exc).__name__}: {str(exc)[:200]}"])
        reasons, atts = [], []
    probs: dict[str, float] | None = None
    if model is None:
        miss = 1.0
        for r in reasons:
            miss *= 1.0 - r.weight
        score = 1.0 - miss
        label = "phishing" if score >= PHISHING_THRESHOLD else "spam" if score >= SPAM_THRESHOLD else "clean"
    else:
        from phagocyte.email.model import columns, features

        pairs = features(pm, reasons)
        cols_vals = columns(pairs)
        p = model.proba_one(cols_vals)
        probs = {cl: float(p[i]) for i, cl in enumerate(model.classes)}
        score = probs.get("phishing", 0.0)
        others = {k: v for k, v in probs.items() if k != "phishing"}
        label = "phishing" if score >= PHISHING_THRESHOLD else max(others, key=lambda k: others[k])
        top = model.explain(pairs, "phishing" if label != "clean" else "clean", cols_vals=cols_vals)
        reasons.append(Reason("model", "model", round(score, 4),
                              f"the trained model ({', '.join(model.classes)}) rates it {label} ({score:.2f})", top))
    critical = [r.code for r in reasons if r.code in CRITICAL]
    if critical and score < CRITICAL_FLOOR:
        score = CRITICAL_FLOOR
        label = "phishing"
        reasons.append(Reason("critical_floor", "policy", CRITICAL_FLOOR,
                              "a signal no legitimate mail carries keeps the score at 0.75 or more", critical))
    reasons.sort(key=lambda r: -r.weight)
    return Verdict(path=path, label=label, score=float(score), reasons=reasons, indicators=indicators(pm, atts),
                   subject=pm.subject[:500], message_id=pm.get("message-id")[:500], date=pm.get("date")[:100],
                   probabilities=probs, problems=pm.problems)
