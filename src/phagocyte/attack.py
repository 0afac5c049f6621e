"""MITRE ATT&CK (Enterprise) tactics in kill-chain order, and parsing of Sigma-style ATT&CK tags.

Why here and not in `detect` or `triage`: Sigma rules, imported alerts (Suricata, Wazuh), the
e-mail and script analysers and triage's tactic progression all speak the same ATT&CK ids, so
they share one table. Tactic order matters to triage: a chain that moves forward in this order on
related entities weighs more than many alerts of one tactic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TACTICS", "Tactic", "attack_from_tags", "tactic", "tactic_rank"]


@dataclass(frozen=True, slots=True)
class Tactic:
    """One ATT&CK tactic: its id, the short name used in Sigma tags, its display name."""

    id: str
    short: str
    name: str


TACTICS: tuple[Tactic, ...] = (
    Tactic("TA0043", "reconnaissance", "Reconnaissance"),
    Tactic("TA0042", "resource-development", "Resource Development"),
    Tactic("TA0001", "initial-access", "Initial Access"),
    Tactic("TA0002", "execution", "Execution"),
    Tactic("TA0003", "persistence", "Persistence"),
    Tactic("TA0004", "privilege-escalation", "Privilege Escalation"),
    Tactic("TA0005", "defense-evasion", "Defense Evasion"),
    Tactic("TA0006", "credential-access", "Credential Access"),
    Tactic("TA0007", "discovery", "Discovery"),
    Tactic("TA0008", "lateral-movement", "Lateral Movement"),
    Tactic("TA0009", "collection", "Collection"),
    Tactic("TA0011", "command-and-control", "Command and Control"),
    Tactic("TA0010", "exfiltration", "Exfiltration"),
    Tactic("TA0040", "impact", "Impact"),
)

_BY_KEY: dict[str, Tactic] = {}
for _t in TACTICS:
    for _k in (_t.id, _t.short, _t.name, _t.short.replace("-", "_"), _t.name.lower()):
        _BY_KEY[_k.lower()] = _t
_RANK = {t.id: i for i, t in enumerate(TACTICS)}
_TECHNIQUE = re.compile(r"^t\d{4}(?:\.\d{3})?$", re.IGNORECASE)


def tactic(key: str) -> Tactic | None:
    """The tactic named by an id (`TA0006`), a Sigma short name (`credential-access`/`credential_access`)
    or its display name; None when it names none."""
    return _BY_KEY.get(key.strip().lower())


def tactic_rank(key: str) -> int:
    """Kill-chain position of a tactic (0 = reconnaissance), -1 when unknown."""
    t = tactic(key)
    return _RANK[t.id] if t else -1


def attack_from_tags(tags: Iterable[str]) -> tuple[list[str], list[Tactic]]:
    """Technique ids (upper case, `T1059.001`) and tactics named by Sigma tags such as `attack.t1059.001`
    and `attack.execution`, in order of first appearance, without duplicates.

    Tags of other namespaces (`cve.*`, `detection.*`, `attack.g0016` groups, `attack.s0002` software)
    are not techniques or tactics and are ignored.
    """
    techniques: list[str] = []
    tactics: list[Tactic] = []
    for raw in tags:
        tag = raw.strip().lower()
        if not tag.startswith("attack."):
            continue
        name = tag[len("attack.") :]
        if _TECHNIQUE.match(name):
            tid = name.upper()
            if tid not in techniques:
                techniques.append(tid)
        elif (t := tactic(name)) is not None and t not in tactics:
            tactics.append(t)
    return techniques, tactics
