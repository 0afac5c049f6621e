"""JsonMapping: one parse per record, bad records flagged rather than filtered."""

from __future__ import annotations

import duckdb
import pytest

from phagocyte.ingest.jsonmap import JsonMapping
from phagocyte.ingest.pipeline import _apply_guarded


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(":memory:")
    c.execute("SET TimeZone='UTC'")
    return c


def _texts(n: int) -> list[str]:
    return ['{"a": "x"}', "not json", "[1, 2]", '"text"', '  {"a": "y"}', "{broken"][:n]


def test_records_that_are_not_objects_are_returned_as_bad_in_order(con: duckdb.DuckDBPyConnection) -> None:
    m = JsonMapping({"a": "VARCHAR"}, {"message": "j.a", "event.dataset": "'test.map'"})
    texts = _texts(6)
    table, bad = m.apply(con, texts, list(range(1, 7)), [None] * 6)
    assert table.column("message").to_pylist() == ["x", "y"]
    assert table.column("log.file.line").to_pylist() == [1, 5]
    assert table.column("event.original").to_pylist() == ['{"a": "x"}', '  {"a": "y"}']
    assert [i for i, _ in bad] == [1, 2, 3, 5]
    assert bad[0][1].startswith("not JSON") and bad[1][1] == "JSON list, not an object"


def test_an_expression_that_parses_the_text_never_sees_a_bad_record(con: duckdb.DuckDBPyConnection) -> None:
    """Bad records are no longer filtered before the expressions run: their text is hidden from
    expressions that read ``raw``, else json_extract on 'not json' would fail the whole pool."""
    m = JsonMapping({"a": "VARCHAR"}, {"message": "json_extract_string(raw, '$.a')",
                                       "event.dataset": "'test.map'"})
    table, bad = m.apply(con, _texts(6), [None] * 6, [None] * 6)
    assert table.column("message").to_pylist() == ["x", "y"]
    assert [i for i, _ in bad] == [1, 2, 3, 5]


def test_each_record_is_parsed_once(con: duckdb.DuckDBPyConnection) -> None:
    """The pool is parsed by one json_transform, with no WHERE for the optimiser to push below it."""
    m = JsonMapping({"a": "VARCHAR"}, {"message": "j.a"})
    assert m.sql.count("json_transform(") == 1 and "WHERE" not in m.sql.upper()


def test_a_trusted_mapping_lets_the_guard_quarantine_what_the_parser_should_not_emit(
        con: duckdb.DuckDBPyConnection) -> None:
    """No TRY(): text that is not JSON fails the query, and the pipeline's bisection finds it."""
    m = JsonMapping({"a": "VARCHAR"}, {"message": "j.a", "event.dataset": "'test.map'"}, trusted=True)
    with pytest.raises(duckdb.Error):
        m.apply(con, ['{"a": "x"}', "not json"], [None, None], [None, None])
    import pyarrow as pa

    raws = pa.array(['{"a": "x"}', "not json", '{"a": "z"}'])
    nulls = pa.nulls(3, pa.int64())
    table, bad = _apply_guarded(m, con, raws, nulls, nulls)
    assert table.column("message").to_pylist() == ["x", "z"]
    assert [i for i, _ in bad] == [1] and bad[0][1].startswith("mapping failed")


def test_a_cached_relation_maps_each_new_batch_not_the_first(con: duckdb.DuckDBPyConnection) -> None:
    """The cached relation is bound again to whatever batch is registered when it runs: batches of
    the same size but different content each come back as themselves, in order."""
    m = JsonMapping({"a": "VARCHAR"}, {"message": "j.a", "event.dataset": "'test.map'"})
    rels: dict[int, duckdb.DuckDBPyRelation] = {}
    for batch in (["p", "q", "r"], ["s", "t", "u"], ["v"], ["w", "x", "y"]):
        texts = [f'{{"a": "{v}"}}' for v in batch]
        table, bad = m.apply(con, texts, list(range(1, len(batch) + 1)), [None] * len(batch), rels)
        assert table.column("message").to_pylist() == batch and not bad
    assert list(rels) == [id(m)]


def test_a_cached_relation_survives_a_failing_batch(con: duckdb.DuckDBPyConnection) -> None:
    m = JsonMapping({"a": "VARCHAR"}, {"message": "CAST(CAST(j.a AS INTEGER) AS VARCHAR)",
                                       "event.dataset": "'test.map'"})
    rels: dict[int, duckdb.DuckDBPyRelation] = {}
    assert m.apply(con, ['{"a": "1"}'], [1], [None], rels)[0].column("message").to_pylist() == ["1"]
    with pytest.raises(duckdb.Error):
        m.apply(con, ['{"a": "oops"}'], [1], [None], rels)
    assert m.apply(con, ['{"a": "2"}', '{"a": "3"}'], [1, 2], [None, None], rels)[0].column(
        "message").to_pylist() == ["2", "3"]
