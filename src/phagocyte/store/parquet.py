"""The embedded store: Parquet partitions by table, dataset and day, queried with DuckDB.

Layout under ``$PHAGO_HOME/store``::

    tables/<table>/dataset=<dataset>/day=<YYYY-MM-DD>/<batch>-<n>.parquet
    quarantine/<batch>.jsonl       bad records of that batch's sources, with position and reason
    quarantine/failed-<source>.jsonl   a source that could not be read at all
    manifest/<batch>.json          written last: the commit marker, listing its sources and files
    staging/<batch>/               marks a batch being written (and holds its quarantine until commit)

A *batch* is one transaction holding one or many sources (small files are grouped, so that 300
EVTX files of 60 records make one Parquet file per dataset and day, not 300). Its Parquet files
are written straight into ``tables`` under names that start with the batch id, synced, and the
manifest is renamed into place last (an atomic rename). Queries read only the files that a
manifest lists, so a run killed at any point leaves no
partial rows visible; the next writer removes what the killed run left, and those sources are
ingested again. A source listed in a manifest is skipped, so the same file twice adds nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from phagocyte.errors import QueryError, StoreError
from phagocyte.schema import EVENT_SCHEMA
from phagocyte.store.base import SourceRecord, StoreStats

__all__ = ["TABLE_SCHEMAS", "ParquetStore", "ParquetTransaction"]

TABLE_SCHEMAS: dict[str, pa.Schema] = {"events": EVENT_SCHEMA, "alerts": EVENT_SCHEMA}
"""Schema of each table; `alerts` holds alerts raised here (event.kind alert, same columns as events)."""

PART_ROWS = 250_000
"""Rows per Parquet file (and row group) at most."""
PART_BYTES = 32 * 1024 * 1024
"""A partition's buffer is written out at this size (bytes, not rows: records vary 50x in size)."""
SMALL_ROWS = 5000
"""Files with fewer rows are written without dictionaries or zstd, whose set-up per column only
pays off on larger files."""
BUFFER_BYTES = 96 * 1024 * 1024
"""Bytes buffered across partitions before the largest is written out (bounds memory)."""
_ALWAYS = ("@timestamp", "event.id", "event.dataset")
_UNIQUE = {"@timestamp", "event.id", "event.original", "event.ingested", "log.file.line", "log.offset",
           "winlog.record_id", "winlog.event_data"}
"""Columns whose values rarely repeat: a dictionary page is wasted work there."""
_NO_STATS = {"event.original", "winlog.event_data"}
"""Long texts no query prunes by: their min/max statistics are wasted work (written per page)."""
DATA_PAGE_BYTES = 4 * 1024 * 1024
"""Parquet data page size of large files (the default is 1 MiB): fewer, larger zstd frames for
the ~720-byte verbatim records (writing 46 k EVE alerts' ``event.original``: 0.84 -> 0.55 us per
record with the statistics off, and a smaller file)."""

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_PREFIX = 20  # hex digits of the source id used in file names

