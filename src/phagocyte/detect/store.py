"""Alerts into the store's `alerts` table, once: the same (rule, event) twice is one alert.

Alert ids are deterministic (`phagocyte.alerts.alert_id`), so `phago detect` run twice, or a
`phago hunt` after a `phago run` that streamed the same rules, adds only alerts not stored yet.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from phagocyte.alerts import alerts_to_table

if TYPE_CHECKING:
    from phagocyte.store.parquet import ParquetStore

__all__ = ["save_alerts", "stored_alert_ids"]


def stored_alert_ids(store: ParquetStore) -> set[str]:
    return {v for v in store.query('SELECT "event.id" FROM alerts').column(0).to_pylist() if v}


def save_alerts(store: ParquetStore, alerts: Sequence[dict[str, Any]]) -> int:
    """Write the alerts not stored yet (one transaction); returns how many were new."""
    known = stored_alert_ids(store)
    new: dict[str, dict[str, Any]] = {}
    for a in alerts:
        if a["event.id"] not in known:
            new.setdefault(a["event.id"], a)
    if not new:
        return 0
    txn = store.begin(f"alerts-{uuid.uuid4().hex[:20]}", table="alerts")
    try:
        txn.write(alerts_to_table(new.values()))
        txn.commit([])
    except BaseException:
        txn.abort()
        raise
    return len(new)
