"""`phago token`, `phago serve`, `phago cases`: the case store, the API and the console from the shell."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from phagocyte.cli.app import HomeOpt, _fail, _settings, app, console, out
from phagocyte.config import Settings
from phagocyte.errors import PhagocyteError

token_app = typer.Typer(help="API tokens (stored hashed; shown once).", no_args_is_help=True)
cases_app = typer.Typer(help="The case store: import incidents, list the queue.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(cases_app, name="cases")


def _cases(home: Path | None):  # type: ignore[no-untyped-def]
    from phagocyte.cases.service import CaseStore, JsonlVerdictSink

    settings = _settings(home)
    settings.home.mkdir(parents=True, exist_ok=True)
    return CaseStore(settings.cases_db, verdicts=JsonlVerdictSink(settings.home / "verdicts.jsonl"))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="viewer, analyst or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what holds it.")] = "",
    home: HomeOpt = None,
) -> None:
    """Create an API token and print it (only its SHA-256 is kept)."""
    try:
        token = _cases(home).create_token(role, name or role)
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    out.print(token, soft_wrap=True)


@token_app.command("list")
def token_list(home: HomeOpt = None) -> None:
    """Tokens by name, role and prefix (never the token itself)."""
    for t in _cases(home).list_tokens():
        out.print(f"{t['id']:>4}  {t['role']:<8} {t['name']:<24} {t['prefix']}…  {'revoked' if t['revoked'] else ''}")


@token_app.command("revoke")
def token_revoke(token_id: int, home: HomeOpt = None) -> None:
    """Revoke a token by its id (see `phago token list`)."""
    try:
        _cases(home).revoke_token(token_id, "cli")
    except PhagocyteError as exc:
        raise _fail(exc) from exc


@cases_app.command("import")
def cases_import(
    path: Annotated[Path, typer.Argument(help="Incidents as JSON lines (the `phago triage --out` file).")],
    home: HomeOpt = None,
) -> None:
    """Add triage's incidents to the case store (analyst work on existing ones is kept)."""
    docs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                docs.append(json.loads(line))
            except ValueError as exc:
                console.print(f"[red]error:[/red] {path}:{n}: not JSON ({exc})")
                raise typer.Exit(1) from exc
    try:
        res = _cases(home).import_incidents(docs, "cli")
    except PhagocyteError as exc:
        raise _fail(exc) from exc
    out.print(f"{res['created']} incidents created, {res['updated']} updated")


@cases_app.command("list")
def cases_list(home: HomeOpt = None, limit: int = 20) -> None:
    """The queue in priority order."""
    from rich.table import Table

    t = Table()
    for c in ("score", "disposition", "status", "incident", "alerts"):
        t.add_column(c)
    for i in _cases(home).queue(limit=limit):
        t.add_row(f"{i['score']:.2f}", i["disposition"], i["status"], i["title"] or i["id"], str(i["alert_count"]))
    out.print(t)


@app.command()
def serve(
    home: HomeOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8000,
) -> None:
    """Serve the REST API under /api/ (OpenAPI at /openapi.json) and the web console at /."""
    import uvicorn

    from phagocyte.api.app import create_app

    settings = _settings(home)
    console.print(f"Phagocyte on http://{host}:{port}/  (API /api/, OpenAPI /openapi.json; "
                  f"log in with a token from `phago token create --role analyst`)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", proxy_headers=False)


def stable_incident_id(doc: dict[str, Any]) -> str:
    """A case id that survives re-runs: triage numbers incidents by queue rank (INC-00001 is the top one
    today), so the case store keys an incident by where it starts (first alert reference and time)."""
    import hashlib

    refs = sorted(str(r) for r in doc.get("alert_refs") or [])
    seed = f"{refs[0] if refs else doc.get('id')}|{doc.get('first_seen')}"
    return "INC-" + hashlib.blake2b(seed.encode(), digest_size=5).hexdigest()


def publish_run(settings: Settings, incidents_path: Path, stats: dict[str, Any],
                stamp: str | None = None) -> Path | None:
    """End of `phago run`: triage's incidents into the case store, and the static HTML report (named
    `run-STAMP.html`, the run reports' stamp when given). Returns its path."""
    from phagocyte.web.report import write_html_report

    docs: list[dict[str, Any]] = []
    if incidents_path.exists():
        docs = [json.loads(line) for line in incidents_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if docs:
        _cases(settings.home).import_incidents([{**d, "id": stable_incident_id(d)} for d in docs], "phago run")
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    verdicts = settings.reports_dir / "artefacts.jsonl"
    artefacts = [json.loads(x) for x in verdicts.read_text(encoding="utf-8").splitlines() if x.strip()] \
        if verdicts.exists() else []
    return write_html_report(settings.reports_dir / f"run-{stamp}.html", docs, title="phago run", stats=stats,
                             artefacts=artefacts)
