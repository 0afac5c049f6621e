"""Pipeline behaviour that no single reader owns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phagocyte.ingest.jsondocs import iter_json_blocks
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords
from phagocyte.ingest.reader import REGISTRY, ReadContext, Reader
from tests.conftest import rows, run_ingest

_STRICT = JsonMapping({"x": "VARCHAR"}, {"message": "CAST(CAST(j.x AS INTEGER) AS VARCHAR)",
                                         "event.dataset": "'test.strict'"})


class _Strict(Reader):
    """A reader whose mapping DuckDB rejects for some values (a non-TRY cast)."""

    name = "test_strict"
    description = "test"

    def sniff(self, head: bytes, path: str) -> int:
        return 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        for raws, lines, offs in iter_json_blocks(ctx):
            yield JsonRecords(_STRICT, raws, lines, offs)


@pytest.fixture(autouse=True)
def _reader() -> Iterator[None]:
    REGISTRY[_Strict.name] = _Strict
    yield
    REGISTRY.pop(_Strict.name, None)


def test_a_record_the_mapping_rejects_is_quarantined_not_the_batch(tmp_path: Path, settings) -> None:
    f = tmp_path / "x.json"
    f.write_text("\n".join(f'{{"x": "{v}"}}' for v in ["1", "2", "oops", "4", "5", "6", "nope", "8"]) + "\n")
    report, store = run_ingest([f], settings, format="test_strict")
    assert report.events == 6 and report.quarantined == 2
    assert [r["message"] for r in rows(store, 'select message from events order by "log.file.line"')] == \
        ["1", "2", "4", "5", "6", "8"]
    q = rows(store, "select line, reason from quarantine order by line")
    assert [r["line"] for r in q] == [3, 7] and all(r["reason"].startswith("mapping failed") for r in q)


def test_a_100_mb_line_is_quarantined_and_the_rest_is_stored(tmp_path: Path, settings) -> None:
    f = tmp_path / "big.ndjson"
    with f.open("w") as out:
        out.write('{"@timestamp": "2024-01-01T00:00:00Z", "message": "before"}\n')
        out.write('{"message": "' + "A" * (100 * 1024 * 1024) + '"}\n')
        out.write('{"@timestamp": "2024-01-01T00:00:01Z", "message": "after"}\n')
    report, store = run_ingest([f], settings)
    assert report.events == 2 and report.quarantined == 1
    (q,) = rows(store, "select line, reason, length(excerpt) n from quarantine")
    assert q["line"] == 2 and "longer than" in q["reason"] and q["n"] <= 4096


def test_a_broken_mapping_stops_the_run_quickly(tmp_path: Path, settings) -> None:
    """A mapping DuckDB cannot run at all is a bug: one clear error, not a record-by-record hunt."""
    from phagocyte.ingest.pipeline import MappingBroken, WorkerFailed

    broken = JsonMapping({"x": "VARCHAR"}, {"message": "CAST(j.x AS INTEGER)::VARCHAR || nosuchfunction(1)"})

    class _Broken(_Strict):
        name = "test_broken"

        def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
            for raws, lines, offs in iter_json_blocks(ctx):
                yield JsonRecords(broken, raws, lines, offs)

    REGISTRY[_Broken.name] = _Broken
    try:
        f = tmp_path / "x.json"
        f.write_text("".join(f'{{"x": "{i}"}}\n' for i in range(5000)))
        with pytest.raises(WorkerFailed) as err:
            run_ingest([f], settings, format="test_broken")
        assert isinstance(err.value.__cause__, MappingBroken)
    finally:
        REGISTRY.pop(_Broken.name, None)


def _eve(i: int) -> str:
    return (f'{{"timestamp": "2024-01-01T00:00:{i % 60:02d}.000000+0000", "event_type": "dns", '
            f'"src_ip": "10.0.0.{i % 250}", "dest_ip": "10.0.0.53", "proto": "UDP", "flow_id": {i}}}\n')


def test_a_grown_log_file_adds_only_its_new_lines(tmp_path: Path, settings) -> None:
    f = tmp_path / "eve.json"
    f.write_text("".join(_eve(i) for i in range(100)))
    r1, _ = run_ingest([f], settings)
    assert r1.events == 100
    with f.open("a") as out:
        out.write("".join(_eve(i) for i in range(100, 130)))
    r2, store = run_ingest([f], settings)
    assert r2.events == 30 and r2.count("ingested") == 1
    assert any("grown file" in w for w in r2.results[0].warnings)
    got = rows(store, 'select count(*) n, count(distinct "event.id") d, min("log.file.line") lo, '
                      'max("log.file.line") hi from events')[0]
    assert got == {"n": 130, "d": 130, "lo": 1, "hi": 130}
    new = rows(store, 'select "log.file.line" line, "log.offset" off from events order by 1 desc limit 1')[0]
    assert new["off"] == len("".join(_eve(i) for i in range(129)).encode())
    r3, _ = run_ingest([f], settings)  # unchanged since: nothing
    assert r3.events == 0 and r3.count("duplicate") == 1


def test_lines_written_while_the_file_is_read_are_stored_once(tmp_path: Path, settings,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A log written to between hashing and reading: this ingest stops at the hashed size, the next
    resumes there; every line is stored once (read to the end now, the new lines came twice)."""
    from phagocyte.ingest import source as source_mod

    f = tmp_path / "eve.json"
    f.write_text("".join(_eve(i) for i in range(100)))
    real = source_mod.file_facts

    def facts_then_append(path: Path, limit: int | None = None) -> source_mod.FileFacts:
        got = real(path, limit)
        if limit is None and path == f:
            with f.open("a") as out:  # the writer appends right after the file was hashed
                out.write("".join(_eve(i) for i in range(100, 130)))
            monkeypatch.setattr(source_mod, "file_facts", real)
        return got

    monkeypatch.setattr(source_mod, "file_facts", facts_then_append)
    r1, _ = run_ingest([f], settings)
    assert r1.events == 100 and r1.quarantined == 0
    r2, store = run_ingest([f], settings)
    assert r2.events == 30
    got = rows(store, 'select count(*) n, count(distinct "log.file.line") d from events')[0]
    assert got == {"n": 130, "d": 130}


