"""Windows EVTX files, parsed by the ``evtx`` package (Rust, multi-threaded).

The parser renders each record as JSON; DuckDB maps a batch of them to ECS (``ingest/windows.py``).
A corrupt chunk does not end the file: the parser skips it (``skip_errors``), and each chunk it
skipped is quarantined with its number and byte offset.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import evtx

from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords, int_expr
from phagocyte.ingest.reader import ReadContext, Reader, register
from phagocyte.ingest.windows import windows_stages

_MAGIC = b"ElfFile\x00"
_CHUNK = re.compile(r"chunk number (\d+)")
_HEADER_BYTES = 4096
_CHUNK_BYTES = 65536

_SYS = {
    "Provider": {"#attributes": {"Name": "VARCHAR", "Guid": "VARCHAR"}},
    "EventID": "JSON", "Version": "BIGINT", "Level": "BIGINT", "Task": "VARCHAR",
    "Opcode": "VARCHAR", "Keywords": "VARCHAR", "Channel": "VARCHAR", "Computer": "VARCHAR",
    "EventRecordID": "BIGINT",
    "TimeCreated": {"#attributes": {"SystemTime": "VARCHAR"}},
    "Execution": {"#attributes": {"ProcessID": "BIGINT", "ThreadID": "BIGINT"}},
    "Security": {"#attributes": {"UserID": "VARCHAR"}},
    "Correlation": {"#attributes": {"ActivityID": "VARCHAR"}},
}
_S = "j.Event.System"
# A JSON value from json_transform is minified text: an object is one that starts with '{'
# (json_type() would parse each EventData again).
_ED = (
    "CASE WHEN starts_with(j.Event.EventData, '{') THEN j.Event.EventData "
    "WHEN starts_with(j.Event.UserData, '{') THEN (json_extract(j.Event.UserData, '$.*'))[1] END"
)
_EID = (
    "COALESCE("
    + int_expr(f"json_extract_string({_S}.EventID, '$')")
    + ", "
    + int_expr(f"json_extract_string({_S}.EventID, '$.\"#text\"')")
    + ")"
)

MAPPING_FIRST = {
        "_ts": f"TRY_CAST({_S}.TimeCreated.\"#attributes\".SystemTime AS TIMESTAMPTZ)",
        "_channel": f"{_S}.Channel",
        "_eid": _EID,
        "_provider": f"{_S}.Provider.\"#attributes\".Name",
        "_provider_guid": f"{_S}.Provider.\"#attributes\".Guid",
        "_computer": f"{_S}.Computer",
        "_record_id": f"{_S}.EventRecordID",
        "_version": f"{_S}.Version",
        "_level": f"{_S}.Level",
        "_task": f"{_S}.Task",
        "_opcode": f"{_S}.Opcode",
        "_keywords": f"{_S}.Keywords",
        "_pid": f"{_S}.Execution.\"#attributes\".ProcessID",
        "_tid": f"{_S}.Execution.\"#attributes\".ThreadID",
        "_user_sid": f"{_S}.Security.\"#attributes\".UserID",
        "_activity_id": f"{_S}.Correlation.\"#attributes\".ActivityID",
        "_ed": f"CAST({_ED} AS VARCHAR)",
        "_message": "CAST(NULL AS VARCHAR)",
        "log.file.line": "CAST(NULL AS BIGINT)",
        "log.offset": "CAST(NULL AS BIGINT)",
}
MAPPING = JsonMapping(
    {"Event": {"System": _SYS, "EventData": "JSON", "UserData": "JSON"}},
    MAPPING_FIRST,
    keep_original=False,
    trusted=True,
    stages=windows_stages(),
)


@register
class EvtxReader(Reader):
    name = "evtx"
    description = "Windows event log files (.evtx), any channel"
    magic = _MAGIC

    def sniff(self, head: bytes, path: str) -> int:
        return 100 if head.startswith(_MAGIC) else 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        path = ctx.source.materialise(ctx.limits)
        parser = evtx.PyEvtxParser(str(path), skip_errors=True)
        records = iter(parser.records_json())
        rows = ctx.limits.batch_rows
        done = False
        while not done:
            raws: list[str] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    for rec in records:
                        raws.append(rec["data"])  # type: ignore[index]
                        if len(raws) >= rows:
                            break
                    else:
                        done = True
                except RuntimeError as exc:  # an error the parser could not skip: the rest is lost
                    self._chunk_error(ctx, str(exc))
                    done = True
            for w in caught:
                if issubclass(w.category, RuntimeWarning) and str(w.message).startswith("Skipping "):
                    self._chunk_error(ctx, str(w.message))
                else:  # catch_warnings is process-wide: another thread's warning, not a bad chunk
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            if raws:
                n = len(raws)
                yield JsonRecords(MAPPING, raws, [None] * n, [None] * n)

    @staticmethod
    def _chunk_error(ctx: ReadContext, message: str) -> None:
        m = _CHUNK.search(message)
        chunk = int(m.group(1)) if m else None
        offset = _HEADER_BYTES + chunk * _CHUNK_BYTES if chunk is not None else None
        ctx.bad(f"EVTX: {message.removeprefix('Skipping EVTX data: ')}", record=chunk, offset=offset)
