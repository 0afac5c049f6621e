"""Incidents: the queue, one incident, status/assignee, comments, verdicts, merge, split, import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from phagocyte.api.auth import require
from phagocyte.api.body import ndjson, read_limited
from phagocyte.api.schemas import CommentIn, IncidentPatch, MergeIn, SplitIn, VerdictIn
from phagocyte.cases.service import Principal

IncidentId = Annotated[str, Path(max_length=64)]
router = APIRouter(prefix="/api/incidents", tags=["incidents"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Analyst = Annotated[Principal, Depends(require("analyst"))]


@router.get("")
def list_incidents(request: Request, _: Viewer,
                   status: Annotated[str | None, Query(pattern="^(new|in_progress|resolved)$")] = None,
                   disposition: Annotated[str | None, Query(pattern="^(escalate|monitor|auto_close)$")] = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    """Incidents in priority order (escalated first, then by score)."""
    cases = request.app.state.cases
    return {"total": cases.count(status=status),
            "items": cases.queue(status=status, disposition=disposition, limit=limit, offset=offset)}


@router.post("/import")
async def import_incidents(request: Request, who: Analyst) -> dict[str, int]:
    """Add triage's incidents: NDJSON, one incident per line (the `phago triage --out` format)."""
    body = await read_limited(request, request.app.state.max_body)
    docs = ndjson(body, max_lines=100_000)
    return dict(request.app.state.cases.import_incidents(docs, who.name))


@router.post("/merge")
def merge(request: Request, body: MergeIn, who: Analyst) -> dict[str, Any]:
    """Fold the listed incidents into the first one."""
    return dict(request.app.state.cases.merge(body.incident_ids, who.name))


@router.get("/{incident_id}")
def get_incident(request: Request, incident_id: IncidentId, _: Viewer) -> dict[str, Any]:
    return dict(request.app.state.cases.get(incident_id))


@router.patch("/{incident_id}")
def patch_incident(request: Request, incident_id: IncidentId, body: IncidentPatch, who: Analyst) -> dict[str, Any]:
    return dict(request.app.state.cases.update(incident_id, who.name, status=body.status, assignee=body.assignee))


@router.post("/{incident_id}/comments")
def add_comment(request: Request, incident_id: IncidentId, body: CommentIn, who: Analyst) -> dict[str, Any]:
    return dict(request.app.state.cases.comment(incident_id, who.name, body.text))


@router.post("/{incident_id}/verdict")
def set_verdict(request: Request, incident_id: IncidentId, body: VerdictIn, who: Analyst) -> dict[str, Any]:
    """True positive, false positive or benign true positive; resolves the incident and feeds triage learning."""
    return dict(request.app.state.cases.verdict(incident_id, who.name, body.verdict, body.note))


@router.post("/{incident_id}/split")
def split(request: Request, incident_id: IncidentId, body: SplitIn, who: Analyst) -> dict[str, Any]:
    """Move the listed alert references into a new incident."""
    return dict(request.app.state.cases.split(incident_id, body.alert_refs, who.name))


@router.get("/{incident_id}/timeline")
def timeline(request: Request, incident_id: IncidentId, _: Viewer) -> dict[str, Any]:
    """Everything done to the incident (audit entries), newest first."""
    cases = request.app.state.cases
    cases.get(incident_id)
    return {"items": cases.audit(incident_id=incident_id, limit=500)}
