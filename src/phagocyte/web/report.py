"""The static HTML report of a run: the incident queue and each incident's page in one self-contained file.

Same content as the console (summary, tactics in kill-chain order, reasons, entity graph,
evidence with `file:line` references), with the stylesheet inlined and no script, so the file can
be mailed or archived and opened anywhere without a server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from phagocyte.attack import tactic, tactic_rank
from phagocyte.web.graph import entity_graph

__all__ = ["write_html_report"]

_HERE = Path(__file__).parent
TIME_KEYS = ("@timestamp", "timestamp", "time", "first_seen")
_env = Environment(loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(["html"]))


def tactic_name(key: str) -> str:
    """`TA0006` or `credential-access` → `Credential Access` (the key itself when it names no tactic)."""
    t = tactic(str(key))
    return t.name if t else str(key)


_env.filters["tactic"] = tactic_name


def first_value(d: dict[str, Any], *keys: str) -> Any:
    """The first non-empty of `keys` in an evidence item (sources name the same thing differently)."""
    for k in keys:
        if d.get(k) not in (None, ""):
            return d[k]
    return ""


def by_time(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence items in time order, whichever time field they carry."""
    return sorted(evidence, key=lambda e: str(first_value(e, *TIME_KEYS)))


def write_html_report(path: Path, incidents: list[dict[str, Any]], *, title: str = "Phagocyte run",
                      stats: dict[str, Any] | None = None, max_incidents: int = 200,
                      artefacts: list[dict[str, Any]] | None = None) -> Path:
    """Write the report; incidents are shown in queue order (escalate, monitor, auto_close; by score), then the
    verdicts on the mail and code among the inputs (`artefacts`: `phago run`'s artefacts.jsonl rows)."""
    order = {"escalate": 0, "monitor": 1, "auto_close": 2}
    ranked = sorted(incidents, key=lambda i: (order.get(str(i.get("disposition")), 3), -float(i.get("score") or 0)))
    shown = []
    for inc in ranked[:max_incidents]:
        evidence = by_time(inc.get("evidence") or inc.get("timeline") or [])
        shown.append({"inc": inc, "evidence": evidence[:200],
                      "tactics": sorted(inc.get("tactics") or [], key=tactic_rank),
                      "graph": entity_graph(inc.get("entities") or {})})
    counts = {d: sum(1 for i in incidents if i.get("disposition") == d) for d in order}
    html = _env.get_template("report.html").render(
        title=title, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), items=shown, total=len(incidents),
        counts=counts, stats=stats or {}, css=(_HERE / "static" / "console.css").read_text(encoding="utf-8"),
        first=first_value, more=max(0, len(ranked) - max_incidents),
        artefacts=sorted(artefacts or [], key=lambda v: -float(v.get("score") or 0))[:500],
        artefacts_total=len(artefacts or []))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
