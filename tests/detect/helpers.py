"""Hand-written events and rules for the detection tests."""

from __future__ import annotations

import hashlib
import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from phagocyte.alerts import alerts_to_table
from phagocyte.detect.engine import Engine
from phagocyte.detect.rules import RuleSet, load_rules

SYSMON = "Microsoft-Windows-Sysmon/Operational"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def win(eid: int, data: dict[str, Any], *, channel: str = SYSMON, n: int = 0, seconds: float = 0,
        **fields: Any) -> dict[str, Any]:
    """One Windows event as the store holds it (EventData as a JSON object)."""
    return {"@timestamp": T0 + timedelta(seconds=seconds), "event.id": f"ev{n}", "event.kind": "event",
            "event.dataset": "windows.test", "winlog.channel": channel, "winlog.event_id": eid,
            "winlog.record_id": n, "log.file.path": "/logs/test.evtx", "winlog.event_data": json.dumps(data),
            **fields}


def table(events: list[dict[str, Any]]) -> pa.Table:
    return alerts_to_table(events)  # conforms dicts to the event schema


def ruleset(tmp: Path, *yamls: str) -> RuleSet:
    d = tmp / f"rules{len(list(tmp.glob('rules*')))}"
    d.mkdir()
    for i, y in enumerate(yamls):
        (d / f"r{i}.yml").write_text(textwrap.dedent(y))
    return load_rules([d])


def matched(rs: RuleSet, events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """rule title -> ids of the events it matched."""
    out: dict[str, list[str]] = {}
    for m in Engine(rs).evaluate(table(events)):
        out.setdefault(m.rule.title, []).append(m.event["event.id"])
    return out


def proc_rule(title: str, detection: str, *, extra: str = "") -> str:
    """A process-creation rule with the given detection block (indented YAML)."""
    det = textwrap.indent(textwrap.dedent(detection).strip(), "    ")
    rid = f"00000000-0000-4000-8000-{hashlib.md5(title.encode()).hexdigest()[:12]}"
    return f"title: {title}\nid: {rid}\nstatus: test\n" \
           f"logsource:\n    product: windows\n    category: process_creation\ndetection:\n{det}\nlevel: high\n{extra}"
