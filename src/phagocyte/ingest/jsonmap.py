"""Normalising JSON records to the event schema in DuckDB, a batch at a time.

Why SQL and not Python dicts: parsing and mapping 50,000 JSON records per batch inside DuckDB
(vectorised, outside the GIL, so two batches map side by side on two cores) runs several times
faster than ``orjson`` plus per-record Python, and a mapping written as
``{ecs_field: sql_expression}`` is short, declarative and easy to document.

A mapping declares a DuckDB ``json_transform`` structure (only the keys it needs, parsed once per
record) and one SQL expression per event field over ``j`` (the transformed struct), ``raw`` (the
record text), ``line`` and ``off``. Records that are not JSON objects are quarantined with the
parser's own error message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from phagocyte.schema import FIELD_TYPES

__all__ = ["JsonMapping", "JsonRecords", "bounded_ts", "epoch_ts", "int_expr", "list_expr", "sql_str", "str_list",
           "ts_expr"]


_RAW = re.compile(r"(?<![\w.\"'])raw(?![\w\"'])")
"""A column expression that reads the record text ``raw`` (not a field or a literal of that name)."""


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


_MAX_SECONDS = 9_007_199_254
"""Times are kept within 2**53 microseconds of 1970 (years 1684-2255): beyond that a timestamp
cannot round-trip through float64 and no real log needs it."""


def ts_expr(expr: str, *, epoch: bool = True) -> str:
    """ISO-8601 text (any offset; none means UTC) as a UTC timestamp; with `epoch`, also epoch
    seconds / ms / us / ns told apart by magnitude. NULL, never an error, for anything else."""
    out = bounded_ts(f"TRY_CAST({expr} AS TIMESTAMPTZ)")
    return f"COALESCE({out}, {epoch_ts(f'TRY_CAST({expr} AS DOUBLE)')})" if epoch else out


def bounded_ts(ts: str) -> str:
    """`ts` if finite and inside the range the store can partition, else NULL."""
    return f"CASE WHEN isfinite({ts}) AND abs(epoch({ts})) <= {_MAX_SECONDS} THEN {ts} END"


def epoch_ts(d: str) -> str:
    """A DOUBLE epoch in seconds, ms, us or ns (told apart by magnitude) as a timestamp, or NULL."""
    secs = (f"CASE WHEN abs({d}) < 1e11 THEN {d} WHEN abs({d}) < 1e14 THEN {d} / 1e3 "
            f"WHEN abs({d}) < 1e17 THEN {d} / 1e6 ELSE {d} / 1e9 END")
    return f"CASE WHEN isfinite({d}) AND abs({secs}) <= {_MAX_SECONDS} THEN to_timestamp({secs}) END"


def int_expr(expr: str) -> str:
    """Text or number as BIGINT (``0x..`` hex accepted); NULL, never an error, when out of range."""
    return (f"COALESCE(TRY_CAST({expr} AS BIGINT), CASE WHEN lower({expr}) LIKE '0x%' "
            f"THEN TRY_CAST(TRY_CAST({expr} AS UBIGINT) AS BIGINT) END)")


def str_list(json_expr: str) -> str:
    """A JSON array (or a single JSON scalar) as a list of text; NULL when absent, null or empty."""
    arr = f"list_filter(from_json({json_expr}, '[\"VARCHAR\"]'), lambda x: x IS NOT NULL)"
    return (f"CASE json_type({json_expr}) WHEN 'ARRAY' THEN NULLIF({arr}, []) WHEN 'NULL' THEN NULL "
            f"WHEN 'OBJECT' THEN [CAST({json_expr} AS VARCHAR)] "
            f"ELSE CASE WHEN {json_expr} IS NOT NULL THEN [{json_expr} ->> '$'] END END")


def list_expr(*exprs: str) -> str:
    """A list of the non-NULL values among `exprs`."""
    return f"list_filter([{', '.join(exprs)}], lambda x: x IS NOT NULL)"


class JsonMapping:
    """A compiled ``json_transform`` structure plus column expressions."""

    def __init__(
        self,
        structure: Mapping[str, Any],
        columns: Mapping[str, str],
        *,
        keep_original: bool = True,
        stages: Sequence[Mapping[str, str]] = (),
        trusted: bool = False,
    ) -> None:
        """`columns` are computed from ``j``/``raw``/``line``/``off``. Each of `stages`, if any,
        is computed over the columns before it (referenced by name): mappings shared between
        formats (``ingest/windows.py``) take private ``_name`` columns from the format-specific
        first stage. Only event-schema columns reach the result.

        `trusted`: the texts come from a parser that emits only JSON objects (EVTX), so the parse
        is not wrapped in TRY() (~0.7 us per record); should one still fail, ``_apply_guarded``
        in the pipeline bisects the pool and quarantines it with DuckDB's message."""
        names = set(columns).union(*[set(st) for st in stages])
        unknown = {k for k in names if not k.startswith("_")} - FIELD_TYPES.keys()
        if unknown:
            raise ValueError(f"mapping names fields not in the event schema: {sorted(unknown)}")
        self.structure = dict(structure)
        cols = dict(columns)
        cols.setdefault("log.file.line", "line")
        cols.setdefault("log.offset", "off")
        # The verbatim record is attached in Arrow by apply(), not copied through DuckDB.
        self._attach_raw = keep_original and "event.original" not in cols
        struct_sql = sql_str(json.dumps(self.structure))
        # One parse per record: TRY() turns text that is not JSON into NULL instead of failing the
        # batch; an object is the only JSON value that starts with '{'. Records that are not
        # objects are flagged (``__ok``) and dropped in Arrow, not by a WHERE: DuckDB pushes such a
        # filter below the projection and so parsed every record twice (~25-40% of the query).
        # Their text is hidden (NULL) from the column expressions, which may parse ``raw`` again.
        parsed = (f"SELECT seq, raw, line, off, {'' if trusted else 'TRY'}(json_transform(raw, {struct_sql})) AS j "
                  "FROM __batch")
        # ltrim() copies every text; only a record that does not start with '{' needs it.
        flagged = (f"SELECT *, (j IS NOT NULL AND (starts_with(raw, '{{') "
                   f"OR starts_with(ltrim(raw, ' \t\r\n'), '{{'))) AS __ok FROM ({parsed})")
        if any(_RAW.search(expr) for st in (cols, *stages) for expr in st.values()):
            sql = (f"SELECT seq, __ok, {_select(cols)}\nFROM (SELECT seq, line, off, j, __ok, "
                   f"CASE WHEN __ok THEN raw END AS raw FROM ({flagged}))")
        else:  # no expression reads the text: one projection less (~1 us per record)
            sql = f"SELECT seq, __ok, {_select(cols)}\nFROM ({flagged})"
        public = [k for k in cols if not k.startswith("_")]
        for stage in stages:
            sql = f"SELECT *, {_select(stage)}\nFROM ({sql})"
            public += [k for k in stage if not k.startswith("_")]
        self.columns = public + (["event.original"] if self._attach_raw else [])
        listing = ", ".join(f'"{k}"' for k in dict.fromkeys(public))
        # No ORDER BY (25-30% of the query): DuckDB keeps insertion order; apply() checks `seq`.
        self._sql = f"SELECT seq, __ok, {listing} FROM ({sql})"

    @property
    def sql(self) -> str:
        return self._sql

    def apply(
        self,
        con: duckdb.DuckDBPyConnection,
        raws: pa.StringArray | pa.ChunkedArray | Sequence[str],
        lines: pa.Int64Array | pa.ChunkedArray | Sequence[int | None],
        offsets: pa.Int64Array | pa.ChunkedArray | Sequence[int | None],
        relations: dict[int, duckdb.DuckDBPyRelation] | None = None,
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        """Map a batch of JSON texts. Returns the mapped rows (in input order, without the bad
        ones) and ``(index, reason)`` for each record that is not a JSON object.

        Arrow input may be chunked: DuckDB scans the chunks in turn (many small ones are slower:
        300 chunks of a folder of EVTX files took ~1.5x the time of one array).

        `relations`: a cache, private to `con`, of this mapping's query as a DuckDB relation.
        Creating the relation binds the query, and running it binds it again (against the batch
        registered then): reusing it skips the first bind, ~6 of the ~18 ms of fixed cost that
        every pool pays (20-odd pools per million EVE alerts, one per small batch of EVTX files)."""
        if not isinstance(raws, pa.Array | pa.ChunkedArray):
            raws = pa.array(raws, pa.string())
        if not isinstance(lines, pa.Array | pa.ChunkedArray):
            lines = pa.array(lines, pa.int64())
        if not isinstance(offsets, pa.Array | pa.ChunkedArray):
            offsets = pa.array(offsets, pa.int64())
        seq = pa.array(np.arange(len(raws), dtype=np.int64))
        con.register("__batch", pa.table({"raw": raws, "line": lines, "off": offsets, "seq": seq}))
        try:
            rel = relations.get(id(self)) if relations is not None else None
            out = rel.to_arrow_table() if rel is not None else None
            if out is None or out.num_rows != len(raws):  # not cached (or, never seen, not re-bound)
                rel = con.sql(self._sql)
                out = rel.to_arrow_table()
                if relations is not None:
                    relations[id(self)] = rel
        except duckdb.Error:
            if relations is not None:
                relations.pop(id(self), None)
            raise
        finally:
            con.unregister("__batch")
        if out.num_rows != len(raws):
            raise RuntimeError(f"mapping returned {out.num_rows} rows for {len(raws)} records")
        if not out.column("seq").equals(pa.chunked_array([seq])):  # order is kept; stay correct anyway
            out = out.sort_by("seq")
        raw = raws
        bad_idx: list[int] = []
        ok = out.column("__ok")
        if ok.null_count or not pc.all(ok).as_py():
            keep = pc.fill_null(ok, False)
            bad_idx = pc.indices_nonzero(pc.invert(keep)).to_pylist()
            out, raw = out.filter(keep), raw.filter(keep.combine_chunks())
        table = out.drop_columns(["seq", "__ok"])
        if self._attach_raw:  # texts split without copying keep their line end: not part of the record
            table = table.append_column("event.original", pc.utf8_rtrim(raw, characters="\r\n"))
        return table, [(i, _json_error(raws[i].as_py())) for i in bad_idx]


@dataclass
class JsonRecords:
    """What a JSON-family reader yields: raw records for the pipeline to map with `mapping`.

    The pipeline pools the records of many sources per mapping, so that one DuckDB query maps
    them all: planning a mapping costs tens of milliseconds, a lot for a 60-record EVTX file.
    """

    mapping: JsonMapping
    raws: list[str] | pa.StringArray
    lines: list[int | None] | pa.Int64Array
    offsets: list[int | None] | pa.Int64Array

    def __len__(self) -> int:
        return len(self.raws)


def _select(cols: Mapping[str, str]) -> str:
    return ",\n  ".join(f'{expr} AS "{name}"' for name, expr in cols.items())


def _json_error(text: str) -> str:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    return f"JSON {type(value).__name__}, not an object"
