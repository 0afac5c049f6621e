"""Ingest: paths -> sources -> reader -> event-schema batches -> store.

Sources are written in *store batches*: one transaction holds one big source or many small ones,
and JSON records of many sources are mapped together (``JsonRecords``), because both a DuckDB
mapping query and a committed Parquet file have a fixed cost that would dominate a folder of
small files. A batch commits whole or not at all.

Nothing here crashes the run on bad input: a bad record is quarantined by its reader, a source
that cannot be read at all (unknown format, corrupt archive, over a limit, a parser failure) is
recorded with its reason and the run goes on. The report says what happened; ``exit_code`` tells
scripts.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from phagocyte import glibc
from phagocyte.config import Settings
from phagocyte.errors import InputError, StoreError
from phagocyte.ingest.jsondocs import looks_like_json_array
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords
from phagocyte.ingest.reader import ReadContext, Reader, choose, get_reader
from phagocyte.ingest.source import Source, SourceFailure, file_facts, iter_sources
from phagocyte.schema import conform
from phagocyte.store.base import IngestTransaction, SourceRecord, Store

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "IngestReport", "Progress", "SourceResult", "ingest"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 3
"""Exit status when everything readable was stored but some records or sources were not."""

WORKERS = 2
"""Worker threads mapping and writing. DuckDB maps one Arrow batch on one core, so two batches
mapped side by side use both cores of a small machine; rows may reach the store out of order
between batches (nothing depends on that order: ``event.id`` and positions are per record)."""
IN_FLIGHT = 2
"""Batches queued for the workers at most (bounds memory)."""
POOL_BYTES = 32 * 1024 * 1024
"""A pool of JSON texts is mapped at this size even before ``batch_rows`` records (big records:
the mapping's memory grows with the bytes parsed, not the record count)."""

MAP_PART_BYTES = 10 * 1024 * 1024
"""Texts a pool hands to an idle worker to map while the rest is read (`_Batch.add_json`).

DuckDB parses JSON a vector (2,048 records) at a time whatever the query's size, so a part's
memory is its texts and its result, and the parts mapped before it have dropped theirs: the 300
EVTX files of a warm hunt (18.8 MB of texts) peaked ~6 MB lower in two parts than in one query,
and the first part's mapping overlapped the reading of the rest (1.93 -> 1.82 s)."""

RELEASE_BYTES = 4 * 1024 * 1024
"""Texts converted to Arrow between two hand-backs of the allocator's free pages (see add_json)."""

BATCH_SOURCES = 2000
"""Most sources in one store batch (bounds the manifest and what a crash rolls back)."""

KEEP_HEAP_BYTES = 4 * POOL_BYTES
"""A source at least this big makes the run keep freed memory in glibc's heap (``_keep_heap``)."""

FLUSH_SMALL = "0B"
"""DuckDB's bulk-deallocation flush threshold while no big source is read (``_Pipeline``)."""


def _keep_heap() -> bool:
    """Serve allocations up to 32 MiB from glibc's heap and keep up to 64 MiB freed there.

    Every pool of a big input allocates the same ~100 MB again (DuckDB grows its Arrow result
    buffers by realloc, the reader's chunks, numpy masks). By default glibc maps the larger blocks
    and hands freed memory back to the kernel, so each pool faults its pages in anew: ~330,000
    page faults and 1.4-2.1 s of system time for 1 M EVE alerts, against ~160,000 and 1.0-1.4 s
    with these thresholds (the values glibc's own sliding threshold reaches at most). Returns
    whether they were set (glibc only); they stay for the process, ``_trim_heap`` hands the
    memory back after the run."""
    return glibc.mallopt(glibc.M_MMAP_THRESHOLD, 32 * 1024 * 1024) and \
        glibc.mallopt(glibc.M_TRIM_THRESHOLD, 64 * 1024 * 1024)


def _trim_heap() -> None:
    glibc.trim()


class WorkerFailed(StoreError):
    """Mapping or writing failed on a worker thread (not a bad record: the run stops)."""


@dataclass
class SourceResult:
    path: str
    status: str
    """``ingested``, ``duplicate`` (committed before, skipped), ``failed`` or ``unrecognised``; ``phago run``
    marks an unrecognised file ``analysed`` once the e-mail or file analyser has judged it."""
    reader: str | None = None
    events: int = 0
    quarantined: int = 0
    reason: str | None = None
    warnings: dict[str, int] = field(default_factory=dict)


@dataclass
class IngestReport:
    results: list[SourceResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.results)

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.results)

    @property
    def exit_code(self) -> int:
        if self.quarantined or self.count("failed") or self.count("unrecognised"):
            return EXIT_PARTIAL
        return EXIT_OK

    def by_reader(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            if r.reader and r.status == "ingested":
                out[r.reader] = out.get(r.reader, 0) + r.events
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": len(self.results),
            "ingested": self.count("ingested"),
            "duplicates": self.count("duplicate"),
            "failed": self.count("failed"),
            "unrecognised": self.count("unrecognised"),
            "analysed": self.count("analysed"),
            "events": self.events,
            "quarantined": self.quarantined,
            "seconds": round(self.seconds, 3),
            "by_reader": self.by_reader(),
            "problems": [r.__dict__ for r in self.results
                         if r.status in ("failed", "unrecognised") or r.quarantined],
        }


