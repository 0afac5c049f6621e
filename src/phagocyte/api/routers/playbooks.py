"""Playbooks and their runs: request (dry-run by default), approve, reject."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from phagocyte.api.auth import require
from phagocyte.api.schemas import RunIn
from phagocyte.cases.service import Principal

IncidentId = Annotated[str, Path(max_length=64)]
router = APIRouter(prefix="/api", tags=["response"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Analyst = Annotated[Principal, Depends(require("analyst"))]


@router.get("/playbooks")
def list_playbooks(request: Request, _: Viewer) -> dict[str, Any]:
    r = request.app.state.responder
    return {"items": [{"name": p.name, "description": p.description, "destructive": p.destructive,
                       "version": p.version, "steps": [s.action for s in p.steps]} for p in r.playbooks.values()],
            "errors": r.errors}


@router.get("/incidents/{incident_id}/runs")
def incident_runs(request: Request, incident_id: IncidentId, _: Viewer) -> dict[str, Any]:
    request.app.state.cases.get(incident_id)
    return {"items": request.app.state.responder.runs(incident_id)}


@router.post("/incidents/{incident_id}/playbooks/{name}/runs")
def request_run(request: Request, incident_id: IncidentId, name: Annotated[str, Path(max_length=100)], body: RunIn,
                who: Analyst) -> dict[str, Any]:
    """Start a run (idempotent: the same playbook version on the same incident in the same mode is one run)."""
    return dict(request.app.state.responder.request(incident_id, name, who, dry_run=body.dry_run))


@router.post("/runs/{run_id}/approve")
def approve(request: Request, run_id: Annotated[int, Path(ge=1, le=2**62)], who: Analyst) -> dict[str, Any]:
    return dict(request.app.state.responder.approve(run_id, who))


@router.post("/runs/{run_id}/reject")
def reject(request: Request, run_id: Annotated[int, Path(ge=1, le=2**62)], who: Analyst) -> dict[str, Any]:
    return dict(request.app.state.responder.reject(run_id, who))
