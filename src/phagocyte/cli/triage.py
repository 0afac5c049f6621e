"""`phago triage`: learn from labelled alerts, triage alerts into incidents, record verdicts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from phagocyte.cli.app import console, out
from phagocyte.config import Settings

ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model folder (model.json).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="ait-ads, eve, wazuh, ecs or auto.")]


def triage(
    paths: Annotated[list[str], typer.Argument(
        help="Alert files; or `learn FILES...` (labelled history) or `verdict FILES...` (with --verdict).")],
    model: ModelOpt,
    format: FormatOpt = "auto",
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="Incidents as JSON lines.")] = None,
    verdict: Annotated[list[str] | None, typer.Option(
        "--verdict", help="INC-00001=true_positive|false_positive|benign_true_positive (with `verdict`).")] = None,
    show: Annotated[int, typer.Option(help="Incidents listed on screen.")] = 15,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Streaming triage: chunks in time order, state evicted by time (bounded memory); "
        "incidents are written as they close.")] = False,
    chunk: Annotated[int, typer.Option(help="Alerts per chunk (with --stream).", min=1)] = 50_000,
) -> None:
    """Turn alerts into a short ranked list of explained incidents (escalate / monitor / auto_close).

    - `phago triage learn --model DIR LABELLED...` trains from labelled history (AIT-ADS labels);
    - `phago triage --model DIR ALERTS... --out incidents.jsonl` triages (`--stream`: with bounded memory);
    - `phago triage verdict --model DIR ALERTS... --verdict INC-00002=false_positive` learns from an analyst."""
    from phagocyte.triage.learn import apply_verdicts, learn
    from phagocyte.triage.score import RiskModel
    from phagocyte.triage.service import triage as run_triage
    from phagocyte.triage.service import write_incidents
    from phagocyte.triage.sources import FORMATS, load_alerts

    action = "triage"
    if paths and paths[0] in ("learn", "verdict") and not Path(paths[0]).exists():
        action, paths = paths[0], paths[1:]
    if not paths:
        console.print("[red]error:[/red] no alert files given")
        raise typer.Exit(2)
    if format not in FORMATS:
        console.print(f"[red]error:[/red] --format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        console.print(f"[red]error:[/red] not found: {', '.join(missing)}")
        raise typer.Exit(2)
    if action == "learn":
        frames = []
        for p in paths:
            frame, _ = load_alerts([p], format)
            _skipped(frame.skipped)
            frames.append((Path(p).name, frame))
        try:
            m, X, y = learn(frames)
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        m.save(model, X, y)
        console.print(f"model: {model} — {m.verdicts:,} verdicts (labelled groups: {int(y.sum()):,} attack, "
                      f"{int((y == 0).sum()):,} noise) from {sum(len(f) for _, f in frames):,} alerts, "
                      f"{len(m.rule_stats)} rules")
        return
    try:
        rm = RiskModel.load(model)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    frame, _ = load_alerts(paths, format)
    _skipped(frame.skipped)
    if stream and action == "triage":
        _stream(frame, rm, out_path, chunk, show)
        return
    result = run_triage(frame, rm)
    if action == "verdict":
        by_id = {i.id: i for i in result.incidents}
        verdicts: dict[int, str] = {}
        for v in verdict or []:
            inc_id, _, label = v.partition("=")
            if inc_id not in by_id:
                console.print(f"[red]error:[/red] no incident {inc_id!r}")
                raise typer.Exit(2)
            verdicts.update(dict.fromkeys(by_id[inc_id].groups, label))
        try:
            new, proposals, X, y = apply_verdicts(rm, frame, verdicts, RiskModel.training_set(model))
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        new.save(model, X, y)
        console.print(f"{len(verdicts)} group verdict(s) learned; the model has consumed {new.verdicts:,} verdicts")
        for prop in proposals:
            out.print(json.dumps(prop))
        return
    n = write_incidents(result, out_path) if out_path else 0
    _print(result, show)
    if out_path:
        console.print(f"{n:,} incidents → {out_path}")


def _skipped(skipped: list[dict[str, object]]) -> None:
    for s in skipped[:10]:
        console.print(f"[yellow]skipped:[/yellow] {s['path']}: {s['status']} {s.get('reason') or ''} "
                      f"({s['quarantined']} records quarantined)")


def _stream(frame: object, model: object, out_path: Path | None, chunk: int, show: int) -> None:
    """`--stream`: incidents written as they close, numbered in that order (not ranked over the whole input)."""
    from phagocyte.triage.score import RiskModel
    from phagocyte.triage.sources import AlertFrame
    from phagocyte.triage.stream import chunks, stream_triage

    assert isinstance(frame, AlertFrame) and isinstance(model, RiskModel)
    counts: Counter[tuple[str, bool]] = Counter()
    queue = Table("id", "score", "disposition", "alerts", "summary", title="Escalated (as they closed)")
    fh = open(out_path, "w", encoding="utf-8") if out_path else None
    try:
        for d in stream_triage(chunks(frame, chunk), model):
            counts[(d["disposition"], d["deferred"])] += 1
            if fh:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            if d["disposition"] == "escalate" and not d["deferred"] and show > 0:
                show -= 1
                queue.add_row(d["id"], f"{d['score']:.2f}", "escalate", f"{d['alert_count']:,}", _clip(d["summary"]))
    finally:
        if fh:
            fh.close()
    console.print(f"{len(frame):,} alerts (streamed in chunks of {chunk:,}) → {counts[('escalate', False)]} escalated "
                  f"+ {counts[('escalate', True)]} deferred incidents; {counts[('monitor', False)]} monitor, "
                  f"{counts[('auto_close', False)]} auto_close; model verdicts: {model.verdicts:,}")
    out.print(queue)
    if out_path:
        console.print(f"{sum(counts.values()):,} incidents → {out_path}")


def _print(result: object, show: int) -> None:
    from phagocyte.triage.service import TriageResult

    assert isinstance(result, TriageResult)
    counts = Counter((i.disposition, i.deferred) for i in result.incidents)
    console.print(f"{len(result.frame):,} alerts → {len(result.groups):,} groups → "
                  f"{counts[('escalate', False)]} escalated + {counts[('escalate', True)]} deferred incidents "
                  f"(analyst items: {result.analyst_items}); {counts[('monitor', False)]} monitor, "
                  f"{counts[('auto_close', False)]} auto_close; model verdicts: {result.model.verdicts:,}")
    t = Table("id", "score", "disposition", "alerts", "summary", title="Analyst queue")
    for d in result.incident_dicts(with_refs=False):
        if d["disposition"] != "escalate" or show <= 0:
            break
        show -= 1
        t.add_row(d["id"], f"{d['score']:.2f}", "deferred" if d["deferred"] else "escalate",
                  f"{d['alert_count']:,}", _clip(d["summary"]))
    out.print(t)


def run_hook(settings: Settings) -> None:
    """`phago run`: learn the analysts' new verdicts (`$PHAGO_HOME/verdicts.jsonl`, written by the case store),
    then triage the store's alerts into `$PHAGO_HOME/reports/incidents.jsonl`."""
    from phagocyte.store.parquet import ParquetStore
    from phagocyte.triage.service import learn_case_verdicts, triage_store

    path = settings.reports_dir / "incidents.jsonl"
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    try:
        with ParquetStore(settings.store_dir) as store:
            learned, proposals = learn_case_verdicts(store, settings.home)
            if learned:
                console.print(f"triage: learned {learned} group verdict(s) from the case store's verdicts; "
                              f"{len(proposals)} suppression proposal(s)")
            result = triage_store(store, settings.home, path)
    except ValueError as exc:  # an unreadable model must not lose the run's report
        console.print(f"[red]triage skipped:[/red] {exc}")
        return
    if result is None:
        console.print("triage: no alerts in the store")
        return
    _print(result, 10)
    console.print(f"Incidents: [bold]{path}[/bold]")


def _clip(text: str, limit: int = 600) -> str:
    """A summary cut for the terminal table at a word boundary, with an ellipsis (the full text is in
    the incidents file and the report)."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"
