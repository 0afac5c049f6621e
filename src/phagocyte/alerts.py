"""The one alert model: an ECS record with `event.kind: alert`, whatever raised it.

Sigma detection, imported tool alerts (Suricata EVE, Wazuh, AIT-ADS), the e-mail and script
analysers all produce the same flat dotted ECS dict (the columns of `phagocyte.schema`), so
triage, the store, the API and the reports read one shape. An alert raised on an event copies that
event's fields (host, user, process, addresses, `log.file.path`, `log.file.line`,
`winlog.record_id`) so it can be checked against the raw log, and points back to it with
`event.reference` (the event's `event.id`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import pyarrow as pa

from phagocyte.attack import Tactic, attack_from_tags, tactic
from phagocyte.schema import EVENT_SCHEMA, FIELD_TYPES, conform

__all__ = [
    "LEVELS",
    "AlertRef",
    "alert_id",
    "alerts_to_table",
    "iso_utc",
    "json_fields",
    "level_from_severity",
    "level_rank",
    "make_alert",
    "to_json",
]

LEVELS: tuple[str, ...] = ("informational", "low", "medium", "high", "critical")
_LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}

# Fields of the matched event that belong to that event, not to the alert raised on it.
_EVENT_ONLY = {"event.id", "event.kind", "event.original", "event.ingested", "rule.id", "rule.name",
               "rule.category", "rule.level", "rule.description", "rule.ruleset", "event.risk_score"}


def level_rank(level: str | None) -> int:
    """0 (informational) … 4 (critical); -1 for an unknown or missing level."""
    return _LEVEL_RANK.get((level or "").strip().lower(), -1)


def level_from_severity(scale: str, value: int | None) -> str | None:
    """Map a tool's numeric severity onto the Sigma levels.

    `suricata`: 1 (high) … 4 (low); `wazuh`: rule level 0–15; `cvss`: 0–10.
    """
    if value is None:
        return None
    if scale == "suricata":
        return {1: "high", 2: "medium", 3: "low"}.get(value, "informational")
    if scale == "wazuh":
        return ("informational" if value < 3 else "low" if value < 7 else "medium" if value < 10
                else "high" if value < 13 else "critical")
    if scale == "cvss":
        return ("informational" if value == 0 else "low" if value < 4 else "medium" if value < 7
                else "high" if value < 9 else "critical")
    raise ValueError(f"unknown severity scale {scale!r}")


@dataclass(frozen=True, slots=True)
class AlertRef:
    """Where an alert came from: `<file name>:<line>` for text sources, `<file name>:<record>` for EVTX."""

    file: str
    line: int | None = None
    record: int | None = None

    def __str__(self) -> str:
        name = _file_name(self.file)
        pos = self.line if self.line is not None else self.record
        return f"{name}:{pos}" if pos is not None else name

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> AlertRef | None:
        """The reference of an ECS record (event or alert), None without a source file."""
        path = record.get("log.file.path")
        if not path:
            return None
        return cls(str(path), record.get("log.file.line"), record.get("winlog.record_id"))


@functools.lru_cache(maxsize=4096)
def _file_name(path: str) -> str:
    """The file name of a source path (of the member, for `archive!member`); cached: thousands of
    alerts of one hunt share a few hundred files."""
    return PurePath(path.rsplit("!", 1)[-1]).name


def alert_id(source: str, rule_id: str, reference: str) -> str:
    """Deterministic alert id: the same rule on the same event is the same alert, run after run."""
    return hashlib.blake2b(f"{source}\0{rule_id}\0{reference}".encode(), digest_size=12).hexdigest()


def make_alert(
    *,
    source: str,
    rule_id: str,
    rule_name: str,
    level: str | None,
    timestamp: datetime | None = None,
    event: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    techniques: Sequence[str] = (),
    tactics: Sequence[str | Tactic] = (),
    description: str | None = None,
    ruleset: str | None = None,
    message: str | None = None,
    risk_score: float | None = None,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one alert as a flat ECS dict.

    `source` names the detector (`sigma`, `suricata`, `wazuh`, `ait-ads`, `email`, `scan`, ...); it
    becomes `event.module` unless the matched event has one and `observer.product` is empty.
    `tags` may carry Sigma-style ATT&CK tags (`attack.t1003.001`, `attack.credential-access`);
    they are merged with `techniques` and `tactics`. `fields` adds or overrides ECS fields
    (entities of an analyser verdict, for instance); a name outside the schema raises.
    """
    alert: dict[str, Any] = (
        {k: v for k, v in event.items() if v is not None and k not in _EVENT_ONLY} if event else {})
    if fields:
        unknown = set(fields) - FIELD_TYPES.keys()
        if unknown:
            raise ValueError(f"fields not in the event schema: {sorted(unknown)}")
        alert.update((k, v) for k, v in fields.items() if v is not None)
    tech, tac = attack_from_tags(tags)
    for tid in techniques:
        if tid.upper() not in tech:
            tech.append(tid.upper())
    for t in tactics:
        resolved = t if isinstance(t, Tactic) else tactic(t)
        if resolved is not None and resolved not in tac:
            tac.append(resolved)
    reference = str(event.get("event.id")) if event and event.get("event.id") else None
    ts = timestamp or (event.get("@timestamp") if event else None)
    # The alert's own fields replace the event's; one without a value removes the event's (an
    # alert never holds None: set or popped here, not filtered out of every field afterwards).
    for k, v in (
        ("@timestamp", ts),
        ("event.id", alert_id(source, rule_id, reference or f"{ts}|{message or ''}|{alert.get('log.file.path')}"
                              f"|{alert.get('log.file.line')}|{alert.get('winlog.record_id')}")),
        ("event.kind", "alert"),
        ("event.reference", reference),
        ("rule.id", rule_id),
        ("rule.name", rule_name),
        ("rule.level", level),
        ("rule.description", description),
        ("rule.ruleset", ruleset),
        ("threat.technique.id", tech or None),
        ("threat.tactic.id", [t.id for t in tac] or None),
        ("threat.tactic.name", [t.name for t in tac] or None),
        ("event.risk_score", risk_score),
    ):
        if v is None:
            alert.pop(k, None)
        else:
            alert[k] = v
    alert.setdefault("event.module", source)
    if message is not None:
        alert["message"] = message
    return alert


def alerts_to_table(alerts: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Arrow table with the event schema (for the store) from alert dicts."""
    rows = list(alerts)
    columns = {f.name: [r.get(f.name) for r in rows] for f in EVENT_SCHEMA if any(f.name in r for r in rows)}
    table = pa.table({name: pa.array(values, type=FIELD_TYPES[name]) for name, values in columns.items()}) \
        if columns else pa.table({"event.kind": pa.array([None] * len(rows), pa.string())})
    return conform(table)


def iso_utc(ts: datetime) -> str:
    """ISO 8601 in UTC with `Z` (a naive time is taken as UTC)."""
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_fields(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The fields `to_json` writes (nulls dropped, plus `alert_ref`), times not converted yet: an
    encoder can convert them as it meets them (`cli.detect` writes JSON lines with orjson)."""
    out = {k: v for k, v in alert.items() if v is not None}
    ref = AlertRef.of(alert)
    if ref is not None:
        out["alert_ref"] = str(ref)
    return out


def to_json(alert: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-ready copy: timestamps as ISO 8601 UTC with `Z`, nulls dropped, plus `alert_ref`."""
    out = json_fields(alert)
    for k, v in out.items():
        if isinstance(v, datetime):
            out[k] = iso_utc(v)
    return out
