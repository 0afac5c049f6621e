"""Wazuh (and OSSEC 3.x JSON) ``alerts.json``: one alert per line, as the manager writes them.

Every line is an alert (``event.kind`` ``alert``): the rule that fired (id, level, description,
groups, MITRE ATT&CK ids) and what the decoders pulled out of the monitored log into ``data``.
``data`` is free-form (its keys depend on the decoder), so only the common decoder names are mapped:
``srcip``/``dstip``/``srcport``/``dstport``/``srcuser``/``dstuser``, Suricata EVE fields forwarded
by the JSON decoder, and the Windows eventchannel fields (``data.win``). File-integrity alerts map
``syscheck``. The monitored log's line (``full_log``) is the message; everything else (``location``,
``decoder``, ``previous_output``, compliance tags) stays in ``event.original``.
"""

from __future__ import annotations

from collections.abc import Iterator

from phagocyte.ingest.jsondocs import first_json_object, iter_json_blocks
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords, int_expr, str_list, ts_expr
from phagocyte.ingest.reader import ReadContext, Reader, register

_S = "VARCHAR"
_WIN_DATA = ("image", "commandLine", "processId", "processGuid", "parentImage", "parentCommandLine",
             "parentProcessId", "targetUserName", "targetDomainName", "subjectUserName", "ipAddress",
             "ipPort", "targetFilename", "currentDirectory")

_STRUCTURE = {
    "timestamp": _S, "@timestamp": _S, "full_log": _S,
    "rule": {"level": "BIGINT", "description": _S, "id": _S, "groups": [_S],
             "mitre": {"id": "JSON", "tactic": "JSON"}},
    "agent": {"name": _S, "ip": _S},
    "manager": {"name": _S},
    "predecoder": {"hostname": _S, "program_name": _S},
    "data": {
        **{k: _S for k in ("srcip", "dstip", "srcport", "dstport", "srcuser", "dstuser", "protocol",
                           "action", "id", "url", "src_ip", "dest_ip", "src_port", "dest_port",
                           "proto", "app_proto", "community_id")},
        "http": {"hostname": _S, "url": _S, "http_method": _S, "status": _S, "http_user_agent": _S},
        "win": {"system": {"eventID": _S, "channel": _S, "providerName": _S, "computer": _S},
                "eventdata": "JSON"},
    },
    "syscheck": {"path": _S, "event": _S, "md5_after": _S, "sha1_after": _S, "sha256_after": _S,
                 "uname_after": _S},
}

_G = "j.rule.groups"
_AT_TS = "j['@timestamp']"
_WIN = "j.data.win.eventdata"
_FAILED = "['authentication_failed', 'authentication_failures', 'invalid_login', 'win_authentication_failed']"
_WEB = f"(list_contains({_G}, 'web') OR list_contains({_G}, 'accesslog'))"
_PROTO = "lower(COALESCE(j.data.proto, j.data.protocol))"
_TRANSPORTS = "['tcp', 'udp', 'icmp', 'icmpv6', 'ipv6-icmp', 'sctp', 'gre', 'esp', 'ah']"


def _win(key: str) -> str:
    return f"({_WIN} ->> '{key}')"


def _user(expr: str) -> str:
    """Some decoders (dovecot) keep the log's '<name>' brackets: drop them."""
    return f"regexp_replace({expr}, '^<(.*)>$', '\\1')"


def _addr(expr: str) -> str:
    """An address with an optional ':port' (IPv4) or '[v6]:port' suffix, as a {ip, port} struct."""
    return (f"CASE WHEN regexp_matches({expr}, '^\\d{{1,3}}(\\.\\d{{1,3}}){{3}}:\\d+$') "
            f"THEN {{'ip': split_part({expr}, ':', 1), 'port': split_part({expr}, ':', 2)}} "
            f"WHEN regexp_matches({expr}, '^\\[[0-9A-Fa-f:.]+\\]:\\d+$') "
            f"THEN {{'ip': regexp_extract({expr}, '^\\[(.*)\\]', 1), "
            f"'port': regexp_extract({expr}, '(\\d+)$', 1)}} "
            f"ELSE {{'ip': {expr}, 'port': NULL}} END")


