"""A store that keeps nothing: `phago hunt` without `--home`.

Why: a hunt without a home used to ingest into a temporary Parquet store and delete it at the end,
so writing every event to Parquet (and the alerts to an `alerts` table) was pure cost. Detection
already sees each batch in memory (the ingest pipeline's `on_table` hook), so this store only
remembers which sources it was given (duplicates within the run are still skipped) and counts what
was written and quarantined; events and alerts are not kept. Zircolite and Hayabusa work the same
way (an in-memory database per run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from phagocyte.errors import StoreError
from phagocyte.store.base import SourceRecord, StoreStats

__all__ = ["TransientStore"]


@dataclass
class _Txn:
    store: TransientStore
    rows: int = 0
    quarantined: int = 0

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows

    def quarantine(self, records: list[dict[str, Any]]) -> None:
        self.quarantined += len(records)

    def commit(self, sources: list[SourceRecord]) -> None:
        for s in sources:
            self.store.committed[s.id] = s
        self.store.events += self.rows
        self.store.quarantined += self.quarantined

    def abort(self) -> None:
        self.rows = self.quarantined = 0


@dataclass
class TransientStore:
    """The ingest pipeline's `Store` port, keeping only the ledger of this run's sources."""

    committed: dict[str, SourceRecord] = field(default_factory=dict)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: int = 0
    quarantined: int = 0

    def __enter__(self) -> TransientStore:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def record_failure(self, source_id: str, path: str, reason: str) -> None:
        self.failures[source_id] = (path, reason)

    def has_source(self, source_id: str) -> bool:
        return source_id in self.committed

    def begin(self, batch_id: str, table: str = "events") -> _Txn:
        return _Txn(self)

    def query(self, sql: str) -> pa.Table:
        raise StoreError("a hunt without --home keeps no store to query; give --home DIR to keep one")

    def stats(self) -> StoreStats:
        return StoreStats(sources=len(self.committed), events=self.events, quarantined=self.quarantined,
                          by_dataset=[], bytes_on_disk=0)

    def sources(self) -> list[SourceRecord]:
        return list(self.committed.values())

    def records_for_path(self, file_path: str) -> list[SourceRecord]:
        return []  # nothing was stored before this run: every file is read whole
