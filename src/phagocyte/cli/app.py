"""The ``phago`` command: a thin Typer + Rich layer over the library (no logic of its own)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from phagocyte import __version__
from phagocyte.config import Settings, load_settings
from phagocyte.errors import ConfigError, PhagocyteError
from phagocyte.ingest.pipeline import EXIT_ERROR, IngestReport
from phagocyte.ingest.pipeline import Progress as IngestProgress
from phagocyte.ingest.pipeline import ingest as run_ingest
from phagocyte.ingest.source import iter_files
from phagocyte.store.base import Store

if TYPE_CHECKING:
    from phagocyte.store.parquet import ParquetStore

app = typer.Typer(
    name="phago",
    help="Phagocyte: ingest security logs and alerts, detect, triage and explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflowed to the terminal, `code` shown as code
)
console = Console(stderr=True)
out = Console()

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="PHAGO_HOME", help="Data folder (default ./.phago)."),
]


def parquet_store(path: Path, *, writable: bool = False) -> ParquetStore:
    """The home's store. Imported here, not with the CLI: `pyarrow.parquet` is ~10 ms and ~6 MB of
    a command's start, and `phago hunt` without a home never opens a store."""
    from phagocyte.store.parquet import ParquetStore

    return ParquetStore(path, writable=writable)


def _settings(home: Path | None) -> Settings:
    return load_settings(home)


def _fail(exc: PhagocyteError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(EXIT_ERROR)


def _ingest_with_progress(paths: list[Path], settings: Settings, fmt: str | None,
                          on_table: Callable[[pa.Table], None] | None = None,
                          into: Store | None = None, database: str = ":memory:") -> IngestReport:
    """Ingest with a progress bar, into the home's store (or `into`: `phago hunt` without a home)."""
    files = [f for f in iter_files([str(p) for p in paths]) if isinstance(f, Path)]
    total = sum(f.stat().st_size for f in files if f.exists()) or None
    with (contextlib.nullcontext(into) if into is not None else
          parquet_store(settings.store_dir, writable=True)) as store:
        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[files]}/" + str(len(files)) + " files"),
            TextColumn("{task.fields[events]:,} events"),
            TextColumn("{task.fields[rate]:,.0f} ev/s"),
            # Files not read as logs (unrecognised or failed); `phago run` may still analyse them (e-mail).
            TextColumn("{task.fields[skipped]:,} not ingested"),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[current]}"),
        )
        # Redrawn 4 times a second, not Rich's 10: each redraw holds the interpreter's lock a few
        # ms, ~0.1 s of a 2-s warm hunt (16 alternated runs, idle: 2.10 -> 2.00 s wall).
        with Progress(*columns, console=console, transient=False, refresh_per_second=4) as bar:
            task = bar.add_task("ingest", total=total, files=0, events=0, rate=0.0, skipped=0, current="")

            def update(p: IngestProgress) -> None:
                cur = p.current if len(p.current) < 50 else "…" + p.current[-49:]
                bar.update(task, completed=p.bytes_done, files=p.files_done, events=p.events, rate=p.rate,
                           skipped=p.skipped, current=cur)

            report = run_ingest([str(p) for p in paths], store, settings, format=fmt, on_progress=update,
                                on_table=on_table, database=database)
            bar.update(task, description="done", current="")
    return report


