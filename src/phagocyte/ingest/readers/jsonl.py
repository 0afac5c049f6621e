"""Generic JSON lines (or one top-level JSON array of objects): the fallback for any JSON log.

A record that already speaks ECS, nested (``{"host": {"name": ...}}``) or flat dotted
(``{"host.name": ...}``), has every event-schema field it carries mapped; a plain application log
gets its time (``@timestamp``, ``timestamp``, ``time``, ``ts``, ``date`` or ``eventTime``: ISO-8601
or epoch seconds, milliseconds, microseconds or nanoseconds), message and level. The whole record
is always kept in ``event.original``. Sniffing scores only 10, so that every specific JSON reader
wins when its marker keys are present.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from phagocyte.ingest.jsondocs import first_json_object, iter_json_blocks
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords, bounded_ts, epoch_ts, int_expr, sql_str, str_list
from phagocyte.ingest.reader import ReadContext, Reader, register
from phagocyte.schema import EVENT_SCHEMA

__all__ = ["MAPPING", "JsonLinesReader"]

# Set by the pipeline (provenance, position) or by this reader (the raw record): not read from JSON.
_NOT_FROM_RECORD = {"event.id", "event.ingested", "event.original", "log.file.path", "log.file.line",
                    "log.offset"}
# Text in the event schema, an array in ECS: the first value is kept (all of them stay in the original).
_ECS_ARRAYS = {"host.ip"}
_TIME_KEYS = ("timestamp", "time", "ts", "date", "eventTime")


def _build() -> JsonMapping:
    structure: dict[str, Any] = {}
    columns: dict[str, str] = {}
    time_texts: list[str] = []
    for field in EVENT_SCHEMA:
        name, typ = field.name, field.type
        if name in _NOT_FROM_RECORD:
            continue
        kind = "JSON" if pa.types.is_list(typ) or name in _ECS_ARRAYS else "VARCHAR"
        parts = name.split(".")
        node = structure
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = kind
        structure[name] = kind
        nested = "j" + "".join(f"[{sql_str(p)}]" for p in parts)
        dotted = f"j[{sql_str(name)}]"
        spellings = [nested] if len(parts) == 1 else [nested, dotted]
        if pa.types.is_list(typ):
            vals = [str_list(s) for s in spellings]
        elif pa.types.is_timestamp(typ):  # @timestamp: parsed in the second stage, with the plain-log keys
            time_texts = spellings
            continue
        elif name in _ECS_ARRAYS:
            vals = [f"CASE json_type({s}) WHEN 'ARRAY' THEN {s} ->> '$[0]' ELSE {s} ->> '$' END"
                    for s in spellings]
        elif pa.types.is_integer(typ):
            vals = [int_expr(s) for s in spellings]
        else:
            vals = list(spellings)
        columns[name] = vals[0] if len(vals) == 1 else f"COALESCE({', '.join(vals)})"
    # Plain application logs: the usual names for time, message and level.
    for key in (*_TIME_KEYS, "msg", "level", "log_level", "hostname"):
        structure[key] = "VARCHAR"
    # Time: the first candidate that is ISO-8601, else the first that is a number (epoch).
    texts = [*time_texts, *(f"j[{sql_str(k)}]" for k in _TIME_KEYS)]
    columns["_iso"] = "COALESCE(" + ", ".join(f"TRY_CAST({t} AS TIMESTAMPTZ)" for t in texts) + ")"
    columns["_num"] = "COALESCE(" + ", ".join(f"TRY_CAST({t} AS DOUBLE)" for t in texts) + ")"
    columns["message"] = f"COALESCE({columns['message']}, j['msg'])"
    columns["log.level"] = f"COALESCE({columns['log.level']}, j['level'], j['log_level'])"
    columns["host.name"] = f"COALESCE({columns['host.name']}, j['hostname'])"
    columns["event.kind"] = f"COALESCE({columns['event.kind']}, 'event')"
    columns["event.dataset"] = f"COALESCE({columns['event.dataset']}, 'json')"
    stage = {"@timestamp": f"COALESCE({bounded_ts('_iso')}, {epoch_ts('_num')})"}
    return JsonMapping(structure, columns, stages=[stage])


MAPPING = _build()


@register
class JsonLinesReader(Reader):
    name = "jsonl"
    resumable = True
    description = "Any JSON lines / JSON array of objects (ECS nested or dotted names, or plain app logs)"

    def sniff(self, head: bytes, path: str) -> int:
        if first_json_object(head) is not None:
            return 10
        # A first line longer than the head cannot be parsed here; an object start is enough.
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        return 10 if text.startswith(b"{") and b"\n" not in text else 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        for raws, lines, offsets in iter_json_blocks(ctx):
            yield JsonRecords(MAPPING, raws, lines, offsets)