def test_a_rewritten_file_with_the_same_name_is_read_whole(tmp_path: Path, settings) -> None:
    f = tmp_path / "eve.json"
    f.write_text("".join(_eve(i) for i in range(50)))
    run_ingest([f], settings)
    f.write_text("".join(_eve(i) for i in range(1000, 1080)))  # rotated: a new, longer content
    r2, store = run_ingest([f], settings)
    assert r2.events == 80
    assert rows(store, "select count(*) n from events")[0]["n"] == 130


def test_a_record_caught_mid_write_is_read_whole_next_time(tmp_path: Path, settings) -> None:
    f = tmp_path / "eve.json"
    text = "".join(_eve(i) for i in range(10))
    f.write_text(text + _eve(10)[:20])  # the writer was caught mid-record
    r1, _ = run_ingest([f], settings)
    assert r1.events == 10 and r1.quarantined == 1
    f.write_text(text + _eve(10) + _eve(11))
    r2, store = run_ingest([f], settings)
    assert r2.events == 2 and r2.quarantined == 0  # from the start of the cut line
    got = rows(store, 'select count(*) n, count(distinct "log.file.line") d from events')[0]
    assert got == {"n": 12, "d": 12}


@pytest.mark.parametrize("magic", [b"\x1f\x8b\x08", b"PK\x03\x04", b"PK\x05\x06", b"ElfFile\x00"])
def test_garbage_behind_a_magic_number_never_breaks_the_run(tmp_path: Path, magic: bytes) -> None:
    """Random bytes that start like gzip, zip or EVTX: recorded as a failed source, never a crash."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from phagocyte.config import load_settings

    runs = iter(range(10**6))

    @hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.binary(max_size=3000))
    def run(tail: bytes) -> None:
        n = next(runs)
        f = tmp_path / f"f{n}.bin"
        f.write_bytes(magic + tail)
        report, store = run_ingest([f], load_settings(tmp_path / f"h{n}"))
        assert len(report.results) >= 1
        for res in report.results:
            assert res.status in ("ingested", "failed", "unrecognised")
            if res.status != "ingested":
                assert res.reason
        assert rows(store, "select count(*) n from events")[0]["n"] == report.events

    run()


def test_progress_counts_files_and_bytes_on_disk(tmp_path: Path, settings) -> None:
    import gzip
    import zipfile

    from phagocyte.ingest.pipeline import ingest
    from phagocyte.store.parquet import ParquetStore

    (tmp_path / "in").mkdir()
    a = tmp_path / "in" / "a.json"
    a.write_text(_eve(1) + _eve(2))
    b = tmp_path / "in" / "b.json.gz"
    b.write_bytes(gzip.compress((_eve(3) * 5).encode()))
    c = tmp_path / "in" / "c.zip"
    with zipfile.ZipFile(c, "w") as zf:
        zf.writestr("x.json", _eve(4))
        zf.writestr("y.json", _eve(5))
    seen = []
    with ParquetStore(settings.store_dir, writable=True) as st:
        report = ingest([str(tmp_path / "in")], st, settings, on_progress=lambda p: seen.append(
            (p.files_done, p.bytes_done, p.events)))
    assert report.events == 9
    assert seen[-1] == (3, sum(f.stat().st_size for f in (a, b, c)), 9)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)  # never goes back


def test_pool_owners_and_ordinals_follow_the_blocks_of_many_sources() -> None:
    from phagocyte.ingest.pipeline import _Pool

    pool = _Pool(runs=[(0, 0, 3), (2, 0, 2), (0, 3, 1), (1, 7, 2)], count=8)
    owners, ordinals = pool.owners_and_ordinals()
    assert owners.tolist() == [0, 0, 0, 2, 2, 0, 1, 1]
    assert ordinals.tolist() == [0, 1, 2, 0, 1, 3, 7, 8]


def test_event_ids_of_pooled_sources_without_lines_count_per_source(tmp_path: Path, settings) -> None:
    """Records without a line number get ``<source>#<ordinal>`` ids: the ordinal counts within its
    own source, even when the records of several sources are mapped in one pool."""
    mapping = JsonMapping({"x": "VARCHAR"}, {"message": "j.x", "event.dataset": "'test.nolines'"})

    class _NoLines(Reader):
        name = "test_nolines"
        description = "test"

        def sniff(self, head: bytes, path: str) -> int:
            return 0

        def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
            for raws, _lines, _offs in iter_json_blocks(ctx):
                for i in range(0, len(raws), 2):  # several blocks per source
                    chunk = list(raws[i:i + 2])
                    yield JsonRecords(mapping, [str(r) for r in chunk], [None] * len(chunk), [None] * len(chunk))

    REGISTRY[_NoLines.name] = _NoLines
    try:
        (tmp_path / "in").mkdir()
        for name, n in (("a.json", 5), ("b.json", 3)):
            (tmp_path / "in" / name).write_text("".join(f'{{"x": "{name}-{i}"}}\n' for i in range(n)))
        report, store = run_ingest([tmp_path / "in"], settings, format="test_nolines")
    finally:
        REGISTRY.pop(_NoLines.name, None)
    assert report.events == 8
    got = rows(store, 'select message, "event.id" id from events order by message')
    assert [r["message"] for r in got] == [f"a.json-{i}" for i in range(5)] + [f"b.json-{i}" for i in range(3)]
    ids = [str(r["id"]) for r in got]
    assert [i.split("#")[1] for i in ids] == ["0", "1", "2", "3", "4", "0", "1", "2"]
    assert len({i.split("#")[0] for i in ids}) == 2


def test_a_big_source_keeps_freed_memory_in_the_heap_then_hands_it_back(tmp_path: Path, settings,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from phagocyte.ingest import pipeline

    calls: list[str] = []
    monkeypatch.setattr(pipeline, "_keep_heap", lambda: calls.append("keep") or True)
    monkeypatch.setattr(pipeline, "_trim_heap", lambda: calls.append("trim"))
    small = tmp_path / "small.json"
    small.write_text(_eve(1))
    run_ingest([small], settings)
    assert calls == []  # a small input leaves the allocator alone (issue 3's memory)
    monkeypatch.setattr(pipeline, "KEEP_HEAP_BYTES", 1000)
    big = tmp_path / "big.json"
    big.write_text("".join(_eve(i) for i in range(20)))
    other = tmp_path / "other.json"
    other.write_text("".join(_eve(i) for i in range(20, 40)))
    report, _ = run_ingest([big, other], settings)
    assert report.events == 40
    assert calls == ["keep", "trim"]  # set once for the run, handed back once after it


def test_the_heap_thresholds_are_set_where_glibc_allows_it() -> None:
    from phagocyte import glibc
    from phagocyte.ingest import pipeline

    libc = glibc.glibc()
    if libc is None:
        pytest.skip("not glibc")
    assert pipeline._keep_heap() is True
    pipeline._trim_heap()


_TEXTS = JsonMapping({"x": "VARCHAR"}, {"message": "left(j.x, 4)", "event.dataset": "'test.texts'"},
                     keep_original=False)  # as EVTX: the texts are not stored


class _Texts(Reader):
    """Like the EVTX reader: each file's records handed over as Python strings (1,000 x 2.5 KB)."""

    name = "test_texts"
    description = "test"

    def sniff(self, head: bytes, path: str) -> int:
        return 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        tag = Path(ctx.source.path).name
        raws = [f'{{"x": "{tag}-{i:04d}{"y" * 2500}"}}' for i in range(1000)]
        yield JsonRecords(_TEXTS, raws, [None] * len(raws), [None] * len(raws))


