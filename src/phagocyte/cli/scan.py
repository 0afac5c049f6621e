"""`phago scan`, `phago scan-train`, `phago scan-events`: transport only; the analysers do the work."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from phagocyte.cli.app import HomeOpt, _fail, _settings, app, console, out
from phagocyte.errors import PhagocyteError

if TYPE_CHECKING:  # the analysers load only when a scan command runs (start-up cost of every `phago`)
    from phagocyte.analysers.scan import Scanner
    from phagocyte.analysers.verdict import Verdict

__all__ = ["scan", "scan_events", "scan_train"]

_STYLE = {"malicious": "bold red", "suspicious": "yellow", "clean": "green"}
YaraOpt = Annotated[list[Path] | None, typer.Option("--yara", help="YARA rule file or folder (repeatable).")]
ModelOpt = Annotated[Path | None, typer.Option("--model", envvar="PHAGO_SCAN_MODEL",
                                               help="Folder of a model trained with `phago scan-train`.")]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phagocyte" / "yara"


def _scanner(yara: list[Path] | None, model: Path | None) -> Scanner:
    from phagocyte.analysers.limits import ScanLimits
    from phagocyte.analysers.scan import Scanner

    rules = None
    if yara:
        from phagocyte.analysers.yara import YaraRules

        with console.status("compiling YARA rules (cached after the first run)"):
            rules = YaraRules.compile(yara, cache_dir=_cache_dir())
        console.print(f"YARA: {rules.count} rule files, {len(rules.skipped)} rules skipped (cannot compile)")
        for s in rules.skipped[:10]:
            console.print(f"  [dim]skipped {s['rule']} in {Path(s['file']).name}: {s['reason']}[/dim]")
    clf = None
    if model:
        from phagocyte.analysers.classifier import ScriptClassifier

        clf = ScriptClassifier.load(model)
    return Scanner(ScanLimits(), yara=rules, model=clf)


def _table(verdicts: list[Verdict]) -> Table:
    t = Table("label", "score", "kind", "path", "reasons", title=f"{len(verdicts)} files")
    for v in sorted(verdicts, key=lambda v: -v.score):
        reasons = ", ".join(r.name for r in sorted(v.reasons, key=lambda r: -r.weight)[:4])
        if v.errors:
            reasons += f" [dim]({'; '.join(v.errors)[:80]})[/dim]"
        t.add_row(f"[{_STYLE[v.label]}]{v.label}[/]", f"{v.score:.2f}", v.kind, v.path, reasons)
    return t


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to analyse (nothing is executed).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write one JSON object per file (JSON lines).")] = None,
    yara: YaraOpt = None,
    model: ModelOpt = None,
) -> None:
    """Judge scripts (PowerShell, JavaScript, VBScript, batch, HTA, shell, Python), Office macros, PDFs, PE
    and ELF files: deobfuscate, explain, score. One verdict per file: malicious, suspicious or clean."""
    from phagocyte.analysers.scan import iter_scan_files

    try:
        scanner = _scanner(yara, model)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    verdicts: list[Verdict] = []
    sink = open(out_file, "w", encoding="utf-8") if out_file else None
    try:
        for f in iter_scan_files(list(paths)):
            v = scanner.scan_path(f)
            verdicts.append(v)
            if sink:
                sink.write(json.dumps(v.to_json(), ensure_ascii=False) + "\n")
    finally:
        if sink:
            sink.close()
    out.print(_table(verdicts))
    counts = {k: sum(v.label == k for v in verdicts) for k in ("malicious", "suspicious", "clean")}
    console.print(", ".join(f"{n} {k}" for k, n in counts.items()) + (f"; verdicts in {out_file}" if out_file else ""))
    if scanner.yara is not None and scanner.yara.timeouts:
        console.print(f"[yellow]YARA: {scanner.yara.timeouts} scans ran out of their {scanner.yara.timeout} s budget; "
                      "those files say so in their errors[/yellow]")


@app.command("scan-train")
def scan_train(
    language: Annotated[str, typer.Option("--language", "-l", help="powershell, javascript, vbscript, ...")],
    malicious: Annotated[list[Path], typer.Option("--malicious", help="Folder of malicious scripts (repeatable).")],
    benign: Annotated[list[Path], typer.Option("--benign", help="Folder of benign scripts (repeatable).")],
    model: Annotated[Path, typer.Option("--model", help="Output folder (model.joblib + MODEL_CARD.md).")],
    licences: Annotated[str, typer.Option("--licences", help="Licences of the training data, for the card.")] =
        "not stated",
    chars: Annotated[bool, typer.Option(
        "--chars/--words-only", help="Character 2-5-grams beside the words (slower; not evaluated).")] = False,
    target_fpr: Annotated[float, typer.Option(
        "--target-fpr", min=0.0, max=0.5, help="False-positive share allowed on the inner split that sets the "
        "threshold.")] = 0.005,
) -> None:
    """Train the script classifier for one language on deobfuscated text; other languages already in the
    model folder are kept. Duplicate contents are dropped, and contents under both labels too. The decision
    threshold is chosen on an inner split of the training data (<= 0.5 % false positives there); the verdict's
    combined score is a stacked model (text probability + heuristics) fitted on inner cross-validation."""
    from phagocyte.analysers.classifier import ScriptClassifier, TrainingSet, stack_features
    from phagocyte.analysers.limits import ScanLimits
    from phagocyte.analysers.scan import iter_scan_files
    from phagocyte.analysers.scripts import analyse_script

    clf = ScriptClassifier()
    if (model / "model.joblib").exists():
        why = ScriptClassifier.problem(model)
        if why is None:
            clf = ScriptClassifier.load(model)
        else:  # an older format: its other languages cannot be kept, say so rather than mixing formats
            console.print(f"[yellow]{why}; starting a new model there (its other languages are not kept)[/yellow]")
    texts: list[str] = []
    labels: list[int] = []
    features: list[list[float]] = []
    limits = ScanLimits(max_seconds=2.0)
    for label, folders in ((1, malicious), (0, benign)):
        for f in iter_scan_files(list(folders)):
            v = analyse_script(f.read_bytes()[: limits.max_file_bytes], str(f), language=language, limits=limits)
            texts.append(v.deobfuscated if v.deobfuscated is not None else f.read_text("utf-8", errors="replace"))
            labels.append(label)
            features.append(stack_features(language, v.reasons, v.layers))
    try:
        stats = clf.fit(language, texts, labels, chars=chars, target_fpr=target_fpr, features=features)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    sources = [TrainingSet(language, [str(p) for p in malicious], [str(p) for p in benign], licences)]
    clf.save(model, sources)
    console.print(f"{language}: trained on {stats['malicious']} malicious + {stats['benign']} benign distinct "
                  f"scripts ({stats['input'] - stats['distinct']} duplicates, {stats['conflicting']} conflicting "
                  f"dropped); text threshold {stats['threshold']}, combined threshold "
                  f"{stats['stack']['threshold']}; model in {model}")


@app.command("scan-events")
def scan_events(
    home: HomeOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the alerts as JSON lines.")] = None,
    min_label: Annotated[str, typer.Option("--min-label", help="suspicious or malicious.")] = "suspicious",
    model: ModelOpt = None,
) -> None:
    """Run the script analysers over PowerShell script blocks (4104) and process command lines (Sysmon 1,
    4688) in the store; print the verdicts that reach --min-label as alerts."""
    from phagocyte.alerts import to_json
    from phagocyte.analysers.events import scan_store
    from phagocyte.store.parquet import ParquetStore

    if min_label not in ("suspicious", "malicious"):
        console.print("[red]error:[/red] --min-label is suspicious or malicious")
        raise typer.Exit(2)
    settings = _settings(home)
    try:
        scanner = _scanner(None, model)
        with ParquetStore(settings.store_dir) as store:
            alerts, stats = scan_store(store, scanner, min_label=min_label)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    t = Table("level", "score", "host", "kind", "ref", "reasons", title=f"{len(alerts)} scan alerts")
    for a in sorted(alerts, key=lambda a: -float(a.get("event.risk_score", 0))):
        j = to_json(a)
        t.add_row(a.get("rule.level", ""), f"{a.get('event.risk_score', 0):.0f}", str(a.get("host.name", "")),
                  a.get("rule.category", ""), j.get("alert_ref", ""), str(a.get("rule.description", ""))[:100])
    out.print(t)
    console.print(f"{stats.script_blocks} script blocks, {stats.command_lines} command lines: {stats.by_label}")
    if out_file:
        with open(out_file, "w", encoding="utf-8") as fh:
            for a in alerts:
                fh.write(json.dumps(to_json(a), default=str) + "\n")
    sys.stdout.flush()
