"""`phago hunt`, `phago detect`, `phago rules check|sync`: Sigma detection on the command line.

Transport only: loading rules, running the engine and storing alerts live in `phagocyte.detect`.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.table import Table

from phagocyte import glibc
from phagocyte.alerts import iso_utc, json_fields, level_rank, to_json
from phagocyte.cli.app import (
    HomeOpt,
    _fail,
    _ingest_with_progress,
    _print_report,
    _settings,
    console,
    exit_without_teardown,
    out,
    parquet_store,
)
from phagocyte.config import Settings
from phagocyte.detect.engine import Detector, Engine
from phagocyte.detect.rules import BUILTIN_RULES, RuleSet, RuleSource, load_rules, rule_source
from phagocyte.detect.store import save_alerts
from phagocyte.detect.transient import TransientStore
from phagocyte.errors import PhagocyteError

__all__ = ["DeferredDetector", "finish_detection", "ingest_detector", "loaded", "register", "rule_paths",
           "rules_cache_dir", "streaming_detector"]

rules_app = typer.Typer(help="Sigma rules: check what compiles, fetch the SigmaHQ release.", no_args_is_help=True)

RulesOpt = Annotated[
    list[Path] | None,
    typer.Option("--rules", "-r", help="Sigma rule file or folder (repeatable). Default: $PHAGO_RULES, else "
                 "the built-in pack plus the SigmaHQ rules fetched by `phago rules sync`."),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write alerts to FILE: .csv, else JSON lines.")]

CSV_COLUMNS = ("@timestamp", "rule.id", "rule.name", "rule.level", "threat.technique.id", "threat.tactic.name",
               "host.name", "user.name", "process.command_line", "log.file.path", "winlog.record_id",
               "log.file.line", "event.reference", "event.id", "message")


def rule_paths(settings: Settings, given: Sequence[Path] | None = None) -> list[Path]:
    """`--rules`, else `$PHAGO_RULES`, else the built-in pack and the synced SigmaHQ rules."""
    if given:
        return list(given)
    if settings.rules:
        return list(settings.rules)
    synced = settings.rules_dir / "sigmahq"
    return [BUILTIN_RULES, *([synced] if synced.exists() else [])]


def rules_cache_dir(settings: Settings, *, home: bool = True) -> Path:
    """Where compiled rules are cached: `$PHAGO_CACHE_DIR` when set, else the home's `cache/`, or,
    for a hunt without a home, the user's cache folder (`$XDG_CACHE_HOME/phagocyte/sigma`), so
    that the second hunt of any user is warm."""
    explicit = os.environ.get("PHAGO_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if home:
        return settings.home / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phagocyte" / "sigma"


MMAP_THRESHOLD = 128 * 1024


def _hand_back_big_blocks() -> bool:
    """Blocks of 128 KiB and more are mapped and unmapped on their own, whatever was freed before.

    glibc raises this threshold each time a mapped block is freed (up to 32 MiB), after which Arrow
    buffers, DuckDB vectors and the mapping's results of that size come from the heap and stay with
    the process once freed: a warm hunt over 300 EVTX files peaked ~16 MB higher. Fixing the
    threshold at glibc's own default stops that growth, for ~0.1 s more system time (the fresh
    pages are faulted in). Not glibc (macOS, musl): nothing done."""
    return glibc.mallopt(glibc.M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _rule_source(settings: Settings, given: Sequence[Path] | None, cache_dir: Path | None = None) -> RuleSource:
    paths = rule_paths(settings, given)
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(f"no such rule file or folder: {', '.join(map(str, missing))}", param_hint="--rules")
    return rule_source(paths, cache_dir=cache_dir or rules_cache_dir(settings))


def _loaded(src: RuleSource, t0: float) -> RuleSet:
    rs = src.load()
    console.print(f"rules: {len(rs.primary):,} compiled, {len(rs.correlations)} correlations, "
                  f"{len(rs.errors)} failed ({time.perf_counter() - t0:.1f} s)"
                  + (" — see `phago rules check`" if rs.errors else ""))
    return rs


def _load(settings: Settings, given: Sequence[Path] | None, cache_dir: Path | None = None) -> RuleSet:
    t0 = time.perf_counter()
    return _loaded(_rule_source(settings, given, cache_dir), t0)


GC_YOUNG = 50_000
"""Allocations between two collections of the youngest generation while a command streams."""


def streaming_detector(settings: Settings, given: Sequence[Path] | None = None,
                       cache_dir: Path | None = None) -> Detector:
    """A detector for `phago run`/`phago hunt`: evaluates each ingest batch as it is stored."""
    return _streaming(_load(settings, given, cache_dir))


WORK_DB = ":memory:phagocyte-work"
"""The in-memory DuckDB database `phago hunt`/`run` map batches and detect in: one instance for both."""


def _streaming(rs: RuleSet, database: str | None = None) -> Detector:
    """The compiled rules (and the modules imported so far) live until the command ends: frozen out
    of the cyclic garbage collector, its full passes during ingest no longer walk them again and
    again (a warm hunt of 300 EVTX files: ~0.15 s of ~2.6 s CPU); and the collector runs less often
    for the rest of the command (GC_YOUNG)."""
    detector = Detector(Engine(rs, database=database))
    gc.freeze()
    # Ingest and detection make millions of short-lived objects and few cycles: collecting the
    # youngest generation every 700 allocations (the default) cost ~0.1 s of a 2-s warm hunt, most
    # of it full collections the churn set off; every 50,000 costs ~0.05 s.
    gc.set_threshold(GC_YOUNG, 20, 100)
    return detector


class DeferredDetector:
    """A streaming detector whose cached rules are loaded when the first batch comes, not before the
    ingest reads anything.

    Why: the ingest's peak memory is DuckDB mapping the first batch of JSON texts (a warm hunt of 300
    EVTX files: +60 MB at once); the loaded rules (~11 MB) no longer add to it. Same time: the rules
    are loaded once, before or after reading. Only for a cached rule set: compiling forks worker
    processes, which a process running the ingest's threads must not (`rules.compile_jobs`), so
    `ingest_detector` compiles those before the ingest. Thread-safe: batches may come from two
    workers."""

    def __init__(self, src: RuleSource, database: str | None = None) -> None:
        self._src = src
        self._database = database
        self._detector: Detector | None = None
        self._lock = threading.Lock()

    def load(self) -> Detector:
        with self._lock:
            if self._detector is None:
                self._detector = _streaming(_loaded(self._src, time.perf_counter()), self._database)
            return self._detector

    def __call__(self, table: pa.Table) -> None:
        self.load()(table)


def ingest_detector(settings: Settings, given: Sequence[Path] | None = None,
                    cache_dir: Path | None = None, *, database: str | None = None) -> DeferredDetector | Detector:
    """The detector of a command that detects as it ingests (`on_table`): deferred
    (`DeferredDetector`) when the compiled rules are cached, loaded now otherwise. A missing rule
    path is an error before anything is read."""
    t0 = time.perf_counter()
    src = _rule_source(settings, given, cache_dir)
    return DeferredDetector(src, database) if src.cached else _streaming(_loaded(src, t0), database)


def loaded(detector: DeferredDetector | Detector) -> Detector:
    """The detector with its rules (loaded now if no batch came)."""
    return detector.load() if isinstance(detector, DeferredDetector) else detector


def finish_detection(settings: Settings, detector: Detector, out_file: Path | None = None,
                     *, store_alerts: bool = True) -> int:
    """Alerts of a streamed run: correlations, store (no duplicates; not for a hunt without a
    home, whose store is not kept), summary, optional file. Returns how many alerts there were.

    Without a store the alerts are made, counted and written one by one, never all held at once."""
    new = None
    alerts: Iterable[dict[str, Any]]
    if store_alerts:
        alerts = detector.alerts()
        with parquet_store(settings.store_dir, writable=True) as store:
            new = save_alerts(store, alerts)
    else:
        alerts = detector.iter_alerts()
    tally = _Tally()
    if out_file is not None:
        write_alerts(tally.count(alerts), out_file)
    else:
        for _ in tally.count(alerts):
            pass
    _summary(tally, new)
    for rule_id, reason in sorted(detector.engine.failed.items()):
        console.print(f"[yellow]rule {rule_id} failed at run time and was skipped:[/yellow] {reason}")
    if out_file is not None:
        console.print(f"alerts written to [bold]{out_file}[/bold]")
    return tally.total


SUMMARY_ROWS = 30
"""Rules listed in the summary table (highest level, then most hits, first): one screen."""


@dataclass
class _Tally:
    """Alerts per (rule id, name, level) and each rule's techniques, counted as alerts go by."""

    hits: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    techniques: dict[str, str] = field(default_factory=dict)
    total: int = 0

    def count(self, alerts: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for a in alerts:
            self.total += 1
            self.hits[(a["rule.id"], a.get("rule.name", ""), a.get("rule.level") or "")] += 1
            self.techniques.setdefault(a["rule.id"], ", ".join(a.get("threat.technique.id") or [])[:40])
            yield a


def _summary(tally: _Tally, new: int | None) -> None:
    hits, techniques = tally.hits, tally.techniques
    stored = "not stored: no --home" if new is None else f"{new:,} new in the store"
    t = Table(title=f"Sigma: {tally.total:,} alerts from {len(hits)} rules ({stored})")
    t.add_column("level")
    t.add_column("rule", overflow="fold")
    t.add_column("hits", justify="right")
    t.add_column("ATT&CK")
    colour = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
    rows = sorted(hits.items(), key=lambda kv: (-level_rank(kv[0][2]), -kv[1], kv[0][1]))
    for (rid, name, level), n in rows[:SUMMARY_ROWS]:
        t.add_row(f"[{colour.get(level, 'dim')}]{level or '-'}[/]", name, f"{n:,}", techniques.get(rid, ""))
    if len(rows) > SUMMARY_ROWS:
        t.add_row("", f"... and {len(rows) - SUMMARY_ROWS} more rules (every alert: --out FILE, or `phago query`)",
                  "", "")
    out.print(t)


def write_alerts(alerts: Iterable[dict[str, Any]], path: Path) -> None:
    """JSON lines (every field, plus `alert_ref`), or CSV (the fields to check an alert by hand)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() != ".csv":
        _write_jsonl(alerts, path)
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for a in alerts:
            j = to_json(a)
            w.writerow(["|".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                        for v in (j.get(c) for c in CSV_COLUMNS)])


def _write_jsonl(alerts: Iterable[dict[str, Any]], path: Path) -> None:
    """JSON lines through orjson (several times faster than `json` for thousands of alerts): what
    `to_json` makes, with its times converted by orjson's `default` as they are met instead of
    by a pass over every field of every alert (a third of writing 5,000 alerts); values JSON has
    no type for are written as `str()` of them."""
    import orjson

    def default(value: Any) -> str:
        return iso_utc(value) if isinstance(value, datetime) else str(value)

    opts = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME
    with path.open("wb") as fh:
        for a in alerts:
            fh.write(orjson.dumps(json_fields(a), default=default, option=opts))


def hunt(
    paths: Annotated[list[Path], typer.Argument(help="Log files or folders (EVTX, JSON, ...).")],
    rules: RulesOpt = None,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Also store the events and alerts here (default: nothing kept).")] = None,
    out_file: OutOpt = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="Force a reader.")] = None,
) -> None:
    """Hunt with Sigma rules through logs: read them, evaluate the rules on each batch as it is read,
    print the alerts per rule, write them with --out. With --home, events and alerts are also
    stored there; without, nothing is kept (compiled rules are cached in the user's cache folder;
    $PHAGO_CACHE_DIR sets the folder for every command).

    Exit status: 0 no alert, 4 alerts raised, 1 error."""
    settings = _settings(home)
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        # Arrow's default allocator (mimalloc) keeps the pages of the many small conversions a
        # folder of EVTX files makes; the C library's gives them back: peak RSS of a hunt over 300
        # EVTX files ~415 -> ~330 MB, no slower. Only here: a long ingest of big JSON files peaked
        # higher with it (docs/benchmarks.md, ingest memory).
        pa.set_memory_pool(pa.system_memory_pool())
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # the user's own glibc tuning wins
        _hand_back_big_blocks()
    try:
        # Without a home, events live only in memory: each batch is evaluated as it is read and
        # dropped (no Parquet written and read back), like Zircolite's in-memory database.
        detector = ingest_detector(settings, rules, rules_cache_dir(settings, home=home is not None),
                                   database=WORK_DB)
        report = _ingest_with_progress(paths, settings, format, on_table=detector,
                                       into=None if home else TransientStore(), database=WORK_DB)
        _print_report(report)
        alerts = finish_detection(settings, loaded(detector), out_file, store_alerts=home is not None)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    exit_without_teardown()  # everything is written and closed
    raise typer.Exit(4 if alerts else 0)


def detect(
    rules: RulesOpt = None,
    home: HomeOpt = None,
    out_file: OutOpt = None,
    batch_rows: Annotated[int, typer.Option(help="Events evaluated per batch.")] = 100_000,
) -> None:
    """Run Sigma rules over everything already in the store; new alerts go to its `alerts` table
    (`phago query 'select * from alerts'`); the same alert twice is stored once."""
    settings = _settings(home)
    if not settings.store_dir.exists():
        console.print(f"no store at {settings.store_dir} yet: run `phago ingest PATH` first")
        raise typer.Exit(0)
    try:
        detector = streaming_detector(settings, rules)
        with parquet_store(settings.store_dir) as store:
            reader = store.connect().sql("SELECT * FROM events").to_arrow_reader(batch_rows)
            for batch in reader:
                detector(pa.Table.from_batches([batch]))
        finish_detection(settings, detector, out_file)
    except PhagocyteError as exc:
        raise _fail(exc) from exc


@rules_app.command("check")
def rules_check(
    paths: Annotated[list[Path] | None, typer.Argument(help="Rule files or folders (default: the rule path).")] = None,
    home: HomeOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Errors and counts as JSON on stdout.")] = False,
) -> None:
    """Compile rules and report what compiles and why each failure failed. Exit 0 all compile, 3 some fail."""
    settings = _settings(home)
    for p in paths or []:
        if not p.exists():
            console.print(f"[red]error:[/red] no such rule file or folder: {p}")
            raise typer.Exit(2)
    rs = load_rules(rule_paths(settings, paths))
    unmapped = [r for r in rs.primary if not r.route.mapped]
    share = (len(rs.primary) + len(rs.correlations)) / rs.total if rs.total else 1.0
    if json_out:
        out.print_json(json.dumps({
            "files": rs.files, "rules": len(rs.primary), "correlations": len(rs.correlations),
            "failed": len(rs.errors), "compiled_share": share, "unmapped_logsource": len(unmapped),
            "errors": [e.__dict__ if hasattr(e, "__dict__") else
                       {"path": e.path, "rule_id": e.rule_id, "title": e.title, "reason": e.reason}
                       for e in rs.errors],
        }))
    else:
        t = Table(title=f"Sigma rules: {len(rs.primary) + len(rs.correlations):,} of {rs.total:,} compile "
                        f"({share:.1%}), from {rs.files:,} files")
        t.add_column("what")
        t.add_column("count", justify="right")
        t.add_row("detection rules", f"{len(rs.primary):,}")
        t.add_row("  of which also run on Security 4688 (process creation)",
                  f"{sum(1 for r in rs.rules if r.variant):,}")
        t.add_row("correlation rules", f"{len(rs.correlations):,}")
        t.add_row("failed", f"{len(rs.errors):,}")
        t.add_row("log source not mapped (run on all events of their product)", f"{len(unmapped):,}")
        out.print(t)
        if rs.errors:
            et = Table(title="Rules that do not compile")
            et.add_column("file", overflow="fold")
            et.add_column("rule", overflow="fold")
            et.add_column("reason", overflow="fold")
            for e in rs.errors[:200]:
                et.add_row(e.path, e.title or e.rule_id or "", e.reason)
            out.print(et)
    raise typer.Exit(3 if rs.errors else 0)


@rules_app.command("sync")
def rules_sync(
    home: HomeOpt = None,
    archive: Annotated[Path | None, typer.Option("--archive", help="Unpack this release zip instead of "
                                                 "downloading (offline machines).")] = None,
    url: Annotated[str | None, typer.Option("--api", help="Release API URL (default: SigmaHQ's latest).")] = None,
) -> None:
    """Fetch the latest SigmaHQ rule release into $PHAGO_HOME/rules/sigmahq (then part of the rule path)."""
    from phagocyte.detect.sync import SyncError, fetch_latest, unpack_release  # urllib: only for this command

    settings = _settings(home)
    target = settings.rules_dir / "sigmahq"
    try:
        if archive is not None:
            n, tag = unpack_release(archive, target), archive.name
        else:
            from phagocyte.detect.sync import RELEASE_API

            tag, n = fetch_latest(target, api=url or RELEASE_API)
    except SyncError as exc:
        raise _fail(exc) from exc
    console.print(f"SigmaHQ rules {tag}: {n:,} rule files in {target}")


def register(app: typer.Typer) -> None:
    app.command()(hunt)
    app.command()(detect)
    app.add_typer(rules_app, name="rules")
