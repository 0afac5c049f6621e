"""Events and alerts in the store: NDJSON ingest, alert listing, entity search."""

from __future__ import annotations

import hashlib
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from phagocyte.api.auth import require
from phagocyte.api.body import read_limited
from phagocyte.cases.service import Principal
from phagocyte.ingest.pipeline import ingest
from phagocyte.store.parquet import ParquetStore

router = APIRouter(prefix="/api", tags=["events"])
Viewer = Annotated[Principal, Depends(require("viewer"))]
Analyst = Annotated[Principal, Depends(require("analyst"))]
INGEST_LOCK = threading.Lock()
_ALERT_COLUMNS = ['"@timestamp"', '"event.id"', '"rule.id"', '"rule.name"', '"rule.level"', '"event.module"',
                  '"host.name"', '"user.name"', '"source.ip"', '"destination.ip"', '"threat.tactic.name"',
                  '"threat.technique.id"', '"log.file.path"', '"log.file.line"', '"winlog.record_id"', '"message"']
ALL_ALERTS = "all_alerts"
"""The store's view of every alert once: imported from other tools (in `events`) and raised here (`alerts`)."""
_SEARCH_FIELDS = ["host.name", "user.name", "source.ip", "destination.ip", "process.name", "file.hash.sha256",
                  "dns.question.name", "url.domain", "rule.name", "event.id"]


def _rows(table: Any) -> list[dict[str, Any]]:
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in table.to_pylist()]


@router.post("/ingest")
async def ingest_ndjson(request: Request, who: Analyst) -> dict[str, Any]:
    """Store a batch of events: NDJSON (ECS, Winlogbeat, EVE, ... one JSON object per line), size-limited.

    The batch is spooled to `$PHAGO_HOME/spool/<sha256>.ndjson` and goes through the same ingest as files,
    so sending the same batch twice adds nothing."""
    body = await read_limited(request, request.app.state.max_body)
    if not body.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty body")
    settings = request.app.state.settings
    spool = settings.home / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{hashlib.sha256(body).hexdigest()}.ndjson"
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(body)
        tmp.replace(path)

    def run() -> dict[str, Any]:
        with INGEST_LOCK, ParquetStore(settings.store_dir, writable=True) as store:
            report = ingest([str(path)], store, settings)
        request.app.state.store_changed()
        return {"events": report.events, "quarantined": report.quarantined,
                "duplicate": report.count("duplicate") > 0, "by_reader": report.by_reader(), "by": who.name}

    return await run_in_threadpool(run)


@router.get("/alerts")
def list_alerts(request: Request, _: Viewer,
                rule: Annotated[str | None, Query(max_length=200)] = None,
                host: Annotated[str | None, Query(max_length=200)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
    """Alerts in the store (raised by detection, or imported from Suricata, Wazuh, ...), newest first."""
    where, params = ["TRUE"], []
    if rule:
        where.append('("rule.id" = ? OR "rule.name" = ?)')
        params += [rule, rule]
    if host:
        where.append('"host.name" = ?')
        params.append(host)
    sql = (f"SELECT {', '.join(_ALERT_COLUMNS)} FROM {ALL_ALERTS} WHERE {' AND '.join(where)} "
           f'ORDER BY "@timestamp" DESC NULLS LAST LIMIT {limit} OFFSET {offset}')
    return {"items": _rows(request.app.state.store().query(sql, params))}


@router.get("/search")
def search(request: Request, _: Viewer, q: Annotated[str, Query(min_length=1, max_length=300)],
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """Incidents mentioning `q`, and events whose host, user, address, process, hash, domain or rule is `q`."""
    incidents = request.app.state.cases.search(q, limit=limit)
    cond = " OR ".join(f'lower("{f}") = lower(?)' for f in _SEARCH_FIELDS)
    sql = (f'SELECT "@timestamp", "event.id", "event.kind", "event.dataset", "host.name", "user.name", '
           f'"source.ip", "destination.ip", "process.name", "rule.name", "message", "log.file.path", '
           f'"log.file.line" FROM (SELECT * FROM events UNION ALL BY NAME SELECT * FROM alerts) WHERE {cond} '
           f'ORDER BY "@timestamp" DESC NULLS LAST LIMIT {limit}')
    events = _rows(request.app.state.store().query(sql, [q] * len(_SEARCH_FIELDS)))
    return {"incidents": incidents, "events": events}