def test_the_json_texts_of_a_pool_are_dropped_before_its_rows_reach_detection(tmp_path: Path, settings) -> None:
    """`phago hunt` runs detection on each mapped pool (`on_table`): the pool's texts (here 10 MB,
    copied once more into one array to be mapped) must not be held to detection's peak."""
    import pyarrow as pa

    from phagocyte.detect.transient import TransientStore
    from phagocyte.ingest.pipeline import ingest

    REGISTRY[_Texts.name] = _Texts
    try:
        for i in range(4):
            (tmp_path / f"f{i}.txt").write_text(f"records made up by the reader ({i})\n")
        held: list[int] = []
        seen: list[str] = []

        def on_table(table: pa.Table) -> None:
            held.append(pa.total_allocated_bytes())
            seen.extend(table.column("message").to_pylist())

        before = pa.total_allocated_bytes()  # what earlier tests left alive
        report = ingest([str(tmp_path / f"f{i}.txt") for i in range(4)], TransientStore(), settings,
                        format="test_texts", on_table=on_table)
    finally:
        REGISTRY.pop(_Texts.name, None)
    assert report.events == 4000 and len(held) == 1  # one pool: the four sources mapped together
    assert sorted(set(seen)) == ["f0.t", "f1.t", "f2.t", "f3.t"] and len(seen) == 4000
    extra = held[0] - before
    assert extra < 4 * 1024 * 1024, f"{extra / 2**20:.1f} MB more Arrow memory held at detection"