_QUARANTINE_SCHEMA = pa.schema([
    ("source_id", pa.string()), ("path", pa.string()), ("reason", pa.string()),
    ("line", pa.int64()), ("offset", pa.int64()), ("record", pa.int64()),
    ("excerpt", pa.string()), ("excerpt_encoding", pa.string()),
])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ParquetTransaction:
    """Writes one batch of sources into staging; ``commit`` publishes it atomically."""

    def __init__(self, store: ParquetStore, batch_id: str, table: str) -> None:
        if table not in TABLE_SCHEMAS:
            raise StoreError(f"unknown table {table!r}")
        self._store = store
        self.id = batch_id
        self._table = table
        self._schema = TABLE_SCHEMAS[table]
        self._stage = store.root / "staging" / batch_id
        shutil.rmtree(self._stage, ignore_errors=True)
        self._stage.mkdir(parents=True)
        self._buf: dict[tuple[str, str], list[pa.Table]] = {}
        self._buf_bytes: dict[tuple[str, str], int] = {}  # bytes buffered per partition
        self._buf_count: dict[tuple[str, str], int] = {}  # rows buffered per partition
        self._buffered = 0
        self._files: list[str] = []
        self._lock = threading.Lock()
        self._quarantine: Any = None
        self.rows = 0
        self.quarantined = 0
        self._closed = False

    def write(self, table: pa.Table) -> None:
        """Buffer rows per (dataset, day); a partition is written out when it is large enough,
        when the buffers together are, or at commit."""
        if table.num_rows == 0:
            return
        if table.schema != self._schema:
            raise StoreError("rows do not match the table schema (conform them first)")
        ds = pc.fill_null(table.column("event.dataset"), "unknown")
        micros = pc.cast(table.column("@timestamp"), pa.int64())
        days = pc.cast(pc.cast(pc.floor(pc.divide(pc.cast(micros, pa.float64(), safe=False), 86_400_000_000.0)),
                               pa.int32()), pa.date32())
        day = pc.fill_null(pc.cast(days, pa.string()), "unknown")
        key = pc.binary_join_element_wise(ds, day, "\x00")
        counts = pc.value_counts(key)
        if len(counts) > 1:  # sort once and slice runs (filtering per partition is O(rows x parts))
            order = pc.sort_indices(key)
            table = table.take(order)
            counts = pc.value_counts(key.take(order))
        start = 0
        ready: list[tuple[list[pa.Table], str]] = []
        with self._lock:  # bookkeeping only; files are written outside the lock, in parallel
            for item in counts.to_pylist():
                k, n = item["values"], item["counts"]
                part = table.slice(start, n)
                start += n
                d, y = k.split("\x00")
                self._buf.setdefault((d, y), []).append(part)
                size = part.nbytes
                self._buf_bytes[(d, y)] = self._buf_bytes.get((d, y), 0) + size
                self._buf_count[(d, y)] = self._buf_count.get((d, y), 0) + part.num_rows
                self._buffered += size
                if self._buf_bytes[(d, y)] >= PART_BYTES or self._buf_count[(d, y)] >= PART_ROWS:
                    ready.append(self._take((d, y)))
            while self._buffered > BUFFER_BYTES:
                ready.append(self._take(max(self._buf_bytes, key=self._buf_bytes.__getitem__)))
            self.rows += table.num_rows
        for parts, rel in ready:
            self._write_file(parts, rel)

    def _take(self, k: tuple[str, str]) -> tuple[list[pa.Table], str]:
        """Remove a partition's buffer and give it a file name (under the lock)."""
        parts = self._buf.pop(k)
        self._buffered -= self._buf_bytes.pop(k)
        self._buf_count.pop(k)
        dataset, day = k
        rel = (f"tables/{self._table}/dataset={_SAFE.sub('_', dataset) or 'unknown'}/day={day}/"
               f"{self.id}-{len(self._files)}.parquet")
        self._files.append(rel)
        return parts, rel

    def _write_file(self, parts: list[pa.Table], rel: str) -> None:
        """Write one partition's buffered rows as one Parquet file.

        Only the columns holding a value are written (a Sysmon file has no DNS answers): with ~90
        schema columns, per-column overhead would otherwise dominate small files. The views read
        files by column name and fill the absent columns with NULL.
        """
        t = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        keep = [name for name, col in zip(t.column_names, t.columns, strict=True)
                if name in _ALWAYS or col.null_count < t.num_rows]  # by position: by name is O(columns)
        t = t.select(keep)
        path = self._store.root / rel  # invisible until a manifest lists it
        self._store._mkdir(path.parent)
        if t.num_rows >= SMALL_ROWS:
            pq.write_table(t, path, compression="zstd", compression_level=1, row_group_size=PART_ROWS,
                           use_dictionary=[c for c in t.column_names if c not in _UNIQUE],
                           write_statistics=[c for c in t.column_names if c not in _NO_STATS],
                           data_page_size=DATA_PAGE_BYTES)
            return
        # A small file (a day of one channel of a 60-record EVTX file) costs mostly per column and
        # per write call: no dictionary pages, cheap compression, one write of the finished file
        # (~2.8 -> ~1.5 ms per file; a folder of small EVTX files writes hundreds of them).
        sink = pa.BufferOutputStream()
        pq.write_table(t, sink, compression="snappy", row_group_size=PART_ROWS, use_dictionary=False)
        with path.open("wb") as f:
            f.write(sink.getvalue().to_pybytes())

    def _flush(self, k: tuple[str, str]) -> None:
        self._write_file(*self._take(k))

    def quarantine(self, records: list[dict[str, Any]]) -> None:
        """Records carry ``source_id``, ``path``, ``reason`` and a position."""
        if not records:
            return
        if self._quarantine is None:
            self._quarantine = (self._stage / "quarantine.jsonl").open("w", encoding="utf-8")
        for r in records:
            self._quarantine.write(json.dumps(r, ensure_ascii=False) + "\n")
        self.quarantined += len(records)

    def _close(self) -> None:
        if self._closed:
            return
        if self._quarantine is not None:
            self._quarantine.close()
        self._closed = True

    def commit(self, sources: list[SourceRecord]) -> None:
        """Publish the batch: files first, then the manifest (the commit point)."""
        for k in list(self._buf):
            self._flush(k)
        self._close()
        root = self._store.root
        files = list(self._files)
        now = datetime.now(UTC).isoformat()
        for rec in sources:
            rec.table = self._table
            rec.committed = now
        if files:
            os.sync()  # data files durable before the manifest that publishes them (one call, not one per file)
        q = self._stage / "quarantine.jsonl"
        if q.exists():
            os.replace(q, root / "quarantine" / f"{self.id}.jsonl")
        manifest = {"batch": self.id, "table": self._table, "files": files,
                    "sources": [r.__dict__ for r in sources]}
        _write_json_atomic(root / "manifest" / f"{self.id}.json", manifest)  # commit point
        for rec in sources:  # an earlier failed attempt at a source no longer applies
            (root / "quarantine" / f"failed-{rec.id}.jsonl").unlink(missing_ok=True)
        shutil.rmtree(self._stage, ignore_errors=True)
        self._store._committed(manifest)

    def abort(self) -> None:
        self._buf.clear()
        self._buf_bytes.clear()
        self._buf_count.clear()
        self._close()
        for rel in self._files:
            (self._store.root / rel).unlink(missing_ok=True)
        shutil.rmtree(self._stage, ignore_errors=True)


