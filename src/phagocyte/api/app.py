"""The FastAPI application: API routers under `/api/`, the console at `/`, one case store, one store.

`create_app(settings)` is all a server or a test needs; nothing is global, so tests run several
apps (SQLite and PostgreSQL) side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from phagocyte import __version__
from phagocyte.api.auth import RateLimiter
from phagocyte.api.routers import admin, analyse, events, incidents, playbooks
from phagocyte.cases.service import CaseError, CaseStore, JsonlVerdictSink, NotFound
from phagocyte.config import Settings
from phagocyte.errors import ConfigError, PhagocyteError
from phagocyte.respond.service import Responder, ResponseConfig
from phagocyte.store.parquet import ParquetStore

__all__ = ["create_app"]

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def create_app(settings: Settings, *, cases: CaseStore | None = None, console: bool = True) -> FastAPI:
    app = FastAPI(title="Phagocyte", version=__version__, openapi_url="/openapi.json", docs_url="/api/docs",
                  redoc_url=None,
                  description="Security operations API: events, alerts, incidents, verdicts, response playbooks. "
                              "Every endpoint needs a bearer token (`phago token create --role ROLE`).")
    settings.home.mkdir(parents=True, exist_ok=True)
    app.state.settings = settings
    app.state.cases = cases or CaseStore(settings.cases_db, verdicts=JsonlVerdictSink(settings.home / "verdicts.jsonl"))
    app.state.responder = Responder(app.state.cases, ResponseConfig.from_env(settings.home))
    app.state.limiter = RateLimiter(settings.api_rate, 2 * settings.api_rate)
    app.state.max_body = settings.api_max_body
    lock = threading.Lock()
    holder: dict[str, ParquetStore] = {}

    def store() -> ParquetStore:
        with lock:
            if "s" not in holder:
                holder["s"] = ParquetStore(settings.store_dir)
            return holder["s"]

    def store_changed() -> None:
        with lock:
            old = holder.pop("s", None)
        if old is not None:
            old.close()

    app.state.store = store
    app.state.store_changed = store_changed

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(CaseError)
    async def _case_error(_: Request, exc: CaseError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(PhagocyteError)
    async def _error(_: Request, exc: PhagocyteError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, exc: ConfigError) -> JSONResponse:
        # The server's set-up (a team model this version cannot read), not the request: retry after fixing it.
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for k, v in _SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    for module in (incidents, playbooks, events, analyse, admin):
        app.include_router(module.router)
    if console:
        from phagocyte.web.console import mount_static
        from phagocyte.web.console import router as console_router

        app.include_router(console_router)
        mount_static(app)
    return app


def route_roles(app: FastAPI) -> list[tuple[str, str, str | None]]:
    """(method, path, minimum role or None) of every API route: what the auth test walks."""
    from fastapi.routing import APIRoute

    from phagocyte.api.auth import RoleRequirement

    out: list[tuple[str, str, str | None]] = []
    stack: list[Any] = list(app.routes)
    while stack:
        route = stack.pop(0)
        sub = getattr(route, "original_router", None)  # FastAPI wraps included routers
        if sub is not None:
            stack.extend(sub.routes)
            continue
        if not isinstance(route, APIRoute):
            continue
        roles = [d.call.role for d in route.dependant.dependencies if isinstance(d.call, RoleRequirement)]
        for method in sorted(route.methods or ()):
            out.append((method, route.path, roles[0] if roles else None))
    return out
