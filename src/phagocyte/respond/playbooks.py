"""Playbooks in YAML: a trigger on incident fields and a list of steps. Validated strictly (pydantic).

```yaml
name: block-external-attacker
description: Tell the SOC, export indicators, block the attacking address.
trigger: {disposition: [escalate], min_score: 0.5, tactics_any: [Credential Access], entities_any: [source.ip]}
steps:
  - {id: intel, action: enrich}
  - {id: tell, action: notify, with: {channel: webhook, url: "https://hooks.example.org/soc"}}
  - {id: stix, action: export, with: {format: stix}}
  - {id: block, action: contain, with: {kind: firewall, backend: nftables, entity: source.ip}}
```
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phagocyte import safeyaml

__all__ = ["BUILTIN_DIR", "DESTRUCTIVE", "Playbook", "Step", "Trigger", "load_playbooks"]

BUILTIN_DIR = Path(__file__).parent / "playbooks"
DESTRUCTIVE = frozenset({"contain"})
"""Actions that change something outside Phagocyte and need an analyst's approval."""
MAX_PLAYBOOK_BYTES = 256 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Disposition = Literal["escalate", "monitor", "auto_close"]


class Trigger(_Strict):
    disposition: list[Disposition] = Field(default_factory=lambda: list[Disposition](["escalate"]))
    min_score: float = 0.0
    tactics_any: list[str] = Field(default_factory=list)
    entities_any: list[str] = Field(default_factory=list)

    def matches(self, incident: dict[str, Any]) -> bool:
        if incident.get("disposition") not in self.disposition or float(incident.get("score") or 0) < self.min_score:
            return False
        tactics = {str(t).lower() for t in incident.get("tactics") or []}
        if self.tactics_any and not tactics & {t.lower() for t in self.tactics_any}:
            return False
        ents = incident.get("entities") or {}
        return not self.entities_any or any(ents.get(e) for e in self.entities_any)


class Step(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    action: Literal["enrich", "notify", "export", "contain"]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")

    @property
    def destructive(self) -> bool:
        return self.action in DESTRUCTIVE


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,60}$")
    description: str = ""
    trigger: Trigger = Field(default_factory=Trigger)
    steps: list[Step] = Field(min_length=1)
    version: str = ""
    """SHA-256 prefix of the file: a changed playbook is a new version, so runs are idempotent per version."""

    @property
    def destructive(self) -> bool:
        return any(s.destructive for s in self.steps)


def load_playbooks(dirs: list[Path]) -> tuple[dict[str, Playbook], list[str]]:
    """Playbooks from `*.yml`/`*.yaml` in `dirs` (later folders override earlier names) and one error
    line per file that could not be loaded; the others still load."""
    books: dict[str, Playbook] = {}
    errors: list[str] = []
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted([*d.glob("*.yml"), *d.glob("*.yaml")]):
            try:
                raw = f.read_bytes()
                doc = safeyaml.load(raw, max_bytes=MAX_PLAYBOOK_BYTES)
                if not isinstance(doc, dict):
                    raise ValueError("not a YAML mapping")
                doc["version"] = hashlib.sha256(raw).hexdigest()[:16]
                pb = Playbook.model_validate(doc)
            except (OSError, ValueError, yaml.YAMLError, ValidationError) as exc:
                errors.append(f"{f}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
            books[pb.name] = pb
    return books, errors
