"""`phago run`'s artefact stage: the files ingest could not read as logs go to the analysers.

Transport only: `phagocyte.analysers.artefacts` decides; this prints, writes the verdicts to
`$PHAGO_HOME/reports/artefacts.jsonl` and the alerts to the store.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from phagocyte.cli.app import _fail, console, out
from phagocyte.config import Settings
from phagocyte.errors import PhagocyteError
from phagocyte.ingest.pipeline import IngestReport

__all__ = ["run_artefacts"]

_STYLE = {"malicious": "bold red", "phishing": "bold red", "suspicious": "yellow", "spam": "yellow",
          "clean": "green"}


def run_artefacts(settings: Settings, report: IngestReport) -> int:
    """Judge the unrecognised files and the store's script blocks/command lines; returns new alerts."""
    from phagocyte.analysers.artefacts import analyse_artefacts, team_models
    from phagocyte.analysers.limits import ScanLimits
    from phagocyte.analysers.scan import Scanner
    from phagocyte.detect.store import save_alerts
    from phagocyte.store.parquet import ParquetStore

    pending = {r.path: r for r in report.results if r.status == "unrecognised" and Path(r.path).is_file()}
    try:
        email_model, script_model = team_models(settings.home)
    except PhagocyteError as exc:  # a model saved by an older version is refused: say which and how to retrain
        raise _fail(exc) from exc
    scanner = Scanner(ScanLimits(), model=script_model)
    with ParquetStore(settings.store_dir, writable=True) as store:
        found = analyse_artefacts(list(pending), scanner=scanner, email_model=email_model, store=store)
        new = save_alerts(store, found.alerts) if found.alerts else 0
    for v in found.verdicts:
        src = pending.get(v.path) or pending.get(v.path.rsplit(":", 1)[0])
        if src is not None:  # judged by an analyser: no longer a problem of the ingest summary
            src.status, src.reader = "analysed", v.analyser
            src.reason = f"{v.kind}: {v.label} ({v.score:.2f})"
    for path, reason in found.unrecognised:
        if path in pending:
            pending[path].reason = f"{pending[path].reason}; {reason}"
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    with (settings.reports_dir / "artefacts.jsonl").open("w", encoding="utf-8") as fh:
        for v in found.verdicts:
            fh.write(json.dumps(v.to_dict(), ensure_ascii=False) + "\n")
    ev = found.events
    if found.verdicts:
        t = Table("label", "score", "analyser", "kind", "file", "top reasons",
                  title=f"Mail and code: {len(found.verdicts)} verdicts {found.by_label()}")
        for v in sorted(found.verdicts, key=lambda v: -v.score)[:30]:
            style = _STYLE.get(v.label, "dim")
            errors = f" [dim]({'; '.join(v.errors)[:60]})[/dim]" if v.errors else ""
            t.add_row(f"[{style}]{v.label}[/]", f"{v.score:.2f}", v.analyser, v.kind, v.path[-60:],
                      "; ".join(v.reasons[:2])[:120] + errors)
        out.print(t)
    if ev is not None:
        console.print(f"Scripts in events: {ev.script_blocks} script blocks, {ev.command_lines} command lines judged "
                      f"{ev.by_label}")
    console.print(f"Analyser alerts: {len(found.alerts)} ({new} new in the store); verdicts in "
                  f"{settings.reports_dir / 'artefacts.jsonl'}")
    return new
