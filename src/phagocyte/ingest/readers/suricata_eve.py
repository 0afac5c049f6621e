"""Suricata EVE JSON (``eve.json``): every event type, as JSON lines or one top-level JSON array.

EVE writes one object per event with the same envelope (``timestamp``, ``event_type``, the flow's
5-tuple, ``flow_id``, ``community_id``) and one sub-object per protocol (``alert``, ``dns``,
``http``, ``tls``, ``fileinfo``, ...). One DuckDB mapping covers them all: the sub-objects are
simply NULL when absent, so an ``alert`` on an HTTP flow gets both the rule and the URL fields.
Everything not mapped (``flow_id``, ``flow`` counters, ``payload``, ``stats``, ...) stays in
``event.original``.
"""

from __future__ import annotations

from collections.abc import Iterator

from phagocyte.ingest.jsondocs import first_json_object, iter_json_blocks
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords, ts_expr
from phagocyte.ingest.reader import ReadContext, Reader, register

_S = "VARCHAR"
_I = "BIGINT"

_STRUCTURE = {
    "timestamp": _S, "event_type": _S, "host": _S,
    "src_ip": _S, "src_port": _I, "dest_ip": _S, "dest_port": _I,
    "proto": _S, "app_proto": _S, "community_id": _S,
    "alert": {
        "action": _S, "signature_id": _S, "signature": _S, "category": _S, "severity": _I,
        "metadata": {"mitre_technique_id": [_S], "mitre_tactic_name": [_S]},
    },
    "dns": {
        "type": _S, "rrname": _S, "rrtype": _S, "rcode": _S, "rdata": _S,
        "queries": [{"rrname": _S, "rrtype": _S}], "answers": [{"rdata": _S}],
    },
    "http": {"hostname": _S, "http_port": _I, "url": _S, "http_method": _S, "status": _I,
             "http_user_agent": _S},
    "tls": {"sni": _S},
    "fileinfo": {"filename": _S, "md5": _S, "sha1": _S, "sha256": _S},
    "anomaly": {"type": _S, "event": _S},
    "smb": {"filename": _S, "ntlmssp": {"user": _S, "domain": _S}},
    "krb5": {"cname": _S, "realm": _S},
}

# Event types whose record describes one application-layer transaction.
_PROTOCOL_TYPES = (
    "dns", "http", "http2", "tls", "ssh", "smb", "ftp", "ftp_data", "smtp", "krb5", "dhcp", "rdp",
    "sip", "snmp", "nfs", "tftp", "ikev2", "ike", "mqtt", "quic", "dcerpc", "rfb", "pgsql", "ldap",
    "bittorrent-dht", "websocket", "modbus", "dnp3", "enip", "telnet", "mysql", "pop3", "imap",
)
_PROTO_LIST = "[" + ", ".join(f"'{t}'" for t in _PROTOCOL_TYPES) + "]"
_ET = "lower(j.event_type)"
_URL = "j.http.url"
_HAS_SCHEME = f"regexp_matches({_URL}, '^[A-Za-z][A-Za-z0-9+.-]*://')"
_FILE = "COALESCE(j.fileinfo.filename, j.smb.filename)"


def _nonempty(expr: str) -> str:
    return f"CASE WHEN len({expr}) > 0 THEN {expr} END"


