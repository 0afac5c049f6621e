"""Console pages: login, incident queue, incident page, search, dashboard, audit.

Authentication is the API token, kept in an HttpOnly, SameSite=Strict cookie after login; every
form also carries a CSRF token derived from it. Pages call the same services as the API routes.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from phagocyte.api.auth import COOKIE
from phagocyte.api.routers.events import ALL_ALERTS
from phagocyte.attack import tactic_rank
from phagocyte.cases.service import CaseError, Principal
from phagocyte.web.graph import bars, entity_graph
from phagocyte.web.report import by_time, first_value, tactic_name

__all__ = ["router"]

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(_HERE / "templates"))
templates.env.filters["tactic"] = tactic_name
router = APIRouter(include_in_schema=False)
PAGE = 50


def _csrf(token: str) -> str:
    return hmac.new(b"phagocyte-csrf", token.encode(), hashlib.sha256).hexdigest()[:32]


def _principal(request: Request) -> tuple[Principal, str] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    p = request.app.state.cases.verify_token(token)
    return (p, token) if p else None


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def _page(request: Request, name: str, **ctx: Any) -> Response:
    who = ctx.pop("who")
    token = ctx.pop("token")
    return templates.TemplateResponse(request, name, {"who": who, "csrf": _csrf(token), **ctx})


def _check(request: Request, csrf: str) -> Principal:
    auth = _principal(request)
    if auth is None:
        raise HTTPException(401, "log in first")
    p, token = auth
    if not hmac.compare_digest(csrf, _csrf(token)):
        raise HTTPException(403, "bad CSRF token")
    if not p.can("analyst"):
        raise HTTPException(403, "needs the analyst role")
    return p


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", error: str = "") -> Response:
    return templates.TemplateResponse(request, "login.html", {"next": next, "error": error, "who": None})


@router.post("/login")
def login(request: Request, token: Annotated[str, Form(max_length=200)],
          next: Annotated[str, Form(max_length=500)] = "/") -> Response:
    if request.app.state.cases.verify_token(token) is None:
        return templates.TemplateResponse(request, "login.html", {"next": next, "error": "invalid token", "who": None},
                                          status_code=401)
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                    max_age=12 * 3600)
    return resp


@router.get("/logout")
def logout() -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, status: str = "", page: int = 0) -> Response:
    auth = _principal(request)
    if auth is None:
        return _login_redirect(request)
    cases = request.app.state.cases
    st = status if status in ("new", "in_progress", "resolved") else None
    items = cases.queue(status=st, limit=PAGE, offset=max(page, 0) * PAGE)
    return _page(request, "queue.html", who=auth[0], token=auth[1], items=items, status=status, page=max(page, 0),
                 total=cases.count(status=st), per_page=PAGE, stats=cases.dashboard())


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident(request: Request, incident_id: str) -> Response:
    auth = _principal(request)
    if auth is None:
        return _login_redirect(request)
    cases, responder = request.app.state.cases, request.app.state.responder
    inc = cases.get(incident_id)
    evidence = by_time(inc.get("evidence") or [])
    tactics = sorted(inc.get("tactics") or [], key=tactic_rank)
    return _page(request, "incident.html", who=auth[0], token=auth[1], inc=inc, evidence=evidence, tactics=tactics,
                 graph=entity_graph(inc.get("entities") or {}), playbooks=responder.applicable(inc),
                 runs=responder.runs(incident_id), audit=cases.audit(incident_id=incident_id, limit=200),
                 first=first_value)


@router.post("/incidents/{incident_id}/verdict")
def verdict(request: Request, incident_id: str, verdict: Annotated[str, Form()], csrf: Annotated[str, Form()],
            note: Annotated[str, Form(max_length=5000)] = "") -> Response:
    who = _check(request, csrf)
    request.app.state.cases.verdict(incident_id, who.name, verdict, note or None)
    return RedirectResponse(f"/incidents/{quote(incident_id)}#audit", status_code=303)


@router.post("/incidents/{incident_id}/update")
def update(request: Request, incident_id: str, csrf: Annotated[str, Form()], status: Annotated[str, Form()] = "",
           assignee: Annotated[str, Form(max_length=100)] = "") -> Response:
    who = _check(request, csrf)
    request.app.state.cases.update(incident_id, who.name, status=status or None, assignee=assignee or None)
    return RedirectResponse(f"/incidents/{quote(incident_id)}", status_code=303)


@router.post("/incidents/{incident_id}/comment")
def comment(request: Request, incident_id: str, csrf: Annotated[str, Form()],
            text: Annotated[str, Form(max_length=20000)]) -> Response:
    who = _check(request, csrf)
    request.app.state.cases.comment(incident_id, who.name, text)
    return RedirectResponse(f"/incidents/{quote(incident_id)}#comments", status_code=303)


@router.post("/incidents/{incident_id}/run")
def run_playbook(request: Request, incident_id: str, csrf: Annotated[str, Form()],
                 playbook: Annotated[str, Form(max_length=100)]) -> Response:
    who = _check(request, csrf)
    request.app.state.responder.request(incident_id, playbook, who, dry_run=True)
    return RedirectResponse(f"/incidents/{quote(incident_id)}#runs", status_code=303)


@router.post("/incidents/merge")
def merge(request: Request, csrf: Annotated[str, Form()], ids: Annotated[list[str], Form()]) -> Response:
    who = _check(request, csrf)
    try:
        target = request.app.state.cases.merge(ids[:100], who.name)
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from exc
    return RedirectResponse(f"/incidents/{quote(target['id'])}", status_code=303)


@router.post("/incidents/{incident_id}/split")
def split(request: Request, incident_id: str, csrf: Annotated[str, Form()],
          refs: Annotated[list[str], Form()]) -> Response:
    who = _check(request, csrf)
    try:
        new = request.app.state.cases.split(incident_id, refs[:10_000], who.name)
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from exc
    return RedirectResponse(f"/incidents/{quote(new['id'])}", status_code=303)


@router.post("/runs/{run_id}/decide")
def decide(request: Request, run_id: Annotated[int, PathParam(ge=1, le=2**62)], csrf: Annotated[str, Form()],
           decision: Annotated[str, Form()]) -> Response:
    who = _check(request, csrf)
    responder = request.app.state.responder
    try:
        run = responder.approve(run_id, who) if decision == "approve" else responder.reject(run_id, who)
    except CaseError as exc:
        raise HTTPException(409, str(exc)) from exc
    return RedirectResponse(f"/incidents/{quote(run['incident_id'])}#runs", status_code=303)


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, q: str = "") -> Response:
    auth = _principal(request)
    if auth is None:
        return _login_redirect(request)
    incidents: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if q.strip():
        from phagocyte.api.routers.events import search as api_search

        res = api_search(request, auth[0], q=q[:300], limit=100)
        incidents, events = res["incidents"], res["events"]
    return _page(request, "search.html", who=auth[0], token=auth[1], q=q, incidents=incidents, events=events)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    auth = _principal(request)
    if auth is None:
        return _login_redirect(request)
    d = request.app.state.cases.dashboard()
    volume: list[tuple[str, float]] = []
    try:
        t = request.app.state.store().query(
            "SELECT strftime(\"@timestamp\", '%Y-%m-%d') AS day, count(*) AS n FROM " + ALL_ALERTS +
            " WHERE \"@timestamp\" IS NOT NULL GROUP BY 1 ORDER BY 1 DESC LIMIT 30")
        volume = [(r["day"], float(r["n"])) for r in reversed(t.to_pylist())]
    except Exception:  # an empty or unreadable store shows no volume chart, the rest still renders
        volume = []
    status_bars = bars([(k, float(d["by_status"].get(k, 0))) for k in ("new", "in_progress", "resolved")], width=300)
    return _page(request, "dashboard.html", who=auth[0], token=auth[1], d=d, volume=bars(volume),
                 status_bars=status_bars)


def mount_static(app: Any) -> None:
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
