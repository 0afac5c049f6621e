"""`phago email`: verdicts on messages, and the command that trains the classifier (transport only)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from phagocyte.cli.app import HomeOpt, _settings, console, out

ModelOpt = Annotated[Path | None, typer.Option(
    "--model", help="Model folder (default $PHAGO_HOME/models/email when present; none: signals only).")]


def _model_dir(model: Path | None, home: Path | None) -> Path | None:
    if model is not None:
        return model
    default = _settings(home).home / "models" / "email"
    return default if (default / "model.json").exists() else None


_WORKER_MODEL: Any = None


def _init(folder: str | None) -> None:
    global _WORKER_MODEL
    if folder:
        from phagocyte.email.model import EmailModel

        _WORKER_MODEL = EmailModel.load(Path(folder))


def _one(item: tuple[str, bytes]) -> dict[str, Any]:
    from phagocyte.email.verdict import analyse

    return analyse(item[1], item[0], model=_WORKER_MODEL).to_dict()


def _verdicts(paths: list[Path], folder: Path | None, jobs: int) -> Iterator[dict[str, Any]]:
    from phagocyte.email.mailbox import Skipped, iter_messages

    def items() -> Iterator[tuple[str, bytes]]:
        for m in iter_messages(paths):
            if isinstance(m, Skipped):
                console.print(f"[yellow]skipped[/yellow] {m.path}: {m.reason}")
            else:
                yield m

    if jobs <= 1:
        _init(str(folder) if folder else None)
        yield from map(_one, items())
        return
    from concurrent.futures import ProcessPoolExecutor  # multiprocessing: ~0.1 s of every phago start

    with ProcessPoolExecutor(jobs, initializer=_init, initargs=(str(folder) if folder else None,)) as ex:
        batch: list[tuple[str, bytes]] = []
        for item in items():  # in batches: a big mailbox is never held in memory whole
            batch.append(item)
            if len(batch) >= 256:
                yield from ex.map(_one, batch, chunksize=8)
                batch = []
        yield from ex.map(_one, batch, chunksize=8)


def email(
    paths: Annotated[list[Path], typer.Argument(
        help=".eml, .msg, mbox files or folders; or: train HAM_DIR PHISH_DIR [SPAM_DIR].", show_default=False)],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write one JSON object per message here.")] = None,
    alerts: Annotated[Path | None, typer.Option("--alerts", help="Write ECS alerts (JSON lines) for phishing.")] = None,
    model: ModelOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Worker processes.")] = min(2, os.cpu_count() or 1),
    strip: Annotated[bool, typer.Option("--strip-provenance/--keep-provenance", help="train: learn from content "
                                        "only (dates, Received, list headers removed).")] = True,
    home: HomeOpt = None,
) -> None:
    """Phishing e-mail analysis: one verdict per message (phishing, spam, clean), its score and the reasons.

    - `phago email PATH...` judges messages (exit 4 when one is phishing, 0 otherwise);
    - `phago email train HAM_DIR PHISH_DIR [SPAM_DIR] --model DIR` trains the classifier on your mail."""
    if paths and str(paths[0]) == "train" and not paths[0].exists():
        if len(paths) not in (3, 4):
            console.print("[red]error:[/red] usage: phago email train HAM_DIR PHISH_DIR [SPAM_DIR] [--model DIR]")
            raise typer.Exit(2)
        train(paths[1], paths[2], paths[3] if len(paths) == 4 else None, model, strip, home)
        return
    from phagocyte.alerts import to_json
    from phagocyte.email.alerts import verdict_to_alert

    folder = _model_dir(model, home)
    if model is not None and not (model / "model.json").exists():
        console.print(f"[red]error:[/red] no model at {model} (train one: phago email train)")
        raise typer.Exit(2)
    if folder is not None:
        from phagocyte.email.model import EmailModel

        why = EmailModel.problem(folder)
        if why:
            console.print(f"[red]error:[/red] {why}")
            raise typer.Exit(2)
    table = Table("message", "label", "score", "reasons", title="E-mail verdicts" + (" (model)" if folder else
                                                                                       " (signals only)"))
    counts: dict[str, int] = {}
    fh = out_file.open("w") if out_file else None
    ah = alerts.open("w") if alerts else None
    try:
        for v in _verdicts(paths, folder, jobs):
            counts[v["label"]] = counts.get(v["label"], 0) + 1
            if fh:
                fh.write(json.dumps(v, ensure_ascii=False, default=str) + "\n")
            if ah and v["label"] == "phishing":
                ah.write(json.dumps(to_json(verdict_to_alert(v)), ensure_ascii=False, default=str) + "\n")
            colour = {"phishing": "red", "spam": "yellow"}.get(v["label"], "green")
            why = "; ".join(f"{r['code']}: {', '.join(map(str, r['evidence'][:2]))}"[:120]
                            for r in v["reasons"][:3])
            if len(table.rows) < 200:
                table.add_row(v["path"][-60:], f"[{colour}]{v['label']}[/{colour}]", f"{v['score']:.2f}", why)
    finally:
        if fh:
            fh.close()
        if ah:
            ah.close()
    out.print(table)
    console.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no messages")
    raise typer.Exit(4 if counts.get("phishing") else 0)


def train(ham_dir: Path, phish_dir: Path, spam_dir: Path | None, model: Path | None, strip: bool,
          home: Path | None) -> None:
    """Train the classifier on your own mail: HAM_DIR, PHISH_DIR and optionally SPAM_DIR."""
    from phagocyte.email.mailbox import Skipped, iter_messages
    from phagocyte.email.model import features
    from phagocyte.email.model import train as fit
    from phagocyte.email.parse import parse_message
    from phagocyte.email.provenance import strip_provenance
    from phagocyte.email.signals import collect

    target = model or _settings(home).home / "models" / "email"
    rows: list[list[tuple[str, float]]] = []
    labels: list[str] = []
    sources: dict[str, str] = {}
    for label, folder in (("clean", ham_dir), ("phishing", phish_dir), ("spam", spam_dir)):
        if folder is None:
            continue
        sources[label] = str(folder)
        n = 0
        for m in iter_messages([folder]):
            if isinstance(m, Skipped):
                console.print(f"[yellow]skipped[/yellow] {m.path}: {m.reason}")
                continue
            raw = strip_provenance(m[1]) if strip else m[1]
            pm = parse_message(raw)
            reasons, _ = collect(pm)
            rows.append(features(pm, reasons))
            labels.append(label)
            n += 1
        console.print(f"{label}: {n} messages from {folder}")
    try:
        trained = fit(rows, labels, meta={"sources": sources, "strip_provenance": strip})
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    trained.save(target)
    counts = ", ".join(f"{k} {v}" for k, v in trained.meta["counts"].items())
    out.print(f"model written to [bold]{target}[/bold] ({counts})")
