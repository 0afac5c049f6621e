"""Alerts from any source as one columnar frame of the shared alert model.

Why through the store: the ingest readers already turn Suricata EVE, Wazuh `alerts.json`,
AIT-ADS CSV and ECS JSON lines into ECS rows with `log.file.path`/`log.file.line`, quarantine bad
records and never crash on garbage; triage reads their `event.kind = 'alert'` rows back as plain
numpy columns, so suppression, scoring and correlation run vectorised (≥100 k alerts/s).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from phagocyte.config import Settings, load_settings
from phagocyte.ingest.pipeline import IngestReport, ingest
from phagocyte.store.base import Store
from phagocyte.store.parquet import ParquetStore

__all__ = ["FORMATS", "AlertFrame", "frame_from_table", "load_alerts", "read_store_alerts"]

FORMATS: dict[str, str | None] = {
    "auto": None, "ait-ads": "ait_ads", "eve": "suricata_eve", "wazuh": "wazuh", "ecs": "jsonl",
}
"""`--format` names of the triage CLI → ingest reader names (None: the readers pick themselves)."""

ENTITY_FIELDS: tuple[str, ...] = (
    "host.name", "host.ip", "source.ip", "destination.ip", "user.name", "process.entity_id",
    "file.hash.sha256", "destination.domain",
)
"""Entities that key suppression groups and link groups into incidents."""

_COLUMNS = (
    '"@timestamp"', '"event.module"', '"rule.id"', '"rule.name"', '"rule.level"', '"event.severity"',
    '"log.file.path"', '"log.file.line"', '"winlog.record_id"', '"threat.tactic.id"', '"tags"',
    '"process.parent.pid"', '"process.pid"',
)


@dataclass
class AlertFrame:
    """Alerts as parallel columns (one row per alert), sorted by time.

    `labels` holds `event_label`/`time_label` tags when a source carries ground truth (AIT-ADS);
    triage never reads them, only `learn` and the evaluation do.
    """

    ts: np.ndarray  # float64 epoch seconds
    rule: np.ndarray  # object: "<module>:<rule.id>"
    rule_name: np.ndarray
    level: np.ndarray  # int8, -1 unknown … 4 critical
    entities: dict[str, np.ndarray]  # ENTITY_FIELDS → object arrays (None when absent)
    tactics: np.ndarray  # object: tuple of tactic ids
    ref: np.ndarray  # object: "<file name>:<line or record>"
    event_label: np.ndarray  # object, None without ground truth
    time_label: np.ndarray
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> AlertFrame:
        return AlertFrame(self.ts[idx], self.rule[idx], self.rule_name[idx], self.level[idx],
                          {k: v[idx] for k, v in self.entities.items()}, self.tactics[idx], self.ref[idx],
                          self.event_label[idx], self.time_label[idx], self.skipped)


def _obj(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    values = col.to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


_LEVELS = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def frame_from_table(table: pa.Table) -> AlertFrame:
    """Frame from an Arrow table of ECS alert rows (columns missing from the table are empty)."""
    n = table.num_rows

    def col(name: str) -> np.ndarray:
        if name in table.column_names:
            return _obj(table.column(name))
        return np.full(n, None, dtype=object)

    ts_col = table.column("@timestamp") if "@timestamp" in table.column_names else pa.array([None] * n)
    ts = np.asarray(pc.cast(ts_col, pa.int64()).to_numpy(zero_copy_only=False), dtype="float64")
    ts = np.nan_to_num(ts / 1e6, nan=0.0)
    module, rid, rname = col("event.module"), col("rule.id"), col("rule.name")
    rule = np.asarray([f"{m or 'alert'}:{r or n_ or '?'}" for m, r, n_ in zip(module, rid, rname, strict=True)],
                      dtype=object)
    lv = col("rule.level")
    sev = col("event.severity")
    level = np.asarray([_LEVELS.get((a or "").lower(), -1) if a else -1 for a in lv], dtype=np.int8)
    for j in np.nonzero(level < 0)[0]:  # numeric severity of an imported alert, when no Sigma level
        s = sev[j]
        if isinstance(s, int) and module[j] == "suricata":
            level[j] = {1: 3, 2: 2, 3: 1}.get(s, 0)
    paths, lines, recs = col("log.file.path"), col("log.file.line"), col("winlog.record_id")
    ref = np.asarray([
        f"{PurePath(str(p).rsplit('!', 1)[-1]).name}:{ln if ln is not None else rc}" if p else "?"
        for p, ln, rc in zip(paths, lines, recs, strict=True)], dtype=object)
    tags = col("tags")
    el = np.full(n, None, dtype=object)
    tl = np.full(n, None, dtype=object)
    for i, t in enumerate(tags):
        if t:
            for tag in t:
                if tag.startswith("event_label:"):
                    el[i] = tag[12:]
                elif tag.startswith("time_label:"):
                    tl[i] = tag[11:]
    tac = col("threat.tactic.id")
    tactics = np.empty(n, dtype=object)
    tactics[:] = [tuple(t) if t else () for t in tac]
    entities = {name: col(name) for name in ENTITY_FIELDS}
    order = np.argsort(ts, kind="stable")
    frame = AlertFrame(ts, rule, rname, level, entities, tactics, ref, el, tl)
    return frame.take(order)


def read_store_alerts(store: Store | ParquetStore) -> AlertFrame:
    """The alerts of a store (the `all_alerts` view: imported and raised here), for triage inside `phago run`."""
    cols = ", ".join([*_COLUMNS, *(f'"{e}"' for e in ENTITY_FIELDS)])
    table = store.query(f"SELECT {cols} FROM all_alerts "  # type: ignore[union-attr]
                        f'ORDER BY "@timestamp", "log.file.path", "log.file.line"')
    return frame_from_table(table)


def load_alerts(paths: Sequence[str | Path], fmt: str = "auto",
                settings: Settings | None = None) -> tuple[AlertFrame, IngestReport]:
    """Read alert files of any supported format (through a throw-away store)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    with tempfile.TemporaryDirectory(prefix="phago-triage-") as tmp:
        s = settings or load_settings(tmp)
        s = Settings(home=Path(tmp), limits=s.limits)
        with ParquetStore(s.store_dir, writable=True) as st:
            report = ingest([str(p) for p in paths], st, s, format=FORMATS[fmt])
        with ParquetStore(s.store_dir) as st:
            frame = read_store_alerts(st)
    frame.skipped = [{"path": r.path, "status": r.status, "reason": r.reason, "quarantined": r.quarantined}
                     for r in report.results if r.status in ("failed", "unrecognised") or r.quarantined]
    return frame, report