class ParquetStore:
    """Embedded adapter of the ``Store`` port. Open it with ``writable=True`` to ingest."""

    def __init__(self, root: str | os.PathLike[str], *, writable: bool = False) -> None:
        self.root = Path(root)
        self._lock_fd: int | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._query_lock = threading.Lock()
        self._manifests: list[dict[str, Any]] | None = None
        self._source_ids: set[str] | None = None
        self._dirs: set[Path] = set()
        if writable:
            for d in ("tables", "quarantine", "manifest", "staging"):
                (self.root / d).mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise StoreError(f"another phago process is writing to {self.root}") from None
            self.recover()

    # -- writing -----------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Remove what killed runs left behind; returns the batch ids that were rolled back."""
        rolled: list[str] = []
        staging = self.root / "staging"
        for stage in sorted(staging.iterdir()) if staging.exists() else []:
            bid = stage.name
            if not (self.root / "manifest" / f"{bid}.json").exists():
                rolled.append(bid)
                for orphan in (self.root / "tables").glob(f"*/*/*/{bid}-*.parquet"):
                    orphan.unlink(missing_ok=True)
                (self.root / "quarantine" / f"{bid}.jsonl").unlink(missing_ok=True)
            shutil.rmtree(stage, ignore_errors=True)
        return rolled

    def record_failure(self, source_id: str, path: str, reason: str) -> None:
        """Quarantine a whole source that could not be read (kept until it is read again)."""
        if self._lock_fd is None:
            raise StoreError("store opened read-only")
        line = json.dumps({"source_id": source_id, "path": path, "reason": reason},
                          ensure_ascii=False) + "\n"
        target = self.root / "quarantine" / f"failed-{source_id}.jsonl"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(line, encoding="utf-8")
        os.replace(tmp, target)
        self._invalidate()

    def has_source(self, source_id: str) -> bool:
        if self._source_ids is None:
            self._source_ids = {s.id for s in self.sources()}
        return source_id in self._source_ids

    def begin(self, batch_id: str, table: str = "events") -> ParquetTransaction:
        if self._lock_fd is None:
            raise StoreError("store opened read-only")
        return ParquetTransaction(self, batch_id, table)

    def _mkdir(self, path: Path) -> None:
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)

    def _committed(self, manifest: dict[str, Any]) -> None:
        if self._manifests is not None:
            self._manifests.append(manifest)
        if self._source_ids is not None:
            self._source_ids.update(s["id"] for s in manifest["sources"])
        self._invalidate()

    def close(self) -> None:
        self._invalidate()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> ParquetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def _load_manifests(self) -> list[dict[str, Any]]:
        if self._manifests is None:
            mdir = self.root / "manifest"
            self._manifests = [json.loads(p.read_text(encoding="utf-8"))
                               for p in sorted(mdir.glob("*.json"))] if mdir.exists() else []
        return self._manifests

    def records_for_path(self, file_path: str) -> list[SourceRecord]:
        """Sources committed from this file path, longest content first."""
        found = [r for r in self.sources() if r.file_path == file_path]
        return sorted(found, key=lambda r: r.size or 0, reverse=True)

    def sources(self) -> list[SourceRecord]:
        return [SourceRecord(**s) for m in self._load_manifests() for s in m["sources"]]

    def _invalidate(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the views; file access limited to the store, settings locked."""
        if self._con is not None:
            return self._con
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone='UTC'")
        manifests = self._load_manifests()
        for table, schema in TABLE_SCHEMAS.items():
            files = [str(self.root / f) for m in manifests if m["table"] == table for f in m["files"]]
            _empty(con, f"__schema_{table}", schema)
            if files:
                # Files hold only their non-empty columns: read by name, NULL for the rest, in
                # the schema's column order and types.
                con.execute(
                    f"CREATE VIEW {table} AS SELECT * FROM __schema_{table} UNION ALL BY NAME "
                    f"SELECT * FROM read_parquet({_sql_list(files)}, union_by_name=true, hive_partitioning=false)"
                )
            else:
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM __schema_{table}")
        # Every alert once: those imported with the events (Suricata, Wazuh, AIT-ADS, ...) and those
        # raised here, except a pass-through alert raised on an alert event (the original is kept).
        con.execute(
            "CREATE VIEW all_alerts AS SELECT * FROM events WHERE \"event.kind\" = 'alert' UNION ALL BY NAME "
            "SELECT * FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.\"event.kind\" = 'alert' "
            "AND e.\"event.id\" = a.\"event.reference\")"
        )
        qdir = self.root / "quarantine"
        qfiles = [str(p) for p in sorted(qdir.glob("*.jsonl"))] if qdir.exists() else []
        if qfiles:
            cols = ", ".join(f"'{f.name}': '{_duck_type(f.type)}'" for f in _QUARANTINE_SCHEMA)
            con.execute(
                f"CREATE VIEW quarantine AS SELECT * FROM read_json({_sql_list(qfiles)}, "
                f"columns={{{cols}}}, format='newline_delimited')"
            )
        else:
            _empty(con, "quarantine", _QUARANTINE_SCHEMA)
        srcs = self.sources()
        src_tbl = pa.table({
            "id": pa.array([s.id for s in srcs], pa.string()),
            "path": pa.array([s.path for s in srcs], pa.string()),
            "reader": pa.array([s.reader for s in srcs], pa.string()),
            "table": pa.array([s.table for s in srcs], pa.string()),
            "events": pa.array([s.events for s in srcs], pa.int64()),
            "quarantined": pa.array([s.quarantined for s in srcs], pa.int64()),
            "committed": pa.array([s.committed for s in srcs], pa.string()),
        })
        con.register("__sources", src_tbl)
        con.execute("CREATE TABLE sources AS SELECT * FROM __sources")
        con.unregister("__sources")
        root = str(self.root.resolve()).replace("'", "''")
        con.execute(f"SET allowed_directories=['{root}/']")
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")
        self._con = con
        return con

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """One read-only SELECT (or WITH ... SELECT) over the views; `params` bind `?` placeholders.

        Calls from several threads (API requests) take turns on the one connection, which carries the
        session settings (UTC time zone, locked configuration) that a fresh cursor would not."""
        with self._query_lock:
            return self._query(sql, params)

    def _query(self, sql: str, params: list[Any] | None) -> pa.Table:
        con = self.connect()
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc
        if len(statements) != 1:
            raise QueryError(f"expected one statement, got {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise QueryError(f"only SELECT queries are allowed, not {statements[0].type.name}")
        try:
            if params:
                return con.sql(sql, params=params).to_arrow_table()
            return con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from exc

    def stats(self) -> StoreStats:
        con = self.connect()
        by = con.execute(
            'SELECT "event.dataset", count(*), min("@timestamp"), max("@timestamp") '
            "FROM events GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        srcs = self.sources()
        (quarantined,) = con.execute("SELECT count(*) FROM quarantine").fetchone() or (0,)
        size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return StoreStats(
            sources=len(srcs),
            events=sum(s.events for s in srcs if s.table == "events"),
            quarantined=int(quarantined),
            by_dataset=[(str(d), int(n), a, b) for d, n, a, b in by],
            bytes_on_disk=size,
        )


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in items) + "]"


def _empty(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    con.register(f"__empty_{name}", schema.empty_table())
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM __empty_{name}")
    con.unregister(f"__empty_{name}")


def _duck_type(t: pa.DataType) -> str:
    return "BIGINT" if pa.types.is_integer(t) else "VARCHAR"
