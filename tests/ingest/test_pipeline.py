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
