"""The store port: what the pipeline needs from wherever events live.

The embedded adapter (``ParquetStore``: Parquet partitions queried through DuckDB) is the
default; a distributed engine (Trino/Spark over the same Parquet layout, or ClickHouse) can take
its place by implementing these two protocols. Ingest talks only to ``Store`` and
``IngestTransaction``; nothing outside ``store/`` knows about files or DuckDB views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

__all__ = ["IngestTransaction", "SourceRecord", "Store", "StoreStats"]


@dataclass
class SourceRecord:
    """What the store remembers of one committed source (the idempotency ledger)."""

    id: str
    path: str
    reader: str
    table: str
    events: int
    quarantined: int
    started: str
    committed: str
    warnings: dict[str, int] = field(default_factory=dict)
    file_path: str | None = None
    """For a plain file: its absolute path, and the size, line count and hash of its complete
    lines, so that a grown file is read from where this source's last full line ended."""
    size: int | None = None
    lines: int | None = None
    prefix_sha256: str | None = None


@dataclass
class StoreStats:
    sources: int
    events: int
    quarantined: int
    by_dataset: list[tuple[str, int, Any, Any]]
    """(dataset, events, first @timestamp, last @timestamp)."""
    bytes_on_disk: int


class IngestTransaction(Protocol):
    """All rows of one source, committed together or not at all."""

    def write(self, table: pa.Table) -> None:
        """Add rows (already conformed to the table's schema)."""

    def quarantine(self, records: list[dict[str, Any]]) -> None:
        """Keep bad records (``source_id``, ``path``, ``reason``, position)."""

    def commit(self, sources: list[SourceRecord]) -> None:
        """Make everything written, for all these sources, visible at once."""

    def abort(self) -> None:
        """Drop everything written."""


class Store(Protocol):
    def record_failure(self, source_id: str, path: str, reason: str) -> None:
        """Remember a source that could not be read at all (shown in the quarantine view)."""

    def has_source(self, source_id: str) -> bool:
        """True if this source was committed before (ingest skips it)."""

    def begin(self, batch_id: str, table: str = "events") -> IngestTransaction:
        """Start a transaction (one or many sources) writing into `table`."""

    def query(self, sql: str) -> pa.Table:
        """Run one read-only SELECT over the views (events, quarantine, sources, ...)."""

    def stats(self) -> StoreStats:
        """Counts for ``phago stats``."""

    def sources(self) -> list[SourceRecord]:
        """Every committed source."""

    def records_for_path(self, file_path: str) -> list[SourceRecord]:
        """Sources committed from this file path, longest content first (to resume grown files)."""
