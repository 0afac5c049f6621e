"""The analysers behind the API: a raw e-mail or file in, the same verdict as `phago email` / `phago scan` out.

The body is the raw bytes (size-limited like every body); nothing is executed, nothing is fetched.
With `alert=true` a phishing, suspicious or malicious verdict is also stored as an alert, so that the
next triage of the store sees it beside the detections.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from phagocyte.api.auth import require
from phagocyte.api.body import read_limited
from phagocyte.cases.service import Principal

router = APIRouter(prefix="/api/analyse", tags=["analysers"])
Analyst = Annotated[Principal, Depends(require("analyst"))]
Name = Annotated[str, Query(max_length=255, description="The file's name (its extension helps tell a script's "
                                                        "language); it is only a label, never opened.")]
AlertFlag = Annotated[bool, Query(description="Also store a phishing / suspicious / malicious verdict as an alert.")]
_LOCK = threading.Lock()


def _analysers(request: Request) -> tuple[Any, Any]:
    """(e-mail model, scanner), built once per app: models load from `$PHAGO_HOME/models` when trained."""
    state = request.app.state
    with _LOCK:
        if getattr(state, "analysers", None) is None:
            from phagocyte.analysers.artefacts import team_models
            from phagocyte.analysers.limits import ScanLimits
            from phagocyte.analysers.scan import Scanner

            email_model, script_model = team_models(state.settings.home)
            state.analysers = (email_model, Scanner(ScanLimits(), model=script_model))
        return state.analysers  # type: ignore[no-any-return]


def _store_alert(request: Request, alert: dict[str, Any]) -> int:
    from datetime import UTC, datetime

    from phagocyte.api.routers.events import INGEST_LOCK
    from phagocyte.detect.store import save_alerts
    from phagocyte.store.parquet import ParquetStore

    alert.setdefault("@timestamp", datetime.now(UTC))  # when it reached us, if the input says nothing
    with INGEST_LOCK, ParquetStore(request.app.state.settings.store_dir, writable=True) as store:
        new = save_alerts(store, [alert])
    request.app.state.store_changed()
    return new


@router.post("/email")
async def analyse_email(request: Request, who: Analyst, name: Name = "message.eml",
                        alert: AlertFlag = False) -> dict[str, Any]:
    """Judge one raw RFC 822 message: label (phishing, spam, clean), score, reasons, indicators."""
    body = await read_limited(request, request.app.state.max_body)

    def run() -> dict[str, Any]:
        from phagocyte.email.alerts import verdict_to_alert
        from phagocyte.email.verdict import analyse

        model, _ = _analysers(request)
        verdict = analyse(body, name, model=model).to_dict()
        if alert and verdict["label"] == "phishing":
            verdict["alert_stored"] = _store_alert(request, verdict_to_alert(verdict)) > 0
        return verdict

    return await run_in_threadpool(run)


@router.post("/file")
async def analyse_file(request: Request, who: Analyst, name: Name = "sample",
                       alert: AlertFlag = False) -> dict[str, Any]:
    """Judge one raw file (script, Office document, PDF, PE, ELF): label, score, reasons, indicators and, for a
    script, the deobfuscated text."""
    body = await read_limited(request, request.app.state.max_body)

    def run() -> dict[str, Any]:
        _, scanner = _analysers(request)
        v = scanner.scan_bytes(body, name)
        out = v.to_json()
        if alert and v.label != "clean":
            out["alert_stored"] = _store_alert(request, v.to_alert()) > 0
        return out

    return await run_in_threadpool(run)
