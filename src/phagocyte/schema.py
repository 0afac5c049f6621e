"""The event model: Elastic Common Schema (ECS) field names as one flat Arrow schema.

Why flat dotted column names (``"host.name"``) rather than nested structs: every reader, the
Sigma back end and user SQL address a field the same way, Parquet prunes each column on its own,
and a record from any source fits the same schema, so the store is one table. In SQL, quote them:
``SELECT "host.name" FROM events``.

Nothing is dropped: ``event.original`` keeps the verbatim record of text and JSON sources, and
``winlog.*`` (with ``winlog.event_data`` holding every EventData/UserData field as JSON) keeps the
whole of a Windows record. The mapping of each source is documented in ``docs/schema.md``; a test
checks that every column here is documented there.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["EVENT_SCHEMA", "FIELD_DOCS", "FIELD_TYPES", "conform", "empty_table"]

_STR = pa.string()
_INT = pa.int64()
_TS = pa.timestamp("us", tz="UTC")
_LIST = pa.list_(pa.string())

# name -> (type, short description). Order is the column order in the store.
_FIELDS: list[tuple[str, pa.DataType, str]] = [
    ("@timestamp", _TS, "when the event happened, UTC"),
    ("event.id", _STR, "deterministic id: hash of the source id and the record's position"),
    ("event.kind", _STR, "`event`, or `alert` for alerts imported or raised"),
    ("event.category", _LIST, "ECS categories (process, network, authentication, ...)"),
    ("event.type", _LIST, "ECS types (start, connection, info, ...)"),
    ("event.action", _STR, "what happened, in the source's words"),
    ("event.outcome", _STR, "`success`, `failure` or `unknown`"),
    ("event.code", _STR, "the source's event code (Windows EventID, Zeek log type, ...)"),
    ("event.dataset", _STR, "source data set, e.g. `windows.sysmon`, `suricata.eve`, `zeek.ssh`"),
    ("event.module", _STR, "producing module: windows, suricata, zeek, wazuh, syslog, ..."),
    ("event.provider", _STR, "the source's provider or program name"),
    ("event.severity", _INT, "numeric severity as given by the source"),
    ("event.risk_score", pa.float64(), "risk score 0-100 given by triage or the analyser that raised the alert"),
    ("event.reference", _STR, "for an alert: `event.id` of the event it was raised on"),
    ("event.original", _STR, "verbatim source record (text and JSON sources)"),
    ("event.ingested", _TS, "when Phagocyte stored the event, UTC"),
    ("message", _STR, "human-readable message"),
    ("log.level", _STR, "source log level / severity name"),
    ("log.file.path", _STR, "source file; `archive!member` for archive members"),
    ("log.file.line", _INT, "1-based physical line where the record starts (text sources)"),
    ("log.offset", _INT, "byte offset of the record in the (decompressed) source"),
    ("host.name", _STR, "host the event was recorded on"),
    ("host.ip", _STR, "host address"),
    ("user.name", _STR, "user the event is about (target user for logons)"),
    ("user.domain", _STR, "that user's domain"),
    ("user.id", _STR, "that user's SID / uid"),
    ("user.target.name", _STR, "user acted upon (account changes)"),
    ("user.effective.name", _STR, "user whose rights were used (sudo/su target, run-as)"),
    ("source.ip", _STR, "source address"),
    ("source.port", _INT, "source port"),
    ("source.domain", _STR, "source host name"),
    ("source.user.name", _STR, "user at the source (subject user of Windows events)"),
    ("destination.ip", _STR, "destination address"),
    ("destination.port", _INT, "destination port"),
    ("destination.domain", _STR, "destination host name"),
    ("network.transport", _STR, "tcp, udp, icmp, ..."),
    ("network.protocol", _STR, "application protocol (http, dns, ssh, ...)"),
    ("network.direction", _STR, "inbound, outbound, internal, ..."),
    ("network.community_id", _STR, "Community ID flow hash"),
    ("process.pid", _INT, "process id"),
    ("process.entity_id", _STR, "unique process id (Sysmon ProcessGuid)"),
    ("process.name", _STR, "image file name"),
    ("process.executable", _STR, "image path"),
    ("process.command_line", _STR, "full command line"),
    ("process.working_directory", _STR, "current directory"),
    ("process.hash.md5", _STR, "image MD5"),
    ("process.hash.sha1", _STR, "image SHA-1"),
    ("process.hash.sha256", _STR, "image SHA-256"),
    ("process.parent.pid", _INT, "parent process id"),
    ("process.parent.entity_id", _STR, "parent unique id"),
    ("process.parent.name", _STR, "parent image file name"),
    ("process.parent.executable", _STR, "parent image path"),
    ("process.parent.command_line", _STR, "parent command line"),
    ("file.path", _STR, "file path"),
    ("file.name", _STR, "file name"),
    ("file.hash.md5", _STR, "file MD5"),
    ("file.hash.sha1", _STR, "file SHA-1"),
    ("file.hash.sha256", _STR, "file SHA-256"),
    ("registry.path", _STR, "registry key or value path"),
    ("registry.data.strings", _STR, "registry value data"),
    ("dns.question.name", _STR, "queried name"),
    ("dns.question.type", _STR, "query type"),
    ("dns.response_code", _STR, "response code"),
    ("dns.answers", _STR, "answers, as text"),
    ("url.full", _STR, "full URL"),
    ("url.domain", _STR, "URL host"),
    ("url.path", _STR, "URL path and query"),
    ("http.request.method", _STR, "HTTP method"),
    ("http.response.status_code", _INT, "HTTP status"),
    ("user_agent.original", _STR, "User-Agent header"),
    ("rule.id", _STR, "id of the rule that raised the alert"),
    ("rule.name", _STR, "name of that rule"),
    ("rule.category", _STR, "its category"),
    ("rule.level", _STR, "informational, low, medium, high or critical (Sigma levels; other scales mapped)"),
    ("rule.description", _STR, "what the rule detects"),
    ("rule.ruleset", _STR, "the rule set it belongs to"),
    ("threat.technique.id", _LIST, "ATT&CK technique ids"),
    ("threat.tactic.id", _LIST, "ATT&CK tactic ids (TA0001 ...)"),
    ("threat.tactic.name", _LIST, "ATT&CK tactic names"),
    ("observer.vendor", _STR, "vendor of the tool that observed the event"),
    ("observer.product", _STR, "that tool (Suricata, Wazuh, ...)"),
    ("observer.name", _STR, "that tool's instance or host"),
    ("related.ip", _LIST, "every IP in the event"),
    ("related.user", _LIST, "every user name in the event"),
    ("related.hosts", _LIST, "every host name or domain in the event"),
    ("related.hash", _LIST, "every file hash in the event"),
    ("tags", _LIST, "labels attached by the source or by Phagocyte"),
    ("winlog.channel", _STR, "Windows channel"),
    ("winlog.event_id", _INT, "Windows EventID"),
    ("winlog.provider_name", _STR, "Windows provider"),
    ("winlog.provider_guid", _STR, "Windows provider GUID"),
    ("winlog.computer_name", _STR, "Computer element"),
    ("winlog.record_id", _INT, "EventRecordID"),
    ("winlog.version", _INT, "event version"),
    ("winlog.level", _INT, "level number"),
    ("winlog.task", _STR, "task"),
    ("winlog.opcode", _STR, "opcode"),
    ("winlog.keywords", _STR, "keywords mask"),
    ("winlog.process.pid", _INT, "Execution ProcessID"),
    ("winlog.process.thread.id", _INT, "Execution ThreadID"),
    ("winlog.user.identifier", _STR, "Security UserID (SID)"),
    ("winlog.activity_id", _STR, "Correlation ActivityID"),
    ("winlog.event_data", _STR, "every EventData/UserData field, as a JSON object"),
]

EVENT_SCHEMA: pa.Schema = pa.schema([pa.field(n, t) for n, t, _ in _FIELDS])
FIELD_TYPES: dict[str, pa.DataType] = {n: t for n, t, _ in _FIELDS}
FIELD_DOCS: dict[str, str] = {n: d for n, _, d in _FIELDS}


def empty_table() -> pa.Table:
    """A zero-row table with the event schema (an empty store still has an `events` view)."""
    return EVENT_SCHEMA.empty_table()


def conform(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """Return `batch` with exactly the event schema: missing columns null, types cast.

    A column a reader produced that is not in the schema is a programming error, not data:
    it raises, so a typo in a mapping is caught by the reader's tests instead of vanishing.
    """
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    unknown = set(table.column_names) - FIELD_TYPES.keys()
    if unknown:
        raise ValueError(f"columns not in the event schema: {sorted(unknown)}")
    n = table.num_rows
    nulls: dict[pa.DataType, pa.Array] = {}  # one all-null array per type, shared by its columns (immutable)

    def null(t: pa.DataType) -> pa.Array:
        if t not in nulls:
            nulls[t] = pa.nulls(n, t)
        return nulls[t]

    arrays = []
    for field in EVENT_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type, safe=False) if not pa.types.is_null(col.type) else null(field.type)
            arrays.append(col)
        else:
            arrays.append(null(field.type))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
