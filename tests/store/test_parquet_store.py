"""The store's promises: idempotent, crash-safe, read-only queries, one schema for all rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from phagocyte.errors import QueryError, StoreError
from phagocyte.ingest.lines import iter_line_blocks
from phagocyte.ingest.reader import REGISTRY, ReadContext, Reader
from phagocyte.ingest.rows import rows_to_table
from phagocyte.schema import EVENT_SCHEMA
from phagocyte.store.parquet import ParquetStore, ParquetTransaction
from tests.conftest import rows, run_ingest


class _CountLines(Reader):
    """A test-only reader: one event per line 'YYYY-MM-DD text'; 'BAD' lines are quarantined."""

    name = "test_lines"
    description = "test"

    def sniff(self, head: bytes, path: str) -> int:
        return 100 if head.startswith(b"#test-lines") else 0

    def read(self, ctx: ReadContext) -> Iterator[pa.Table]:
        from datetime import UTC, datetime

        for block in iter_line_blocks(ctx):
            out = []
            for text, line in zip(block.lines, block.numbers, strict=True):
                if text.startswith("#"):
                    continue
                if text.startswith("BAD"):
                    ctx.bad("test: bad line", line=line, raw=text)
                    continue
                day, _, msg = text.partition(" ")
                out.append({"@timestamp": datetime.fromisoformat(day).replace(tzinfo=UTC), "message": msg,
                            "event.dataset": "test.lines", "log.file.line": line, "event.original": text})
            yield rows_to_table(out)


@pytest.fixture(autouse=True)
def _test_reader() -> Iterator[None]:
    REGISTRY[_CountLines.name] = _CountLines
    yield
    REGISTRY.pop(_CountLines.name, None)


def _write(path: Path, n: int, days: int = 3, bad_every: int = 0) -> Path:
    lines = [f"#test-lines {path.name}"]
    for i in range(n):
        if bad_every and i % bad_every == 0:
            lines.append(f"BAD {i}")
        else:
            lines.append(f"2024-01-{1 + i % days:02d} event {i} of {path.name}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_same_file_twice_adds_nothing(tmp_path, settings) -> None:
    f = _write(tmp_path / "a.log", 100)
    r1, store = run_ingest([f], settings)
    assert r1.events == 100
    r2, store = run_ingest([f], settings)
    assert r2.events == 0 and r2.count("duplicate") == 1
    copy = tmp_path / "copy.log"
    copy.write_bytes(f.read_bytes())
    r3, store = run_ingest([copy, f], settings)
    assert r3.count("duplicate") == 2
    assert rows(store, "select count(*) n from events")[0]["n"] == 100


def test_partitions_by_dataset_and_day(tmp_path, settings) -> None:
    _, _store = run_ingest([_write(tmp_path / "a.log", 30, days=3)], settings)
    parts = sorted(p.relative_to(settings.store_dir / "tables" / "events").parent.as_posix()
                   for p in (settings.store_dir / "tables" / "events").rglob("*.parquet"))
    assert parts == [f"dataset=test.lines/day=2024-01-0{d}" for d in (1, 2, 3)]


def test_bad_records_are_quarantined_with_position(tmp_path, settings) -> None:
    f = _write(tmp_path / "a.log", 20, bad_every=7)  # items 0, 7, 14 are bad -> lines 2, 9, 16
    report, store = run_ingest([f], settings)
    assert report.events == 17 and report.quarantined == 3 and report.exit_code == 3
    q = rows(store, "select path, line, reason, excerpt from quarantine order by line")
    assert [r["line"] for r in q] == [2, 9, 16]
    assert q[0] == {"path": str(f), "line": 2, "reason": "test: bad line", "excerpt": "BAD 0"}


def test_unrecognised_file_is_recorded_not_dropped(tmp_path, settings) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 10)
    report, store = run_ingest([junk, _write(tmp_path / "a.log", 5)], settings)
    assert report.count("unrecognised") == 1 and report.events == 5
    q = rows(store, "select path, reason from quarantine")
    assert q[0]["path"] == str(junk) and "no reader recognises" in q[0]["reason"]


def test_every_row_has_the_full_schema(tmp_path, settings) -> None:
    _, store = run_ingest([_write(tmp_path / "a.log", 5)], settings)
    t = store.query("select * from events")
    assert t.schema.names == EVENT_SCHEMA.names
    assert t.schema.field("@timestamp").type == pa.timestamp("us", tz="UTC")
    assert t.column("dns.question.name").null_count == 5  # absent from the file, NULL in the view


@pytest.mark.parametrize("sql", [
    "copy (select 1) to '/tmp/phago-x.csv'",
    "create table t as select 1",
    "select * from read_csv('/etc/passwd')",
    "attach '/tmp/x.db'",
    "select 1; select 2",
    "install httpfs",
])
def test_queries_are_read_only(tmp_path, settings, sql) -> None:
    _, store = run_ingest([_write(tmp_path / "a.log", 5)], settings)
    with pytest.raises(QueryError):
        store.query(sql)


def test_one_writer_at_a_time(settings) -> None:
    with ParquetStore(settings.store_dir, writable=True), pytest.raises(StoreError, match="another phago"):
        ParquetStore(settings.store_dir, writable=True)


@pytest.mark.parametrize("fail_at", ["sync", "manifest"])
def test_failure_inside_commit_leaves_no_rows_and_no_files(tmp_path, settings, monkeypatch, fail_at) -> None:
    """An error at the two dangerous points of a commit aborts the batch; the re-run completes it."""
    f = _write(tmp_path / "a.log", 50, days=5)
    if fail_at == "sync":
        monkeypatch.setattr(os, "sync", lambda: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    else:
        real = os.replace

        def flaky(src, dst):
            if str(dst).endswith(".json"):
                raise KeyboardInterrupt("killed")
            return real(src, dst)

        monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_ingest([f], settings)
    monkeypatch.undo()
    assert rows(ParquetStore(settings.store_dir), "select count(*) n from events")[0]["n"] == 0
    assert not list((settings.store_dir / "tables").rglob("*.parquet"))
    report, store = run_ingest([f], settings)
    assert report.events == 50
    assert rows(store, 'select count(*) n, count(distinct "event.id") d from events')[0] == {"n": 50, "d": 50}


def test_recovery_removes_what_a_dead_writer_left(tmp_path, settings) -> None:
    """Files written by a transaction that never committed (process died) are invisible, then removed."""
    st = ParquetStore(settings.store_dir, writable=True)
    txn = st.begin("deadbeef")
    table = _table(20)
    txn.write(table)
    txn._flush(next(iter(txn._buf)))
    leftovers = list((settings.store_dir / "tables").rglob("deadbeef-*.parquet"))
    assert leftovers
    assert rows(ParquetStore(settings.store_dir), "select count(*) n from events")[0]["n"] == 0
    st.close()  # the lock goes with the process; the staging marker stays
    with ParquetStore(settings.store_dir, writable=True) as again:
        assert not list((settings.store_dir / "tables").rglob("deadbeef-*.parquet"))
        assert not (settings.store_dir / "staging" / "deadbeef").exists()
        assert again.recover() == []


def _table(n: int) -> pa.Table:
    from datetime import UTC, datetime

    from phagocyte.schema import conform

    return conform(pa.table({
        "@timestamp": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        "event.id": [f"x:{i}" for i in range(n)],
        "event.dataset": ["test.lines"] * n,
    }))


def test_killed_process_leaves_no_partial_or_duplicate_rows(tmp_path, settings) -> None:
    """SIGKILL a real ingest after its first commit; the re-run ends with each row exactly once."""
    files = [_write(tmp_path / f"f{i}.log", 2000, days=4) for i in range(40)]
    env = {**os.environ, "PHAGO_HOME": str(settings.home), "PHAGO_BATCH_ROWS": "1000"}
    code = ("import sys; from tests.store.test_parquet_store import _CountLines; "
            "from phagocyte.ingest.reader import REGISTRY; REGISTRY['test_lines'] = _CountLines; "
            "from phagocyte.cli.app import main; sys.argv = ['phago', 'ingest', *sys.argv[1:]]; main()")
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, files)], env=env,
                            cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = settings.store_dir / "manifest"
    deadline = time.time() + 60
    while time.time() < deadline and not (manifest.exists() and any(manifest.glob("*.json"))):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sql = 'select count(*) n, count(distinct "event.id") d from events'
    committed = rows(ParquetStore(settings.store_dir), sql)[0]
    assert committed["n"] == committed["d"]
    assert 0 < committed["n"] < 80_000, "the kill should land mid-way"
    report, store = run_ingest(files, settings)
    got = rows(store, 'select count(*) n, count(distinct "event.id") d from events')[0]
    assert got == {"n": 80_000, "d": 80_000}
    assert report.count("duplicate") > 0


def test_transaction_rejects_rows_off_schema(settings) -> None:
    with ParquetStore(settings.store_dir, writable=True) as st:
        txn: ParquetTransaction = st.begin("b1")
        with pytest.raises(StoreError):
            txn.write(pa.table({"message": ["x"]}))
        txn.abort()


def test_large_files_skip_statistics_of_the_verbatim_text_only(tmp_path, settings) -> None:
    """event.original gets no min/max statistics (no query prunes by it); the others keep theirs."""
    import pyarrow.parquet as pq

    from phagocyte.store.parquet import SMALL_ROWS

    _, store = run_ingest([_write(tmp_path / "a.log", SMALL_ROWS + 100, days=1)], settings)
    (path,) = (settings.store_dir / "tables" / "events").rglob("*.parquet")
    meta = pq.ParquetFile(path).metadata
    names = meta.schema.to_arrow_schema().names
    group = meta.row_group(0)
    stats = {names[i]: group.column(i).statistics for i in range(group.num_columns)}
    assert stats["event.original"] is None
    assert stats["@timestamp"] is not None and stats["@timestamp"].has_min_max
    assert rows(store, "select count(distinct \"event.original\") n from events")[0]["n"] == SMALL_ROWS + 100
