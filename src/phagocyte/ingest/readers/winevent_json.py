"""Windows events exported as JSON: NXLog/Mordor and other flat records, Azure Log Analytics rows,
Winlogbeat 6 and 7+, and the EVTX rendering ``{"Event": {"System": ..., "EventData": ...}}``; as
JSON lines, a JSON array, or pretty-printed objects one after another (``evtx_dump -o json``).

Why one reader: a single ``json_transform`` structure holds the keys of every shape (they do not
collide), so even a file that mixes them maps in one DuckDB query. Each shape only fills the
private System columns (``_channel``, ``_eid``, ``_ed`` = EventData as a JSON object, ...);
``ingest/windows.py`` maps those to ECS exactly as for EVTX files, so a Sysmon process creation
gives the same fields whichever way it was exported.

Flat exports put EventData beside the System fields, so EventData is the record minus the known
envelope keys (removed with ``json_merge_patch``). NXLog's ``EventTime`` is the collector's local
time without an offset; the offset is recovered from ``@timestamp`` (UTC) and
``EventReceivedTime`` (the same clock), both stamped on receipt, which gives the event's own time
in UTC.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

from phagocyte.ingest.jsondocs import (
    JsonBlock,
    first_json_object,
    iter_json_blocks,
    looks_like_json_array,
    read_document,
)
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords, bounded_ts, int_expr, sql_str
from phagocyte.ingest.reader import EXCERPT_BYTES, ReadContext, Reader, register
from phagocyte.ingest.windows import windows_stages

_V = "VARCHAR"
_ATTRS = {  # System element -> attributes: evtx-rs writes {"#attributes": {..}}, xmltodict "@Name"
    "Provider": ("Name", "Guid"), "TimeCreated": ("SystemTime",),
    "Execution": ("ProcessID", "ThreadID"), "Security": ("UserID",), "Correlation": ("ActivityID",),
}
_SYS: dict[str, object] = {
    el: {"#attributes": {a: _V for a in attrs}, **{f"@{a}": _V for a in attrs}}
    for el, attrs in _ATTRS.items()
}
_SYS.update({k: _V for k in ("Version", "Level", "Task", "Opcode", "Keywords", "Channel", "Computer",
                             "EventRecordID")})
_SYS["EventID"] = "JSON"
_WINLOG = {
    **{k: _V for k in ("channel", "event_id", "provider_name", "provider_guid", "computer_name",
                       "record_id", "version", "task", "opcode", "activity_id")},
    "keywords": "VARCHAR[]", "process": {"pid": _V, "thread": {"id": _V}}, "user": {"identifier": _V},
    "event_data": "JSON", "user_data": "JSON",
}
# Keys are matched case-sensitively, but one structure may not hold two keys differing only in
# case: Winlogbeat's "message", "version", "task", "opcode", "keywords" are read apart (_beat).
_FLAT = ("@timestamp", "@version", "EventTime", "EventReceivedTime", "TimeCreated", "TimeGenerated",
         "Channel", "EventID", "SourceName", "ProviderName", "EventSourceName", "ProviderGuid",
         "Hostname", "Computer", "RecordNumber", "EventRecordID", "Version", "Level", "EventLevel",
         "Task", "Opcode", "OpcodeValue", "ExecutionProcessID", "UserID", "ActivityID", "Message",
         "EventType", "EventTypeOrignal", "SourceModuleType", "TenantId", "_ResourceId")
STRUCTURE: dict[str, object] = {
    **{k: _V for k in _FLAT},
    **{k: "JSON" for k in ("Provider", "Keywords", "ProcessID", "ThreadID", "EventData", "host")},
    "tags": "VARCHAR[]", "winlog": _WINLOG,
    **{k: _V for k in ("log_name", "source_name", "computer_name", "event_id", "record_number",
                       "process_id", "thread_id", "provider_guid", "activity_id")},
    "event_data": "JSON", "user_data": "JSON", "user": {"identifier": _V},
    "Event": {"System": _SYS, "EventData": "JSON", "UserData": "JSON"},
}

# --- safe conversions (a hostile value gives NULL, never an error for the whole batch) ---------
_int = int_expr  # text or number as BIGINT (hex accepted); NULL when out of range


def _ts(expr: str) -> str:
    return f"TRY_CAST({expr} AS TIMESTAMPTZ)"


def _drop(keys: tuple[str, ...]) -> str:
    return sql_str(json.dumps(dict.fromkeys(keys)))


def _if(cond: str, patch: str) -> str:
    return f"CASE WHEN {cond} THEN {patch} ELSE '{{}}' END"


def _is_int(expr: str) -> str:
    """`expr` (a JSON value) is a JSON integer."""
    return f"COALESCE(json_type({expr}) IN ('BIGINT', 'UBIGINT'), false)"


def _pairs_to_object(pairs: str) -> str:
    """A list of '"name":value' texts (NULL entries skipped) as one JSON object text."""
    return f"'{{' || array_to_string(list_filter({pairs}, lambda p: p IS NOT NULL), ',') || '}}'"


def _xml_unescape(expr: str) -> str:
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        expr = f"replace({expr}, {sql_str(ent)}, {sql_str(ch)})"
    return expr


# --- flat exports: everything but the envelope keys is EventData ------------------------------
_SYSTEM_KEYS = ("EventID", "Channel", "Hostname", "SourceName", "ProviderName", "ProviderGuid",
                "Message", "Task", "Keywords", "Level", "Version", "Opcode", "RecordNumber",
                "EventRecordID", "TimeCreated", "@timestamp", "ActivityID", "RelatedActivityID")
_NXLOG_KEYS = ("EventTime", "EventReceivedTime", "SourceModuleName", "SourceModuleType", "Severity",
               "SeverityValue", "Category", "OpcodeValue", "ExecutionProcessID", "AccountName",
               "Domain", "UserID", "AccountType", "EventTypeOrignal", "ERROR_EVT_UNRESOLVED")
_LOGSTASH_KEYS = ("@version", "host", "port", "tags", "type")
_LA_KEYS = ("TenantId", "SourceSystem", "TimeGenerated", "Computer", "MG", "ManagementGroupName",
            "Type", "_ResourceId", "EventSourceName", "Provider", "Activity", "SourceComputerId",
            "EventOriginId", "TimeCollected", "EventLevel", "EventLevelName", "EventData_dynamic")
_NXLOG_SEVERITIES = ("INFO", "AUDIT_SUCCESS", "AUDIT_FAILURE", "WARNING", "ERROR", "CRITICAL",
                     "VERBOSE", "DEBUG")

_LA = "(j.TenantId IS NOT NULL OR j._ResourceId IS NOT NULL)"  # an Azure Log Analytics row
# Log Analytics keeps EventData as text: a JSON object (WindowsEvent) or the XML (SecurityEvent).
_EDS = "json_extract_string(j.EventData, '$')"
_XML_VALUE = "regexp_extract(m, '>([^<]*)</Data>', 1)"
_XML_DATA = _pairs_to_object(
    f"list_transform(regexp_extract_all({_EDS}, '<Data Name=\"[^\"]*\"\\s*(?:/>|>[^<]*</Data>)'), "
    "lambda m: to_json(regexp_extract(m, 'Name=\"([^\"]*)\"', 1)) || ':' || "
    f"to_json({_xml_unescape(_XML_VALUE)}))"
)
_FLAT_ED_FIELD = (  # nested CASEs: json_type() of text that is not JSON would raise
    "CASE json_type(j.EventData) WHEN 'OBJECT' THEN CAST(j.EventData AS VARCHAR) "
    f"WHEN 'VARCHAR' THEN CASE WHEN COALESCE(json_valid({_EDS}), false) "
    f"THEN CASE WHEN json_type({_EDS}) = 'OBJECT' THEN {_EDS} END "
    f"WHEN {_EDS} LIKE '%<Data Name=%' THEN {_XML_DATA} END END"
)
_FLAT_ED = (
    "json_merge_patch(raw, " + _drop(_SYSTEM_KEYS) + ", "
    + _if("j.SourceModuleType IS NOT NULL OR j.EventReceivedTime IS NOT NULL", _drop(_NXLOG_KEYS)) + ", "
    + _if('j."@version" IS NOT NULL', _drop(_LOGSTASH_KEYS)) + ", "
    + _if(_LA, _drop(_LA_KEYS)) + ", "
    # NXLog's EventType is a severity; Mordor renamed it EventTypeOrignal where Sysmon has its own.
    + _if("j.EventTypeOrignal IS NULL AND upper(j.EventType) IN ("
          + ", ".join(sql_str(s) for s in _NXLOG_SEVERITIES) + ")", "'{\"EventType\":null}'") + ", "
    # NXLog writes the Execution ids as numbers; an EventData "ProcessID" (5156) is a string.
    + _if(_is_int("j.ProcessID"), "'{\"ProcessID\":null}'") + ", "
    + _if(_is_int("j.ThreadID"), "'{\"ThreadID\":null}'") + ", "
    + _if(f"({_FLAT_ED_FIELD}) IS NOT NULL",
          f"json_merge_patch('{{\"EventData\":null}}', {_FLAT_ED_FIELD})") + ")"
)

# --- the EVTX rendering ----------------------------------------------------------------------
_S = "j.Event.System"
_EE = "j.Event.EventData"
_DATA_LIST = (f"CASE WHEN json_type({_EE}, '$.Data') = 'ARRAY' THEN json_extract({_EE}, '$.Data[*]') "
              f"ELSE [json_extract({_EE}, '$.Data')] END")
_EVTX_ED = (
    f"CASE WHEN json_type({_EE}) = 'OBJECT' THEN CASE "
    # xmltodict: {"Data": [{"@Name": "Image", "#text": "..."}, ...]} -> {"Image": "...", ...}
    f"WHEN COALESCE(json_extract_string({_EE}, '$.Data[0].\"@Name\"'), "
    f"json_extract_string({_EE}, '$.Data.\"@Name\"')) IS NOT NULL THEN "
    + _pairs_to_object(
        f"list_transform({_DATA_LIST}, lambda d: to_json(json_extract_string(d, '$.\"@Name\"')) || ':' "
        "|| COALESCE(to_json(json_extract_string(d, '$.\"#text\"')), 'null'))")
    + f" ELSE CAST({_EE} AS VARCHAR) END "
    "WHEN json_type(j.Event.UserData) = 'OBJECT' "
    "THEN CAST((json_extract(j.Event.UserData, '$.*'))[1] AS VARCHAR) END"
)


def _attr(el: str, name: str) -> str:
    return f'COALESCE({_S}.{el}."#attributes".{name}, {_S}.{el}."@{name}")'


_WL = "j.winlog"
_W7 = f"({_WL}.channel IS NOT NULL OR {_WL}.event_id IS NOT NULL)"  # Winlogbeat 7+: winlog.*
_W6 = "(j.log_name IS NOT NULL AND j.event_id IS NOT NULL)"  # Winlogbeat 6: top-level log_name...
_E = f"({_S} IS NOT NULL)"
_KW_NUM = "TRY_CAST(json_extract_string(j.Keywords, '$') AS HUGEINT)"


def _obj(*exprs: str) -> str:
    """The first of `exprs` (JSON values) that is an object, as text."""
    return "COALESCE(" + ", ".join(f"CASE WHEN json_type({e}) = 'OBJECT' THEN CAST({e} AS VARCHAR) END"
                                   for e in exprs) + ")"


def _kw_names(names: str) -> str:
    """Winlogbeat keeps keyword names only (`names`, a VARCHAR[]): the audit ones become their mask
    bits again, as in EVTX (``event.outcome`` reads them)."""
    names = f"array_to_string({names}, ', ')"
    return (f"CASE WHEN {names} LIKE '%Audit Success%' THEN '0x8020000000000000' "
            f"WHEN {names} LIKE '%Audit Failure%' THEN '0x8010000000000000' ELSE NULLIF({names}, '') END")


FIRST: dict[str, str] = {
    "_t_sys": _ts(_attr("TimeCreated", "SystemTime")),
    "_t_at": _ts('j."@timestamp"'),
    "_t_rcv": "TRY_CAST(j.EventReceivedTime AS TIMESTAMP)",
    "_t_ev": "TRY_CAST(j.EventTime AS TIMESTAMP)",
    "_t_other": f"COALESCE({_ts('j.TimeGenerated')}, {_ts('j.TimeCreated')})",
    # Beats keys that differ from NXLog's only in case cannot share the json_transform structure.
    "_beat": (f"CASE WHEN {_W7} OR {_W6} THEN json_extract(raw, "
              "['$.message', '$.version', '$.task', '$.opcode', '$.keywords']) END"),
    "_channel": f"COALESCE({_WL}.channel, j.log_name, {_S}.Channel, j.Channel)",
    "_eid": ("COALESCE(" + ", ".join(_int(e) for e in (
        f"{_WL}.event_id", "j.event_id", f"json_extract_string({_S}.EventID, '$')",
        f"json_extract_string({_S}.EventID, '$.\"#text\"')", "j.EventID")) + ")"),
    "_provider": (f"COALESCE({_WL}.provider_name, j.source_name, {_attr('Provider', 'Name')}, j.SourceName, "
                  "j.ProviderName, CASE WHEN json_type(j.Provider) = 'VARCHAR' "
                  "THEN json_extract_string(j.Provider, '$') END, j.EventSourceName)"),
    "_provider_guid": (f"COALESCE({_WL}.provider_guid, j.provider_guid, {_attr('Provider', 'Guid')}, "
                       "j.ProviderGuid)"),
    "_computer": (f"COALESCE({_WL}.computer_name, j.computer_name, {_S}.Computer, j.Hostname, j.Computer, "
                  f"CASE WHEN {_W7} THEN json_extract_string(j.host, '$.name') END)"),
    "_record_id": _int(f"COALESCE({_WL}.record_id, j.record_number, {_S}.EventRecordID, j.RecordNumber, "
                       "j.EventRecordID)"),
    "_version0": _int(f"COALESCE({_WL}.version, {_S}.Version, j.Version)"),
    # Log Analytics: EventLevel is the Windows level; SecurityEvent's own "Level" (8, ...) is not.
    "_level": _int(f"COALESCE({_S}.Level, j.EventLevel, CASE WHEN {_LA} THEN NULL ELSE j.Level END)"),
    "_task0": f"COALESCE({_WL}.task, {_S}.Task, j.Task)",
    "_opcode0": f"COALESCE({_WL}.opcode, {_S}.Opcode, j.OpcodeValue, j.Opcode)",
    "_keywords0": (
        f"COALESCE({_kw_names(_WL + '.keywords')}, {_S}.Keywords, "
        # NXLog writes the 64-bit mask as a signed decimal number.
        f"CASE WHEN {_is_int('j.Keywords')} THEN '0x' || lower(to_hex(CASE WHEN {_KW_NUM} < 0 "
        f"THEN {_KW_NUM} + 18446744073709551616::HUGEINT ELSE {_KW_NUM} END)) "
        "ELSE json_extract_string(j.Keywords, '$') END)"
    ),
    "_pid": _int(f"COALESCE({_WL}.process.pid, j.process_id, {_attr('Execution', 'ProcessID')}, "
                 "j.ExecutionProcessID, "
                 f"CASE WHEN {_is_int('j.ProcessID')} THEN json_extract_string(j.ProcessID, '$') END)"),
    "_tid": _int(f"COALESCE({_WL}.process.thread.id, j.thread_id, {_attr('Execution', 'ThreadID')}, "
                 f"CASE WHEN {_is_int('j.ThreadID')} THEN json_extract_string(j.ThreadID, '$') END)"),
    "_user_sid": (f"COALESCE({_WL}.user.identifier, j.user.identifier, {_attr('Security', 'UserID')}, "
                  "j.UserID)"),
    "_activity_id": (f"COALESCE({_WL}.activity_id, j.activity_id, {_attr('Correlation', 'ActivityID')}, "
                     "j.ActivityID)"),
    "_message0": "j.Message",
    # j is NULL for a record that is not a JSON object (it may reach here): raw is not parsed then.
    "_ed": (f"NULLIF(CASE WHEN j IS NULL THEN NULL "
            f"WHEN {_W7} THEN {_obj(f'{_WL}.event_data', f'{_WL}.user_data')} "
            f"WHEN {_W6} THEN {_obj('j.event_data', 'j.user_data')} "
            f"WHEN {_E} THEN {_EVTX_ED} ELSE {_FLAT_ED} END, '{{}}')"),
    "tags": "NULLIF(j.tags, [])",
}

# NXLog: EventTime is local; @timestamp - EventReceivedTime (both stamped on receipt) is the
# collector's UTC offset, rounded to the quarter hour. Used when within 5 minutes of a quarter
# hour and at most 14 hours (real UTC offsets); otherwise @timestamp (the receipt time) stands.
_NX_DIFF = "(epoch(_t_at) - epoch(_t_rcv))"
_NX_OFF = f"(round({_NX_DIFF} / 900) * 900)"
_NX_OK = (f"abs({_NX_DIFF} - {_NX_OFF}) <= 300 AND abs({_NX_OFF}) <= 50400 "
          "AND _t_ev BETWEEN TIMESTAMP '0002-01-01' AND TIMESTAMP '9998-12-31'")
_BEAT_VERSION = "json_extract_string(_beat[2], '$')"
SECOND = {
    "_ts0": (f"COALESCE(_t_sys, CASE WHEN {_NX_OK} THEN timezone('UTC', _t_ev) + to_seconds({_NX_OFF}) "
             "END, _t_at, _t_other, timezone('UTC', _t_ev))"),
    "_message": "COALESCE(_message0, json_extract_string(_beat[1], '$'))",
    "_version": f"COALESCE(_version0, {_int(_BEAT_VERSION)})",
    "_task": "COALESCE(_task0, json_extract_string(_beat[3], '$'))",
    "_opcode": "COALESCE(_opcode0, json_extract_string(_beat[4], '$'))",
    "_keywords": ("COALESCE(_keywords0, CASE WHEN json_type(_beat[5]) = 'ARRAY' THEN "
                  + _kw_names("json_transform(_beat[5], '[\"VARCHAR\"]')") + " END)"),
}

MAPPING = JsonMapping(STRUCTURE, FIRST, stages=[SECOND, {"_ts": bounded_ts("_ts0")}, *windows_stages()])


# --- sniffing ---------------------------------------------------------------------------------
def _head_bytes(head: bytes) -> bytes:
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[2:].decode(enc, errors="ignore").encode("utf-8")
    return head.removeprefix(codecs.BOM_UTF8)


@register
class WinEventJsonReader(Reader):
    name = "winevent_json"
    description = "Windows events as JSON: NXLog/Mordor, Winlogbeat, EVTX-style {Event:{System,EventData}}"

    def sniff(self, head: bytes, path: str) -> int:
        t = _head_bytes(head).lstrip()
        if t.startswith(b"Record ") and b'"Event"' in t and b'"System"' in t:  # evtx_dump -o json
            return 90
        if not t.startswith((b"{", b"[")):
            return 0
        first = first_json_object(head)
        if first is not None:  # decide on the first record, not on anything in 64 KiB of head
            t = json.dumps(first).encode()
        if b'"winlog"' in t and (b'"event_id"' in t or b'"channel"' in t):
            return 90
        if b'"log_name"' in t and b'"event_id"' in t and b'"source_name"' in t:  # Winlogbeat 6
            return 85
        if b'"Event"' in t and b'"System"' in t and (b'"EventID"' in t or b'"Channel"' in t):
            return 90
        if b'"EventID"' in t and (b'"Channel"' in t or b'"SourceName"' in t):
            if any(k in t for k in (b'"Hostname"', b'"SourceModuleType"', b'"EventTime"', b'"ProviderGuid"')):
                return 85
            return 70 if b'"TimeGenerated"' in t else 60
        return 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        blocks = _document_blocks(ctx) if _multiline(ctx.source.head) else iter_json_blocks(ctx)
        for raws, lines, offsets in blocks:
            yield JsonRecords(MAPPING, raws, lines, offsets)


# --- pretty-printed records one after another -------------------------------------------------
_RECORD_HEADER = re.compile(r"Record \d+[ \t]*(?:\r?\n|$)")
_RESYNC = re.compile(r"\n(?=\{|Record \d)")
_WS = " \t\r\n,"


def _multiline(head: bytes) -> bool:
    """Pretty-printed objects (the first line is a lone '{' or an evtx_dump 'Record N' line), or
    a JSON array that is not UTF-8 (jsondocs reads arrays as UTF-8 only)."""
    text = _head_bytes(head)
    first = text.lstrip().split(b"\n", 1)[0].strip()
    if first == b"{" or re.fullmatch(rb"Record \d+", first):
        return True
    return head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and looks_like_json_array(text)


def _document_blocks(ctx: ReadContext) -> Iterator[JsonBlock]:
    """Split concatenated (pretty-printed) JSON objects, optionally inside one top-level array;
    text between them that is not JSON is quarantined up to the next line starting with '{'."""
    doc = read_document(ctx)
    if doc is None:
        return
    text, base = doc
    decoder = json.JSONDecoder()
    ascii_only = text.isascii()
    n, pos, line, line_pos, byte_pos, byte_at = len(text), 0, 1, 0, base, 0
    raws: list[str] = []
    lines: list[int | None] = []
    offsets: list[int | None] = []
    opened = started = False  # inside a top-level array; a record or header seen
    while True:
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos >= n:
            break
        if (text[pos] == "[" and not started) or (text[pos] == "]" and opened):
            opened, started = text[pos] == "[", True
            pos += 1
            continue
        started = True
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        if ascii_only:
            offset = base + pos
        else:
            byte_pos += len(text[byte_at:pos].encode("utf-8"))
            byte_at = pos
            offset = byte_pos
        header = _RECORD_HEADER.match(text, pos)
        if header:
            pos = header.end()
            continue
        if text[pos] == "{":
            try:
                _, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                end = _resync(text, pos)
                ctx.bad(f"not JSON: {exc.msg}", line=line, offset=offset,
                        raw=text[pos:min(end, pos + EXCERPT_BYTES)])
                pos = end
                continue
            if end - pos > ctx.limits.max_record_bytes:
                ctx.bad(f"record longer than {ctx.limits.max_record_bytes} bytes", line=line, offset=offset,
                        raw=text[pos:pos + EXCERPT_BYTES])
            else:
                raws.append(text[pos:end])
                lines.append(line)
                offsets.append(offset)
                if len(raws) >= ctx.limits.batch_rows:
                    yield raws, lines, offsets
                    raws, lines, offsets = [], [], []
            pos = end
            continue
        end = _resync(text, pos)
        ctx.bad("not a JSON object", line=line, offset=offset, raw=text[pos:min(end, pos + EXCERPT_BYTES)])
        pos = end
    if raws:
        yield raws, lines, offsets


def _resync(text: str, pos: int) -> int:
    m = _RESYNC.search(text, pos + 1)
    return m.start() + 1 if m else len(text)