@dataclass
class Progress:
    """What the pipeline tells its caller after every batch and every source."""

    sources_done: int = 0
    files_done: int = 0
    """Files on disk finished (an archive counts once, whatever its members)."""
    bytes_done: int = 0
    """Their sizes on disk, for a progress bar against the total the caller measured."""
    events: int = 0
    skipped: int = 0
    """Records quarantined plus sources not read."""
    current: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def rate(self) -> float:
        dt = time.perf_counter() - self.started
        return self.events / dt if dt > 0 else 0.0


@dataclass
class _Open:
    """A source read into the current store batch, not yet committed."""

    source: Source
    reader: str
    ctx: ReadContext
    result: SourceResult
    ordinal: int = 0
    """Records seen so far (mapped or not): the position part of ``event.id``."""
    failed: bool = False


@dataclass
class _Part:
    """Some consecutive records of a pool, mapped: the rows (None: none mapped), the records that
    failed (index in the pool, reason, line, offset, text) and how many records there were."""

    table: pa.Table | None
    bad: list[tuple[int, str, int | None, int | None, str]]
    records: int


@dataclass
class _Pool:
    """JSON records waiting to be mapped, from one or many sources, for one mapping.

    Texts are turned into Arrow on the reading thread as they arrive (that conversion holds the
    GIL), so that the worker threads only map and write."""

    raws: list[pa.Array] = field(default_factory=list)
    lines: list[pa.Array] = field(default_factory=list)
    offsets: list[pa.Array] = field(default_factory=list)
    runs: list[tuple[int, int, int]] = field(default_factory=list)
    """(source index, ordinal of its first record, records) per block: expanded to one owner and
    one ordinal per record on the worker, in numpy (two Python lists of ints per record cost
    ~0.15 us per record between building them, converting them and counting them)."""
    count: int = 0
    nbytes: int = 0
    waiting: int = 0
    """Bytes of the texts in `raws`, not handed to a worker yet (`_Batch.add_json`)."""
    ahead: list[Future[_Part]] = field(default_factory=list)
    """Parts mapped while the rest of the pool was read, in order; `handed` records in all."""
    handed: int = 0

    def take_pieces(self) -> list[tuple[pa.Array, pa.Array, pa.Array]]:
        """The texts (with lines and offsets) not handed out yet, per piece; the pool lets go of them."""
        pieces = list(zip(self.raws, self.lines, self.offsets, strict=True))
        self.raws, self.lines, self.offsets = [], [], []
        self.waiting = 0
        return pieces

    def owners_and_ordinals(self) -> tuple[np.ndarray, np.ndarray]:
        idx, first, n = (np.array(col, np.int64) for col in zip(*self.runs, strict=True))
        starts = np.cumsum(n) - n  # position of each block's first record in the pool
        owners = np.repeat(idx.astype(np.int32), n)
        ordinals = np.repeat(first - starts, n) + np.arange(self.count, dtype=np.int64)
        return owners, ordinals