_COLUMNS = {
    "@timestamp": ts_expr("j.timestamp", epoch=False),
    "_et": _ET,
    "event.kind": f"CASE {_ET} WHEN 'alert' THEN 'alert' WHEN 'stats' THEN 'metric' ELSE 'event' END",
    "event.code": "j.event_type",
    "event.action": f"CASE {_ET} WHEN 'alert' THEN j.alert.action WHEN 'anomaly' THEN j.anomaly.event "
                    f"WHEN 'dns' THEN j.dns.type END",
    "event.dataset": "'suricata.eve'",
    "event.module": "'suricata'",
    "event.severity": "j.alert.severity",
    "message": f"CASE {_ET} WHEN 'alert' THEN j.alert.signature WHEN 'anomaly' THEN "
               f"concat_ws(': ', j.anomaly.type, j.anomaly.event) END",
    "observer.vendor": "'OISF'",
    "observer.product": "'Suricata'",
    "observer.name": "j.host",
    "source.ip": "j.src_ip",
    "source.port": "j.src_port",
    "destination.ip": "j.dest_ip",
    "destination.port": "j.dest_port",
    "destination.domain": "COALESCE(j.tls.sni, CASE WHEN NOT regexp_matches(j.http.hostname, "
                          "'^[0-9.]+$|:') THEN j.http.hostname END)",
    "network.transport": "lower(j.proto)",
    "network.protocol": f"COALESCE(NULLIF(lower(j.app_proto), 'failed'), "
                        f"CASE WHEN list_contains({_PROTO_LIST}, {_ET}) THEN {_ET} END)",
    "network.community_id": "j.community_id",
    "rule.id": "j.alert.signature_id",
    "rule.name": "j.alert.signature",
    "rule.category": "j.alert.category",
    "threat.technique.id": _nonempty("j.alert.metadata.mitre_technique_id"),
    "threat.tactic.name": _nonempty("j.alert.metadata.mitre_tactic_name"),
    "dns.question.name": "COALESCE(j.dns.rrname, j.dns.queries[1].rrname)",
    "dns.question.type": "COALESCE(j.dns.rrtype, j.dns.queries[1].rrtype)",
    "dns.response_code": "j.dns.rcode",
    "dns.answers": "COALESCE(NULLIF(array_to_string(list_filter(list_transform(j.dns.answers, "
                   "lambda a: a.rdata), lambda x: x IS NOT NULL), ', '), ''), j.dns.rdata)",
    "url.domain": "j.http.hostname",
    "url.path": f"CASE WHEN {_HAS_SCHEME} THEN "
                f"NULLIF(regexp_extract({_URL}, '^[^:]+://[^/]*(/.*)$', 1), '') ELSE {_URL} END",
    "url.full": f"CASE WHEN {_HAS_SCHEME} THEN {_URL} WHEN j.http.hostname IS NOT NULL THEN "
                f"'http://' || j.http.hostname || CASE WHEN j.http.http_port NOT IN (80) "
                f"THEN ':' || j.http.http_port ELSE '' END || COALESCE({_URL}, '') END",
    "http.request.method": "j.http.http_method",
    "http.response.status_code": "j.http.status",
    "user_agent.original": "j.http.http_user_agent",
    "file.path": _FILE,
    "file.name": f"NULLIF(regexp_extract({_FILE}, '[^/\\\\]*$'), '')",
    "file.hash.md5": "j.fileinfo.md5",
    "file.hash.sha1": "j.fileinfo.sha1",
    "file.hash.sha256": "j.fileinfo.sha256",
    "user.name": "COALESCE(j.smb.ntlmssp.user, j.krb5.cname)",
    "user.domain": "COALESCE(j.smb.ntlmssp.domain, j.krb5.realm)",
    "related.ip": _nonempty("list_filter([j.src_ip, CASE WHEN j.dest_ip IS DISTINCT FROM j.src_ip "
                            "THEN j.dest_ip END], lambda x: x IS NOT NULL)"),
}
_STAGES = [{
    "event.category": (
        "CASE WHEN _et = 'alert' THEN ['network', 'intrusion_detection'] "
        "WHEN _et = 'fileinfo' THEN ['network', 'file'] "
        "WHEN _et IN ('http', 'http2') THEN ['network', 'web'] "
        "WHEN _et = 'stats' THEN NULL "
        "WHEN _et IS NULL THEN NULL ELSE ['network'] END"
    ),
    "event.type": (
        "CASE WHEN _et = 'alert' THEN CASE lower(\"event.action\") WHEN 'allowed' THEN ['allowed'] "
        "WHEN 'blocked' THEN ['denied'] ELSE ['info'] END "
        "WHEN _et IN ('flow', 'netflow') THEN ['connection', 'end'] "
        "WHEN _et = 'drop' THEN ['denied'] "
        f"WHEN list_contains({_PROTO_LIST}, _et) THEN ['protocol'] "
        "WHEN _et IS NULL OR _et = 'stats' THEN NULL ELSE ['info'] END"
    ),
}]
MAPPING = JsonMapping(_STRUCTURE, _COLUMNS, stages=_STAGES)

_KNOWN = {"alert", "flow", "netflow", "fileinfo", "anomaly", "stats", "drop", *_PROTOCOL_TYPES}
_ENVELOPE = ("flow_id", "src_ip", "dest_ip", "in_iface", "pcap_cnt", "community_id")


@register
class SuricataEveReader(Reader):
    name = "suricata_eve"
    resumable = True
    description = "Suricata EVE JSON (eve.json): alert, flow, dns, http, tls, fileinfo, ... events"

    def sniff(self, head: bytes, path: str) -> int:
        obj = first_json_object(head)
        if obj is None:  # first record longer than the head: look for the envelope keys
            return 60 if b'"event_type"' in head[:4096] and b'"src_ip"' in head[:4096] else 0
        et = obj.get("event_type")
        if not isinstance(et, str) or "timestamp" not in obj:
            return 0
        return 95 if et in _KNOWN or any(k in obj for k in _ENVELOPE) else 70

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        for raws, lines, offsets in iter_json_blocks(ctx):
            yield JsonRecords(MAPPING, raws, lines, offsets)
