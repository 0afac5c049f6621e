"""Scripts inside events: PowerShell script blocks (4104), process command lines (Sysmon 1,
Security 4688) and e-mail attachments go through the same analysers, and what they find
becomes `scan` alerts for triage.

Why from the store: the events are already normalised there (ECS, `winlog.event_data` as JSON),
so one SQL query finds every script block and command line, whichever log they came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from phagocyte.analysers.scan import Scanner
from phagocyte.analysers.verdict import Verdict

__all__ = ["EventScanStats", "command_line_language", "scan_attachment", "scan_event", "scan_store"]

_RANK = {"clean": 0, "suspicious": 1, "malicious": 2}
_SCRIPT_HOSTS = {
    "powershell": re.compile(r"(?:^|[\\/\s\"'])(?:powershell|pwsh)(?:\.exe)?\b", re.I),
    "javascript": re.compile(
        r"(?:^|[\\/\s\"'])(?:wscript|cscript|mshta)(?:\.exe)?\b[^\n]{0,200}(?:\.js|\.jse|javascript:)", re.I),
    "vbscript": re.compile(
        r"(?:^|[\\/\s\"'])(?:wscript|cscript|mshta)(?:\.exe)?\b[^\n]{0,200}(?:\.vbs|\.vbe|vbscript:)", re.I),
    "batch": re.compile(r"(?:^|[\\/\s\"'])cmd(?:\.exe)?\s+/[ck]\b", re.I),
    "shell": re.compile(r"(?:^|[/\s])(?:ba|da|z)?sh\s+-c\b", re.I),
}
_SQL = """
select "event.id", "@timestamp", "event.code", "event.module", "event.dataset", "host.name", "user.name",
       "process.pid", "process.name", "process.executable", "process.command_line", "process.parent.name",
       "log.file.path", "log.file.line", "winlog.record_id", "winlog.channel", "winlog.event_data"
from events
where ("event.code" = '4104' and "winlog.event_data" like '%ScriptBlockText%')
   or ("process.command_line" is not null and "event.code" in ('1', '4688'))
"""


@dataclass
class EventScanStats:
    events: int = 0
    script_blocks: int = 0
    command_lines: int = 0
    by_label: dict[str, int] = field(default_factory=lambda: {"clean": 0, "suspicious": 0, "malicious": 0})


def command_line_language(command_line: str) -> str | None:
    """The interpreter a command line runs, when it runs one whose code we can read."""
    for lang, rx in _SCRIPT_HOSTS.items():
        if rx.search(command_line):
            return lang
    return None


def scan_event(event: Mapping[str, Any], scanner: Scanner) -> tuple[str, Verdict] | None:
    """(`script-block` | `command-line`, verdict) for one ECS event, None when it carries no code."""
    if str(event.get("event.code")) == "4104":
        try:
            data = json.loads(event.get("winlog.event_data") or "{}")
        except ValueError:
            return None
        text = data.get("ScriptBlockText") if isinstance(data, dict) else None
        if not text:
            return None
        return "script-block", scanner.scan_text(str(text), "powershell", path=str(event.get("log.file.path") or ""))
    cmd = event.get("process.command_line")
    if not cmd:
        return None
    lang = command_line_language(str(cmd))
    if lang is None:
        return None
    return "command-line", scanner.scan_text(str(cmd), lang, path=str(event.get("log.file.path") or ""))


def scan_attachment(name: str, data: bytes, scanner: Scanner, message: Mapping[str, Any] | None = None
                    ) -> tuple[Verdict, dict[str, Any] | None]:
    """An e-mail attachment through the file analysers; an alert (on the message) unless it is clean."""
    v = scanner.scan_bytes(data, name)
    return v, (v.to_alert(message) if v.label != "clean" else None)


def _rows(store: Any, batch: int = 2000) -> Iterator[dict[str, Any]]:
    table = store.query(_SQL)
    for b in table.to_batches(max_chunksize=batch):
        yield from b.to_pylist()


def scan_store(store: Any, scanner: Scanner, *, min_label: str = "suspicious") -> tuple[list[dict[str, Any]],
                                                                                        EventScanStats]:
    """Alerts for every script block and command line in the store whose verdict reaches `min_label`.

    Identical texts (a script block logged on many hosts) are analysed once.
    """
    stats = EventScanStats()
    alerts: list[dict[str, Any]] = []
    cache: dict[tuple[str, str], tuple[str, Verdict] | None] = {}
    for ev in _rows(store):
        stats.events += 1
        key = (str(ev.get("event.code")), str(ev.get("winlog.event_data") if ev.get("event.code") == "4104"
                                              else ev.get("process.command_line")))
        if key not in cache:
            cache[key] = scan_event(ev, scanner)
        found = cache[key]
        if found is None:
            continue
        kind, v = found
        if kind == "script-block":
            stats.script_blocks += 1
        else:
            stats.command_lines += 1
        stats.by_label[v.label] += 1
        if _RANK[v.label] >= _RANK[min_label]:
            alert = v.to_alert(ev)
            alert["rule.category"] = kind
            alerts.append(alert)
    return alerts, stats


