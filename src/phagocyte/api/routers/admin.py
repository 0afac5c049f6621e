"""Who am I, dashboard numbers, the audit trail and token administration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from phagocyte.api.auth import require
from phagocyte.api.schemas import TokenIn
from phagocyte.cases.service import Principal

router = APIRouter(prefix="/api", tags=["admin"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Analyst = Annotated[Principal, Depends(require("analyst"))]
Admin = Annotated[Principal, Depends(require("admin"))]


@router.get("/me")
def me(who: Viewer) -> dict[str, str]:
    return {"name": who.name, "role": who.role}


@router.get("/dashboard")
def dashboard(request: Request, _: Viewer) -> dict[str, Any]:
    """Incidents by status/disposition/verdict, alerts folded into incidents, workload reduction, time to resolve."""
    return dict(request.app.state.cases.dashboard())


@router.get("/audit")
def audit(request: Request, _: Analyst, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    """Every action, newest first: who, what, when, result."""
    return {"items": request.app.state.cases.audit(limit=limit, offset=offset)}


@router.get("/tokens")
def list_tokens(request: Request, _: Admin) -> dict[str, Any]:
    return {"items": request.app.state.cases.list_tokens()}


@router.post("/tokens")
def create_token(request: Request, body: TokenIn, who: Admin) -> dict[str, str]:
    """A new token, shown once (only its hash is stored)."""
    return {"token": request.app.state.cases.create_token(body.role, body.name, who.name), "role": body.role}


@router.delete("/tokens/{token_id}")
def revoke_token(request: Request, token_id: Annotated[int, Path(ge=1, le=2**62)], who: Admin) -> dict[str, bool]:
    request.app.state.cases.revoke_token(token_id, who.name)
    return {"revoked": True}