class _Batch:
    """One store transaction: the sources in it, and the JSON pools still to be mapped.

    Reading happens on the calling thread; mapping (DuckDB), provenance and writing (Arrow,
    Parquet) run on worker threads. Both libraries release the GIL, so reading the next block
    overlaps with mapping and writing the last ones.
    """

    def __init__(self, pipeline: _Pipeline) -> None:
        self.p = pipeline
        self.txn: IngestTransaction = pipeline.store.begin(uuid.uuid4().hex[:20])
        self.open: list[_Open] = []
        self.pools: dict[int, tuple[JsonMapping, _Pool]] = {}
        self.rows = 0
        self._converted = 0
        self._lock = threading.Lock()
        self._worker_bad: list[tuple[int, str, int | None, int | None, str]] = []

    def add_table(self, idx: int, table: pa.Table) -> None:
        o = self.open[idx]
        n = table.num_rows
        if not n:
            return
        ords = np.arange(o.ordinal, o.ordinal + n, dtype=np.int64)
        o.ordinal += n
        self.p.submit(self._store, table, np.full(n, idx, np.int32), ords)

    def add_json(self, idx: int, recs: JsonRecords) -> None:
        o = self.open[idx]
        _mapping, pool = self.pools.setdefault(id(recs.mapping), (recs.mapping, _Pool()))
        n = len(recs)
        if isinstance(recs.raws, pa.Array):
            raws = recs.raws
        else:
            raws = pa.array(recs.raws, pa.string())
            # Arrow's allocator (mimalloc) keeps the pages the conversion's growing buffers freed
            # and reuses them badly: handed back every few MB converted, reading 300 small EVTX
            # files peaks ~20 MB lower. Not after every conversion: pages handed back are faulted
            # in again by the next one (+0.6 us per record on big files).
            self._converted += raws.nbytes
            if self._converted >= RELEASE_BYTES:
                self._converted = 0
                pa.default_memory_pool().release_unused()
        pool.raws.append(raws)
        pool.nbytes += raws.nbytes
        pool.lines.append(recs.lines if isinstance(recs.lines, pa.Array) else pa.array(recs.lines, pa.int64()))
        pool.offsets.append(recs.offsets if isinstance(recs.offsets, pa.Array) else pa.array(recs.offsets, pa.int64()))
        pool.runs.append((idx, o.ordinal, n))
        pool.count += n
        pool.waiting += raws.nbytes
        o.ordinal += n
        if pool.count >= self.p.settings.limits.batch_rows or pool.nbytes >= POOL_BYTES:
            self.flush_pool(id(recs.mapping))
        elif pool.waiting >= MAP_PART_BYTES and self.p.idle():
            # A part's worth of texts and nothing else to map: a worker maps it while this thread
            # reads on (the rows reach the store and detection with the rest of the pool, as one
            # table). Not when the workers are busy (big inputs: pools already overlap reading),
            # where another query's fixed cost would buy nothing.
            pieces = pool.take_pieces()
            base, pool.handed = pool.handed, pool.handed + sum(len(r) for r, _, _ in pieces)
            pool.ahead.append(self.p.submit(self._map_part, recs.mapping, pieces, base))

    def flush_pool(self, key: int) -> None:
        mapping, pool = self.pools.pop(key)
        if pool.count:
            self.p.submit(self._map, mapping, pool)

    def flush_all(self) -> None:
        for key in list(self.pools):
            self.flush_pool(key)

    def _map(self, mapping: JsonMapping, pool: _Pool) -> None:
        """Worker: map a pool; bad records go back to the calling thread's quarantine.

        The parts handed out while the pool filled (`add_json`) come first, then the rest."""
        parts = [f.result() for f in pool.ahead]  # in order; mapped before this job started, or now
        pool.ahead.clear()
        pieces = pool.take_pieces()
        if pieces:
            parts.append(self._map_part(mapping, pieces, pool.handed))
        tables = [p.table for p in parts if p.table is not None]
        bad = [b for p in parts for b in p.bad]
        del parts
        owners, ords = pool.owners_and_ordinals()
        if bad:
            with self._lock:
                self._worker_bad += [(int(owners[i]), reason, line, offset, raw)
                                     for i, reason, line, offset, raw in bad]
            keep = np.ones(pool.count, dtype=bool)
            keep[[i for i, *_ in bad]] = False
            owners, ords = owners[keep], ords[keep]
        if tables:
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            del tables
            self._store(table, owners, ords)

    def _map_part(self, mapping: JsonMapping, pieces: list[tuple[pa.Array, pa.Array, pa.Array]],
                  base: int) -> _Part:
        """Worker: map consecutive pieces of a pool, the first of them its record `base`."""
        # One array, not the pieces as chunks: DuckDB scanned 300 small chunks (a folder of EVTX
        # files) ~0.12 s slower (0.22 -> 0.34 s for 16,343 records in a warm hunt), for ~4 MB less
        # at the mapping's peak. The pieces are dropped once copied.
        raws, lines, offsets = (pa.concat_arrays(list(c)) if len(pieces) > 1 else c[0]
                                for c in zip(*pieces, strict=True))
        pieces.clear()
        table, bad = _apply_guarded(mapping, self.p.cursor(), raws, lines, offsets, base,
                                    relations=self.p.relations())
        # The JSON texts are mapped: dropped when this returns, before the next part is mapped and
        # before the rows are stored and run through detection (`on_table`), which would otherwise
        # hold them (~1 KB per EVTX record) to its peak.
        return _Part(table if table.num_columns else None,
                     [(i, reason, lines[i - base].as_py(), offsets[i - base].as_py(), raws[i - base].as_py())
                      for i, reason in bad], len(raws))

    def _store(self, table: pa.Table, owners: np.ndarray, ords: np.ndarray) -> None:
        """Worker: add provenance, conform to the schema, write. `owners`: the source index of each
        row (int32); `ords`: its ordinal in that source."""
        n = table.num_rows
        if not n:
            return
        table = conform(_provenance(table, [o.source for o in self.open], owners, ords))
        self.txn.write(table)  # thread-safe; files are written in parallel
        counts = np.bincount(owners)
        with self._lock:
            for i in np.flatnonzero(counts):
                self.open[i].result.events += int(counts[i])
            self.rows += n
            self.p.progress.events += n
            if self.p.on_table:
                self.p.on_table(table)

    def drain_bad(self) -> None:
        with self._lock:
            moved, self._worker_bad = self._worker_bad, []
        for owner, reason, line, offset, raw in moved:
            self.open[owner].ctx.bad(reason, line=line, offset=offset, raw=raw)
        for o in self.open:
            bad = o.ctx.drain_bad()
            if bad:
                self.txn.quarantine([{"source_id": o.source.id, "path": o.source.path, **b.to_dict()}
                                     for b in bad])
                self.p.progress.skipped += len(bad)

    def commit(self) -> None:
        self.flush_all()
        self.p.join()
        self.drain_bad()
        records = []
        for o in self.open:
            if o.failed:
                continue
            o.result.quarantined = o.ctx.bad_count
            o.result.warnings = dict(o.ctx.warnings)
            facts = o.source.facts
            records.append(SourceRecord(
                id=o.source.id, path=o.source.path, reader=o.reader, table="events",
                events=o.result.events, quarantined=o.ctx.bad_count, started=self.p.started,
                committed="", warnings=dict(o.ctx.warnings),
                file_path=_abs(o.source.path) if facts else None,
                size=facts.complete_size if facts else None,
                lines=facts.newlines if facts else None,
                prefix_sha256=facts.complete_sha256 if facts else None,
            ))
        self.txn.commit(records)
        for o in self.open:
            if not o.failed:
                o.result.status = "ingested"