def test_a_pool_mapped_in_parts_stores_and_quarantines_as_one_query(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool of many sources hands parts (`MAP_PART_BYTES`) to idle workers while the rest is read:
    the same rows, event ids and quarantined records (with their own file and line) as when mapped
    in one query."""
    from phagocyte.config import load_settings
    from phagocyte.ingest import pipeline

    (tmp_path / "in").mkdir()
    for k in range(6):
        values = [str(10 * k + i) for i in range(5)]
        if k in (1, 4):
            values[2 + k % 2] = f"bad{k}"
        (tmp_path / "in" / f"s{k}.json").write_text("\n".join(f'{{"x": "{v}"}}' for v in values) + "\n")

    def stored(part_bytes: int, home: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        monkeypatch.setattr(pipeline, "MAP_PART_BYTES", part_bytes)
        report, store = run_ingest([tmp_path / "in"], load_settings(tmp_path / home), format="test_strict")
        assert report.events == 28 and report.quarantined == 2
        ev = rows(store, 'select message, "event.id" id, "log.file.path" p from events order by p, "log.file.line"')
        q = rows(store, "select path, line, reason from quarantine order by path")
        return [tuple(r.values()) for r in ev], [tuple(r.values()) for r in q]

    calls: list[int] = []
    real = pipeline._apply_guarded
    monkeypatch.setattr(pipeline, "_apply_guarded", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    whole = stored(10 * 1024 * 1024, "whole")
    assert calls[0] == 30  # one query for the six sources
    calls.clear()
    parts = stored(100, "parts")
    assert len(calls) >= 2 and calls[0] < 30  # a first part mapped while the rest was read
    assert parts == whole
    assert [(Path(str(p)).name, line) for p, line, _ in whole[1]] == [("s1.json", 4), ("s4.json", 3)]
