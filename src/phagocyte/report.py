"""The report that ``phago run`` leaves behind: JSON for machines, Markdown for people.

Presentation only: it formats what the pipeline and the store already computed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phagocyte.config import Settings
from phagocyte.ingest.pipeline import IngestReport
from phagocyte.store.base import StoreStats

__all__ = ["write_run_report"]


def write_run_report(settings: Settings, report: IngestReport, stats: StoreStats) -> dict[str, Path]:
    """Write ``run-<time>.json`` and ``.md`` under the reports folder; return their paths."""
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(),
        "home": str(settings.home),
        "ingest": report.to_dict(),
        "store": {
            "sources": stats.sources,
            "events": stats.events,
            "quarantined": stats.quarantined,
            "datasets": [
                {"dataset": d, "events": n, "first": str(a) if a else None, "last": str(b) if b else None}
                for d, n, a, b in stats.by_dataset
            ],
        },
    }
    jpath = settings.reports_dir / f"run-{stamp}.json"
    jpath.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    mpath = settings.reports_dir / f"run-{stamp}.md"
    mpath.write_text(_markdown(data), encoding="utf-8")
    return {"json": jpath, "markdown": mpath}


def _markdown(d: dict[str, Any]) -> str:
    ing, st = d["ingest"], d["store"]
    lines = [
        f"# Phagocyte run report — {d['generated'][:19]} UTC",
        "",
        "## This run",
        "",
        f"- sources: {ing['sources']} ({ing['ingested']} ingested, {ing['duplicates']} already stored, "
        f"{ing['unrecognised']} unrecognised, {ing['failed']} failed)",
        f"- events stored: {ing['events']:,}; records quarantined: {ing['quarantined']:,}",
        f"- time: {ing['seconds']} s",
        "",
        "## Store",
        "",
        "| dataset | events | first | last |",
        "|---|---:|---|---|",
    ]
    for ds in st["datasets"]:
        lines.append(f"| {ds['dataset']} | {ds['events']:,} | {ds['first'] or '-'} | {ds['last'] or '-'} |")
    if ing["problems"]:
        lines += ["", "## Problems", "", "| source | status | quarantined | reason |", "|---|---|---:|---|"]
        for p in ing["problems"]:
            reason = (p.get("reason") or "").replace("|", "\\|")
            lines.append(f"| {p['path']} | {p['status']} | {p['quarantined']} | {reason} |")
    lines += ["", "Bad records, with their position and reason: `phago query \"select * from quarantine\"`.", ""]
    return "\n".join(lines)