MAX_MAPPING_FAILURES = 64
"""Records a mapping may reject in one pool before the mapping, not the data, is blamed."""


class MappingBroken(StoreError):
    """A mapping fails on records any mapping must take (a bug, not bad data): the run stops."""


def _apply_guarded(
    mapping: JsonMapping, con: duckdb.DuckDBPyConnection, raws: pa.StringArray, lines: pa.Int64Array,
    offsets: pa.Int64Array, base: int = 0, failures: list[int] | None = None,
    relations: dict[int, duckdb.DuckDBPyRelation] | None = None,
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Map a pool; if DuckDB rejects it (a value no mapping foresaw), map each half again, down
    to the single records that fail, which are quarantined with DuckDB's message.

    A mapping that fails on an empty object, or on more than MAX_MAPPING_FAILURES records of a
    pool, is broken: bisecting would only turn one error into thousands of queries."""
    try:
        table, bad = mapping.apply(con, raws, lines, offsets, relations)
        return table, [(base + i, r) for i, r in bad]
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0][:300]
        if failures is None:  # first failure of this pool: is it the data or the mapping?
            try:
                mapping.apply(con, ["{}"], [None], [None])
            except duckdb.Error as again:
                raise MappingBroken(f"mapping fails on an empty record: {str(again).splitlines()[0]}") from again
            failures = [0]
        if len(raws) == 1:
            failures[0] += 1
            if failures[0] > MAX_MAPPING_FAILURES:
                raise MappingBroken(f"mapping rejects more than {MAX_MAPPING_FAILURES} records: {message}") from exc
            return pa.table({}), [(base, f"mapping failed: {message}")]
    mid = len(raws) // 2
    t1, b1 = _apply_guarded(mapping, con, raws.slice(0, mid), lines.slice(0, mid), offsets.slice(0, mid), base,
                            failures, relations)
    t2, b2 = _apply_guarded(mapping, con, raws.slice(mid), lines.slice(mid), offsets.slice(mid), base + mid,
                            failures, relations)
    tables = [t for t in (t1, t2) if t.num_columns]
    table = pa.concat_tables(tables) if len(tables) > 1 else (tables[0] if tables else pa.table({}))
    return table, b1 + b2


def _provenance(table: pa.Table, sources: list[Source], owners: np.ndarray, ords: np.ndarray) -> pa.Table:
    """Add log.file.path, event.ingested and the deterministic event.id to mapped rows."""
    n = table.num_rows
    cols = {name: table.column(name) for name in table.column_names}
    idx = pa.array(owners)
    cols["log.file.path"] = pa.array([s.path for s in sources], pa.string()).take(idx)
    # One value repeated in Arrow: a list of n datetimes converted under the GIL cost ~0.35 us per row.
    cols["event.ingested"] = pa.repeat(pa.scalar(_now(), pa.timestamp("us", tz="UTC")), n)
    prefix = pa.array([s.id[:16] for s in sources], pa.string()).take(idx)
    line = cols.get("log.file.line")
    by_line = None
    if line is not None:
        by_line = pc.binary_join_element_wise(prefix, pc.cast(line, pa.string()), ":")
        if not line.null_count:  # every row has its line (JSON lines): no ordinal ids needed
            cols["event.id"] = by_line
            return pa.table(cols)
    by_ord = pc.binary_join_element_wise(prefix, pc.cast(pa.array(ords), pa.string()), "#")
    cols["event.id"] = by_ord if by_line is None else pc.if_else(pc.is_valid(line), by_line, by_ord)
    return pa.table(cols)


def _now() -> datetime:
    return datetime.now(UTC)


class _Pipeline:
    def __init__(self, store: Store, settings: Settings, forced: Reader | None,
                 on_progress: Callable[[Progress], None] | None,
                 on_table: Callable[[pa.Table], None] | None, database: str = ":memory:") -> None:
        self.store = store
        self.settings = settings
        self.forced = forced
        self.on_progress = on_progress
        self.on_table = on_table
        self.progress = Progress()
        self.report = IngestReport()
        self.started = datetime.now(UTC).isoformat()
        self.con = duckdb.connect(database)
        self.con.execute("SET TimeZone='UTC'")
        self.con.execute(f"SET threads={max(1, (os.cpu_count() or 1) // WORKERS)}")  # the workers share the cores
        # DuckDB keeps what a query frees in bulk (up to 512 MiB) for the next query; a mapping frees
        # ~50 MB per 19 MB of EVTX JSON, which then stayed for the rest of the run (a warm hunt of
        # 300 EVTX files ran its detection on top of it). Handed back, unless a big source keeps
        # the heap for its pools anyway (`_keep_heap`).
        self.con.execute(f"SET allocator_bulk_deallocation_flush_threshold='{FLUSH_SMALL}'")
        self.batch: _Batch | None = None
        self.seen: set[str] = set()
        self._worker = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="phago-ingest")
        self._pending: deque[Future[Any]] = deque()
        self._local = threading.local()
        self._heap_kept = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This worker thread's own cursor on the shared in-memory database."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self.con.cursor()
            cur.execute("SET TimeZone='UTC'")
            self._local.relations = {}
        return cur

    def relations(self) -> dict[int, duckdb.DuckDBPyRelation]:
        """This worker thread's mapping queries, bound once on its cursor (``JsonMapping.apply``)."""
        self.cursor()
        rels: dict[int, duckdb.DuckDBPyRelation] = self._local.relations
        return rels

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue work for the workers; at most IN_FLIGHT jobs wait (bounds memory). A job may wait
        for jobs queued before it (the workers take them in order, so those are under way)."""
        fut = self._worker.submit(fn, *args)
        self._pending.append(fut)
        while len(self._pending) > IN_FLIGHT:
            self._result(self._pending.popleft())
        return fut

    def idle(self) -> bool:
        """No job queued or under way."""
        return all(f.done() for f in self._pending)

    def join(self) -> None:
        while self._pending:
            self._result(self._pending.popleft())

    @staticmethod
    def _result(fut: Future[Any]) -> None:
        try:
            fut.result()
        except Exception as exc:  # mapping and writing are not a reader's fault: end the run
            raise WorkerFailed(f"ingest worker failed: {type(exc).__name__}: {exc}") from exc

    def _tick(self) -> None:
        if self.on_progress:
            self.on_progress(self.progress)

    def run(self, paths: list[str | os.PathLike[str]]) -> IngestReport:
        t0 = time.perf_counter()
        try:
            container: Path | None = None
            for item in iter_sources(paths, self.settings.limits):
                if item.container != container:
                    self._file_done(container)
                    container = item.container
                if isinstance(item, SourceFailure):
                    self._failed(_failure_key(item.path), SourceResult(item.path, "failed", reason=item.reason))
                else:
                    self.progress.current = item.path
                    try:
                        self._one(item)
                    finally:
                        item.cleanup()
                self.progress.sources_done += 1
                self._tick()
            self._file_done(container)
            if self.batch is not None:
                self.batch.commit()
                self.batch = None
            self.progress.current = ""
            self._tick()
        except BaseException:
            for fut in self._pending:
                fut.cancel()
            self._worker.shutdown(wait=True)
            if self.batch is not None:
                self.batch.txn.abort()
            raise
        finally:
            self._worker.shutdown(wait=True)
            self.con.close()
            if self._heap_kept:
                _trim_heap()
            self.report.seconds = time.perf_counter() - t0
        return self.report

    def _resume(self, source: Source, reader: Reader) -> bool:
        """A log file that grew since an earlier ingest is read from where that one ended.

        Only for plain files read line by line, when the earlier content's complete lines are,
        byte for byte, the start of this one (checked by hash): a rotated or rewritten file with
        the same name is read whole. A record the earlier read found cut off (the writer was
        mid-line) is read again, whole, and stays in the quarantine as what was seen then."""
        facts = source.facts
        if (facts is None or not reader.resumable or looks_like_json_array(source.head)
                or source.head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))):
            return False
        for prev in self.store.records_for_path(_abs(source.path)):
            if prev.size is None or prev.lines is None or not 0 < prev.size < facts.size:
                continue
            if source.local_path and file_facts(source.local_path, limit=prev.size).sha256 == prev.prefix_sha256:
                source.start_offset = prev.size
                source.start_line = prev.lines + 1
                return True
        return False

    def _file_done(self, container: Path | None) -> None:
        if container is not None:
            self.progress.files_done += 1
            with contextlib.suppress(OSError):
                self.progress.bytes_done += container.stat().st_size

    def _failed(self, key: str, res: SourceResult) -> None:
        self.store.record_failure(key, res.path, res.reason or "")
        self.report.results.append(res)
        self.progress.skipped += 1

    def _one(self, source: Source) -> None:
        if source.id in self.seen or self.store.has_source(source.id):
            self.report.results.append(SourceResult(source.path, "duplicate"))
            return
        reader = self.forced or choose(source)[0]
        if reader is None:
            reason = f"no reader recognises this content (starts with {source.head[:32]!r})"
            self._failed(source.id, SourceResult(source.path, "unrecognised", reason=reason))
            return
        ctx = ReadContext(source, self.settings.limits)
        if not self._heap_kept and (source.size or 0) >= KEEP_HEAP_BYTES:
            self._heap_kept = _keep_heap()
            self.con.execute("RESET allocator_bulk_deallocation_flush_threshold")  # every pool reuses it
        if self._resume(source, reader):
            ctx.warn(f"grown file: read from byte {source.start_offset} (line {source.start_line}); "
                     "the part before was stored by an earlier ingest")
        if self.batch is None:
            self.batch = _Batch(self)
        batch = self.batch
        res = SourceResult(source.path, "reading", reader.name)
        batch.open.append(_Open(source, reader.name, ctx, res))
        idx = len(batch.open) - 1
        o = batch.open[idx]
        try:
            for item in reader.read(o.ctx):
                if isinstance(item, JsonRecords):
                    batch.add_json(idx, item)
                else:
                    batch.add_table(idx, item)
                batch.drain_bad()
                self._tick()
        except WorkerFailed:
            raise
        except Exception as exc:  # process edge: one source's failure must not end the run
            reason = str(exc) if isinstance(exc, InputError) else \
                f"{reader.name} reader failed: {type(exc).__name__}: {exc}"
            if o.ordinal == 0:  # nothing read: the whole source failed
                o.failed = True
                batch.drain_bad()
                self._failed(source.id, SourceResult(source.path, "failed", reader.name, reason=reason))
                return
            # Records read so far are kept; the rest of the source is quarantined as one record.
            o.ctx.bad(f"reading stopped after {o.ordinal} records: {reason}")
            batch.drain_bad()
        # Read: its 64 KiB head (for sniffing) would otherwise stay until the batch commits, for
        # up to BATCH_SOURCES sources (19 MB for a folder of 300 EVTX files).
        source.head = b""
        for note in dict.fromkeys(source.notes):
            o.ctx.warn(note)
        self.seen.add(source.id)
        self.report.results.append(res)
        if batch.rows >= self.settings.limits.batch_rows or len(batch.open) >= BATCH_SOURCES:
            batch.commit()
            self.batch = None


def _abs(path: str) -> str:
    """The file's real path (symbolic links resolved): the key of a file's earlier sources. Not
    cached: a link may point elsewhere by the next run of a long-lived process."""
    return os.path.realpath(path)


def _failure_key(path: str) -> str:
    return "path-" + hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def ingest(
    paths: list[str | os.PathLike[str]],
    store: Store,
    settings: Settings,
    *,
    format: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_table: Callable[[pa.Table], None] | None = None,
    database: str = ":memory:",
) -> IngestReport:
    """Ingest every source under `paths` into `store`; never raises for bad input.

    `on_table` sees every stored batch (detection streams on it once it lands). `database`: the
    in-memory DuckDB database that maps the batches, a named one (`:memory:NAME`) to share it with
    detection (`Engine(database=...)`); the pipeline sets its per-instance settings.
    """
    forced = get_reader(format) if format else None
    return _Pipeline(store, settings, forced, on_progress, on_table, database).run(paths)