def _print_report(report: IngestReport) -> None:
    d = report.to_dict()
    t = Table(title="Ingest summary", show_header=False)
    t.add_row("sources", str(d["sources"]))
    t.add_row("ingested", str(d["ingested"]))
    t.add_row("already in store (skipped)", str(d["duplicates"]))
    t.add_row("unrecognised / failed", f"{d['unrecognised']} / {d['failed']}")
    t.add_row("events stored", f"{d['events']:,}")
    t.add_row("records quarantined", f"{d['quarantined']:,}")
    rate = d["events"] / d["seconds"] if d["seconds"] else 0
    t.add_row("time", f"{d['seconds']:.2f} s ({rate:,.0f} events/s)")
    for reader, n in sorted(d["by_reader"].items()):
        t.add_row(f"  via {reader}", f"{n:,}")
    console.print(t)
    problems = [r for r in report.results if r.status in ("failed", "unrecognised") or r.quarantined]
    if problems:
        pt = Table(title="Problems (details: phago query \"select * from quarantine\")")
        pt.add_column("source", overflow="fold")
        pt.add_column("status")
        pt.add_column("quarantined", justify="right")
        pt.add_column("reason", overflow="fold")
        for r in problems[:30]:
            pt.add_row(r.path, r.status, str(r.quarantined), r.reason or "")
        if len(problems) > 30:
            pt.add_row(f"... and {len(problems) - 30} more", "", "", "")
        console.print(pt)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (archives are opened).")],
    home: HomeOpt = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a reader (see `phago formats`).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Read logs and alerts into the store: EVTX, Windows JSON, Suricata EVE, Zeek, Wazuh, syslog, CEF,
    LEEF, JSON lines, AIT-ADS CSV. Bad records are quarantined; the same file twice adds nothing.

    Exit status: 0 all stored, 3 some records or sources quarantined, 1 error."""
    settings = _settings(home)
    try:
        report = _ingest_with_progress(paths, settings, format)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    except KeyError as exc:
        console.print(f"[red]error:[/red] {exc.args[0]}")
        raise typer.Exit(2) from exc
    _print_report(report)
    if json_out:
        out.print_json(json.dumps(report.to_dict(), default=str))
    raise typer.Exit(report.exit_code)


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to analyse.")],
    home: HomeOpt = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a reader.")] = None,
) -> None:
    """The main job: ingest with Sigma detection on each stored batch, judge the e-mails and code among the
    inputs (and the scripts inside the events), triage all alerts into incidents, report.

    Incidents go to the case store (the console's queue) and to an HTML report under $PHAGO_HOME/reports,
    beside the JSON and Markdown run reports; it prints where."""
    from phagocyte.cli.detect import WORK_DB, finish_detection, ingest_detector, loaded

    settings = _settings(home)
    from phagocyte.analysers.artefacts import team_model_problems

    if problems := team_model_problems(settings.home):  # before ingesting, not after
        raise _fail(ConfigError("team model unusable: " + "; ".join(problems)))
    try:
        detector = ingest_detector(settings, database=WORK_DB)
        report = _ingest_with_progress(paths, settings, format, on_table=detector, database=WORK_DB)
        with parquet_store(settings.store_dir) as store:
            stats = store.stats()
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    from phagocyte.cli.artefacts import run_artefacts

    run_artefacts(settings, report)  # mail and code among the inputs, scripts inside the events
    _print_report(report)
    finish_detection(settings, loaded(detector))
    from phagocyte.report import write_run_report

    paths_out = write_run_report(settings, report, stats)
    _print_stats(stats)
    _run_triage(settings)
    from phagocyte.cli.cases import publish_run

    try:
        with parquet_store(settings.store_dir) as store:
            n_alerts = store.query("select count(*) as n from all_alerts").column("n")[0]
        html = publish_run(settings, settings.reports_dir / "incidents.jsonl",
                           {"alerts": n_alerts.as_py(), "events": stats.events},
                           stamp=paths_out["json"].stem.removeprefix("run-"))
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    console.print(f"Report: [bold]{html}[/bold] (incidents), {paths_out['markdown']} (and {paths_out['json'].name})")
    console.print(f"Console: [bold]phago serve --home {settings.home}[/bold], then a token from "
                  f"`phago token create --role analyst --home {settings.home}`")
    raise typer.Exit(report.exit_code)


def _print_stats(stats: Any) -> None:
    t = Table(title=f"Store: {stats.events:,} events from {stats.sources} sources")
    t.add_column("dataset")
    t.add_column("events", justify="right")
    t.add_column("first")
    t.add_column("last")
    for ds, n, first, last in stats.by_dataset:
        t.add_row(ds, f"{n:,}", str(first)[:19] if first else "-", str(last)[:19] if last else "-")
    out.print(t)


@app.command()
def stats(home: HomeOpt = None) -> None:
    """What the store holds: events per dataset, time range, sources, quarantine, size."""
    settings = _settings(home)
    if not settings.store_dir.exists():
        console.print(f"no store at {settings.store_dir} yet: run `phago ingest PATH` first")
        raise typer.Exit(0)
    with parquet_store(settings.store_dir) as store:
        s = store.stats()
    _print_stats(s)
    out.print(f"quarantined records: {s.quarantined:,}   on disk: {s.bytes_on_disk / 1e6:,.1f} MB")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list | dict):
        return json.dumps(v, default=str)
    return str(v)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(
        help='Read-only SQL, e.g. \'select "host.name", count(*) from events group by 1\'.')],
    home: HomeOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, json (lines) or csv.")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 100,
) -> None:
    """Run one read-only SQL query over the views: events, alerts, quarantine, sources.

    Field names hold dots: quote them ("host.name")."""
    settings = _settings(home)
    if format not in ("table", "json", "csv"):
        console.print("[red]error:[/red] --format must be table, json or csv")
        raise typer.Exit(2)
    try:
        with parquet_store(settings.store_dir) as store:
            result: pa.Table = store.query(sql)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    rows = result.to_pylist()
    if format == "json":
        for r in rows:
            sys.stdout.write(json.dumps(r, default=str, ensure_ascii=False) + "\n")
    elif format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(result.column_names)
        for r in rows:
            w.writerow([_cell(v) for v in r.values()])
        sys.stdout.write(buf.getvalue())
    else:
        t = Table(*result.column_names, caption=f"{len(rows)} rows")
        for r in rows[:limit]:
            t.add_row(*[_cell(v)[:200] for v in r.values()])
        out.print(t)


@app.command()
def formats() -> None:
    """List the input formats Phagocyte recognises (readers pick themselves by content)."""
    from phagocyte.ingest.reader import REGISTRY, get_reader

    get_reader("evtx")  # imports and registers every reader
    t = Table("name", "reads")
    for name, cls in sorted(REGISTRY.items()):
        t.add_row(name, cls.description)
    out.print(t)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(f"phagocyte {__version__}")


_fast_exit = False


def exit_without_teardown() -> None:
    """Let `main` end the process without tearing the interpreter down, once the command has
    returned. For a command whose results are all written and closed when it returns (`phago
    hunt`): freeing its hundreds of thousands of objects and running the exit handlers took
    ~0.1 s, 4 % of a warm hunt. Only the console entry point honours it (tests call the app)."""
    global _fast_exit
    _fast_exit = True


from phagocyte.cli import detect as _detect  # noqa: E402 - registers hunt, detect, rules (it imports app)

_detect.register(app)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        if not _fast_exit:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a reader gone (closed pipe): keep the status
                stream.flush()
        os._exit(code)


# Sub-commands of other domains register themselves on `app` when imported.
from phagocyte.cli import cases as _cases  # noqa: E402, F401
from phagocyte.cli import scan as _scan  # noqa: E402,F401  (registers `phago scan`, `scan-train`, `scan-events`)
from phagocyte.cli.email import email as _email  # noqa: E402
from phagocyte.cli.triage import run_hook as _run_triage  # noqa: E402
from phagocyte.cli.triage import triage as _triage  # noqa: E402

app.command(name="triage")(_triage)
app.command("email")(_email)