_COLUMNS = {
    "@timestamp": f"COALESCE({ts_expr('j.timestamp', epoch=False)}, {ts_expr(_AT_TS, epoch=False)})",
    "_src": _addr(f"COALESCE(j.data.srcip, j.data.src_ip, {_win('ipAddress')})"),
    "_dst": _addr("COALESCE(j.data.dstip, j.data.dest_ip)"),
    "_srcport": f"COALESCE(j.data.srcport, j.data.src_port, {_win('ipPort')})",
    "_dstport": "COALESCE(j.data.dstport, j.data.dest_port)",
    "_groups": _G,
    "_web": _WEB,
    "_fim": "lower(j.syscheck.event)",
    "_auth": f"list_has_any({_G}, {_FAILED}) OR list_contains({_G}, 'authentication_success')",
    "event.kind": "'alert'",
    "event.dataset": "'wazuh.alerts'",
    "event.module": "'wazuh'",
    "event.severity": "j.rule.level",
    "event.action": "COALESCE(j.syscheck.event, j.data.action)",
    "event.code": "j.data.win.system.eventID",
    "event.provider": "COALESCE(j.predecoder.program_name, j.data.win.system.providerName)",
    "event.outcome": f"CASE WHEN list_has_any({_G}, {_FAILED}) THEN 'failure' "
                     f"WHEN list_contains({_G}, 'authentication_success') THEN 'success' END",
    "message": "COALESCE(j.full_log, j.rule.description)",
    "host.name": "COALESCE(j.agent.name, j.predecoder.hostname)",
    "host.ip": "j.agent.ip",
    "observer.vendor": "'Wazuh'",
    "observer.product": "'Wazuh'",
    "observer.name": "j.manager.name",
    "rule.id": "j.rule.id",
    "rule.name": "j.rule.description",
    "rule.category": f"NULLIF(array_to_string({_G}, ','), '')",
    "rule.ruleset": "'wazuh'",
    "tags": f"NULLIF({_G}, [])",
    "threat.technique.id": str_list("j.rule.mitre.id"),
    "threat.tactic.name": str_list("j.rule.mitre.tactic"),
    "user.name": _user(f"COALESCE(j.data.dstuser, j.data.srcuser, {_win('targetUserName')}, "
                       "j.syscheck.uname_after)"),
    "user.domain": _win("targetDomainName"),
    "source.user.name": _user(f"COALESCE(j.data.srcuser, {_win('subjectUserName')})"),
    "network.transport": f"CASE WHEN list_contains({_TRANSPORTS}, {_PROTO}) THEN {_PROTO} END",
    "network.protocol": "NULLIF(lower(j.data.app_proto), 'failed')",
    "network.community_id": "j.data.community_id",
    "file.path": f"COALESCE(j.syscheck.path, {_win('targetFilename')})",
    "file.hash.md5": "j.syscheck.md5_after",
    "file.hash.sha1": "j.syscheck.sha1_after",
    "file.hash.sha256": "j.syscheck.sha256_after",
    "url.domain": "j.data.http.hostname",
    "url.path": "COALESCE(j.data.http.url, j.data.url)",
    "http.request.method": f"COALESCE(j.data.http.http_method, "
                           f"CASE WHEN {_WEB} THEN j.data.protocol END)",
    "http.response.status_code": int_expr(f"COALESCE(j.data.http.status, "
                                          f"CASE WHEN {_WEB} THEN j.data.id END)"),
    "user_agent.original": "j.data.http.http_user_agent",
    "winlog.event_id": int_expr("j.data.win.system.eventID"),
    "winlog.channel": "j.data.win.system.channel",
    "winlog.provider_name": "j.data.win.system.providerName",
    "winlog.computer_name": "j.data.win.system.computer",
    "winlog.event_data": f"CAST({_WIN} AS VARCHAR)",
    "process.executable": _win("image"),
    "process.command_line": _win("commandLine"),
    "process.pid": int_expr(_win("processId")),
    "process.entity_id": _win("processGuid"),
    "process.working_directory": _win("currentDirectory"),
    "process.parent.executable": _win("parentImage"),
    "process.parent.command_line": _win("parentCommandLine"),
    "process.parent.pid": int_expr(_win("parentProcessId")),
}
_STAGES = [{
    "source.ip": "NULLIF(_src.ip, '')",
    "source.port": int_expr("COALESCE(_srcport, _src.port)"),
    "destination.ip": "NULLIF(_dst.ip, '')",
    "destination.port": int_expr("COALESCE(_dstport, _dst.port)"),
    "file.name": "NULLIF(regexp_extract(\"file.path\", '[^/\\\\]*$'), '')",
    "process.name": "NULLIF(regexp_extract(\"process.executable\", '[^/\\\\]*$'), '')",
    "process.parent.name": "NULLIF(regexp_extract(\"process.parent.executable\", '[^/\\\\]*$'), '')",
    "related.ip": "NULLIF(list_filter([NULLIF(_src.ip, ''), CASE WHEN _dst.ip IS DISTINCT FROM _src.ip "
                  "THEN NULLIF(_dst.ip, '') END], lambda x: x IS NOT NULL), [])",
    "event.category": (
        "NULLIF(list_filter(["
        "CASE WHEN _auth THEN 'authentication' END, "
        "CASE WHEN list_contains(_groups, 'ids') THEN 'intrusion_detection' END, "
        "CASE WHEN list_contains(_groups, 'syscheck') OR \"file.path\" IS NOT NULL THEN 'file' END, "
        "CASE WHEN _web THEN 'web' END, "
        "CASE WHEN NULLIF(_src.ip, '') IS NOT NULL OR NULLIF(_dst.ip, '') IS NOT NULL THEN 'network' END"
        "], lambda x: x IS NOT NULL), [])"
    ),
    "event.type": (
        "CASE _fim WHEN 'added' THEN ['creation'] WHEN 'modified' THEN ['change'] "
        "WHEN 'deleted' THEN ['deletion'] ELSE ['info'] END"
    ),
}]
MAPPING = JsonMapping(_STRUCTURE, _COLUMNS, stages=_STAGES)


@register
class WazuhAlertsReader(Reader):
    name = "wazuh"
    resumable = True
    description = "Wazuh / OSSEC alerts.json (one JSON alert per line)"

    def sniff(self, head: bytes, path: str) -> int:
        obj = first_json_object(head)
        if obj is None:
            return 60 if b'"rule":{"level"' in head[:8192] and b'"agent"' in head[:8192] else 0
        rule = obj.get("rule")
        if not isinstance(rule, dict) or "level" not in rule or not ("id" in rule or "description" in rule):
            return 0
        return 95 if any(k in obj for k in ("agent", "manager", "decoder", "location", "full_log")) else 60

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        for raws, lines, offsets in iter_json_blocks(ctx):
            yield JsonRecords(MAPPING, raws, lines, offsets)
