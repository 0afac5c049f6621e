"""Zeek logs, in both encodings Zeek writes: JSON lines and the default TSV with ``#`` headers.

One mapping serves both: a TSV row is turned into the JSON object Zeek's JSON writer would have
written (keys from ``#fields``, values typed by ``#types``), so a record gives the same ECS row
whichever way it was logged; only ``event.original`` differs (the raw TSV line, or the JSON text).
The log type (``_path``, ``#path``, or the file name: plain ``LogAscii::use_json`` output has no
``_path``) names the dataset, ``zeek.<type>``, and picks the per-type fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import orjson

from phagocyte.ingest.jsondocs import iter_json_blocks, looks_like_json_array
from phagocyte.ingest.jsonmap import JsonMapping, JsonRecords, list_expr, sql_str, ts_expr
from phagocyte.ingest.lines import iter_line_blocks
from phagocyte.ingest.reader import ReadContext, Reader, register

_STRUCT: dict[str, str] = {
    k: "VARCHAR" for k in (
        "_path", "_node", "peer", "ts", "uid", "id.orig_h", "id.resp_h", "proto", "community_id",
        "query", "qtype_name", "rcode_name", "host", "uri", "method", "user_agent", "server_name",
        "client", "request_type", "username", "domainname", "cookie", "name", "action", "md5", "sha1",
        "sha256", "filename", "note", "msg", "src", "dst", "user", "command", "operation", "func",
        "client_addr", "server_addr", "message", "severity", "port_proto",
    )
}
_STRUCT.update({k: "BIGINT" for k in ("id.orig_p", "id.resp_p", "status_code", "p", "port_num")})
_STRUCT.update({k: "BOOLEAN" for k in ("success", "auth_success")})
_STRUCT.update({k: "JSON" for k in ("service", "answers", "path", "tx_hosts", "rx_hosts", "msg_types")})

# Log types that are one application protocol (conn/known_services say theirs in `service`).
_PROTOCOL = {
    "dns": "dns", "http": "http", "ssl": "tls", "ssh": "ssh", "smtp": "smtp", "ftp": "ftp",
    "rdp": "rdp", "kerberos": "kerberos", "ntlm": "ntlm", "smb_files": "smb", "smb_mapping": "smb",
    "smb_cmd": "smb", "dce_rpc": "dce_rpc", "ntp": "ntp", "snmp": "snmp", "syslog": "syslog",
    "modbus": "modbus", "rfb": "rfb", "ldap": "ldap", "ldap_search": "ldap", "dhcp": "dhcp",
    "sip": "sip", "mysql": "mysql", "radius": "radius", "irc": "irc", "dnp3": "dnp3", "quic": "quic",
    "socks": "socks", "tunnel": "tunnel", "ocsp": "ocsp",
}
_CATEGORY = {
    "conn": "['network']", "http": "['network', 'web']", "files": "['file']", "pe": "['file']",
    "x509": "['file']", "smb_files": "['network', 'file']", "kerberos": "['network', 'authentication']",
    "ntlm": "['network', 'authentication']", "ssh": "['network', 'authentication']",
    "notice": "['intrusion_detection']", "software": "['host']", "loaded_scripts": "['configuration']",
    "stats": "['host']", "capture_loss": "['host']", "packet_filter": "['configuration']",
}
_TYPE = {"conn": "['connection']", "dns": "['protocol', 'info']", "http": "['protocol', 'access']"}


def _text(x: str) -> str:
    """A JSON string, or a JSON array joined with ',' (Zeek sets and vectors)."""
    return (f"CASE WHEN json_type({x}) = 'ARRAY' THEN array_to_string(json_extract_string({x}, '$[*]'), ',') "
            f"ELSE json_extract_string({x}, '$') END")


def _first(x: str) -> str:
    return f"CASE WHEN json_type({x}) = 'ARRAY' THEN json_extract_string({x}, '$[0]') ELSE {_text(x)} END"


def _case(p: str, table: dict[str, str], default: str = "NULL") -> str:
    arms = " ".join(f"WHEN {sql_str(k)} THEN {v}" for k, v in table.items())
    return f"CASE {p} {arms} ELSE {default} END"


def _columns(fallback: str, original: str) -> dict[str, str]:
    p = f"lower(COALESCE(j._path, {sql_str(fallback)}))"
    src_ip = f"COALESCE(j.\"id.orig_h\", CASE {p} WHEN 'notice' THEN j.src WHEN 'dhcp' THEN j.client_addr " \
             f"WHEN 'files' THEN {_first('j.tx_hosts')} END)"
    dst_ip = f"COALESCE(j.\"id.resp_h\", CASE {p} WHEN 'notice' THEN j.dst WHEN 'dhcp' THEN j.server_addr " \
             f"WHEN 'files' THEN {_first('j.rx_hosts')} END)"
    host_ip = f"CASE WHEN {p} IN ('known_hosts', 'known_services', 'known_certs', 'software') THEN j.host END"
    kclient = "CASE WHEN " + p + " = 'kerberos' THEN j.client END"
    return {
        "@timestamp": ts_expr("j.ts"),
        "event.kind": f"CASE {p} WHEN 'notice' THEN 'alert' ELSE 'event' END",
        "event.module": "'zeek'",
        "event.dataset": f"'zeek.' || {p}",
        "event.code": p,
        "event.category": _case(p, _CATEGORY, f"CASE WHEN {src_ip} IS NOT NULL THEN ['network'] END"),
        "event.type": _case(p, _TYPE, "['info']"),
        "event.action": _case(p, {
            "weird": "j.name", "smb_files": "j.action", "ftp": "j.command", "dce_rpc": "j.operation",
            "modbus": "j.func", "kerberos": "j.request_type", "dhcp": _text("j.msg_types"),
        }),
        "event.outcome": "CASE COALESCE(j.success, j.auth_success) WHEN true THEN 'success' "
                         "WHEN false THEN 'failure' END",
        "message": _case(p, {"notice": "j.msg", "syslog": "j.message"}),
        "log.level": f"CASE {p} WHEN 'syslog' THEN lower(j.severity) END",
        "observer.vendor": "'Zeek'",
        "observer.product": "'Zeek'",
        "observer.name": "COALESCE(j._node, j.peer)",
        "source.ip": src_ip,
        "source.port": "j.\"id.orig_p\"",
        "destination.ip": dst_ip,
        "destination.port": f"COALESCE(j.\"id.resp_p\", CASE {p} WHEN 'notice' THEN j.p END)",
        "destination.domain": f"CASE {p} WHEN 'ssl' THEN j.server_name END",
        "host.ip": host_ip,
        "network.transport": "lower(COALESCE(j.proto, j.port_proto))",
        "network.protocol": _case(p, {"conn": f"lower({_text('j.service')})",
                                      "known_services": f"lower({_text('j.service')})",
                                      **{k: sql_str(v) for k, v in _PROTOCOL.items()}}),
        "network.community_id": "j.community_id",
        "related.ip": f"list_distinct({list_expr(src_ip, dst_ip, host_ip)})",
        "dns.question.name": f"CASE {p} WHEN 'dns' THEN j.query END",
        "dns.question.type": f"CASE {p} WHEN 'dns' THEN j.qtype_name END",
        "dns.response_code": f"CASE {p} WHEN 'dns' THEN j.rcode_name END",
        "dns.answers": f"CASE {p} WHEN 'dns' THEN {_text('j.answers')} END",
        "url.domain": f"CASE {p} WHEN 'http' THEN j.host END",
        "url.path": f"CASE {p} WHEN 'http' THEN j.uri END",
        "http.request.method": f"CASE {p} WHEN 'http' THEN j.method END",
        "http.response.status_code": f"CASE {p} WHEN 'http' THEN j.status_code END",
        "user_agent.original": f"CASE WHEN {p} IN ('http', 'smtp') THEN j.user_agent END",
        "user.name": "NULLIF(" + _case(p, {
            "kerberos": f"split_part({kclient}, '/', 1)", "ntlm": "j.username", "rdp": "j.cookie",
            "ftp": "j.user",
        }) + ", '')",
        "user.domain": "NULLIF(" + _case(p, {
            "kerberos": f"NULLIF(split_part({kclient}, '/', 2), '')", "ntlm": "j.domainname",
        }) + ", '')",
        "file.path": f"CASE {p} WHEN 'smb_files' THEN {_text('j.path')} END",
        "file.name": f"CASE {p} WHEN 'smb_files' THEN j.name WHEN 'files' THEN j.filename END",
        "file.hash.md5": "j.md5",
        "file.hash.sha1": "j.sha1",
        "file.hash.sha256": "j.sha256",
        "rule.name": f"CASE {p} WHEN 'notice' THEN j.note END",
        "event.original": original,
    }


@lru_cache(maxsize=64)
def _json_mapping(fallback: str) -> JsonMapping:
    """The mapping for JSON records whose ``_path`` is absent and whose file is named `fallback`."""
    return JsonMapping(_STRUCT, _columns(fallback, "raw"))


_TSV_LINE = "_phago_tsv_line"
"""Key under which a TSV row's JSON carries its raw line (for ``event.original``)."""
TSV_MAPPING = JsonMapping({**_STRUCT, _TSV_LINE: "VARCHAR"},
                          _columns("unknown", f'j."{_TSV_LINE}"'), keep_original=False)

_NAME = re.compile(r"[a-z0-9_]+")


def log_type_from_name(path: str) -> str:
    """``conn.log``, ``conn.json.gz``, ``dns.2018-03-24-10-00-00.log`` -> ``conn``/``dns``."""
    name = PurePosixPath(path.replace("\\", "/").rsplit("!", 1)[-1]).name.lower()
    m = _NAME.match(name)
    return m.group(0) if m else "unknown"


def _line1(head: bytes) -> bytes:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0]


@register
class ZeekReader(Reader):
    name = "zeek"
    description = "Zeek logs (conn, dns, http, ssl, notice, ... ): JSON lines or TSV with #fields headers"

    def sniff(self, head: bytes, path: str) -> int:
        first = _line1(head)
        if first.startswith(b"#separator "):
            return 100
        if not (first.startswith(b"{") or looks_like_json_array(head)):
            return 0
        sample = head if looks_like_json_array(head) else first
        if b'"_path":' in sample and (b'"_write_ts":' in sample or b'"ts":' in sample):
            return 95
        if b'"id.orig_h":' in sample and b'"uid":' in sample:
            return 90
        if b'"ts":' in sample and any(k in sample for k in (b'"uid":', b'"fuid":', b'"certificate.version":')):
            return 70
        return 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        if _line1(ctx.source.head).startswith(b"#separator "):
            yield from _read_tsv(ctx)
            return
        mapping = _json_mapping(log_type_from_name(ctx.source.path))
        for raws, lines, offsets in iter_json_blocks(ctx):
            yield JsonRecords(mapping, raws, lines, offsets)


# --- TSV ----------------------------------------------------------------------------------------

_HEX = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unhex(text: str) -> str:
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


class _Header:
    """One header block's state: separators, markers, field names and a converter per field."""

    def __init__(self, sep: str) -> None:
        self.sep = sep
        self.set_sep = ","
        self.empty = "(empty)"
        self.unset = "-"
        self.path: str | None = None
        self.fields: list[str] | None = None
        self.types: list[str] = []

    def directive(self, line: str) -> None:
        key, _, value = line.partition(self.sep)
        if key == "#set_separator":
            self.set_sep = _unhex(value)
        elif key == "#empty_field":
            self.empty = value
        elif key == "#unset_field":
            self.unset = value
        elif key == "#path":
            self.path = value
        elif key == "#fields":
            self.fields = value.split(self.sep)
        elif key == "#types":
            self.types = value.split(self.sep)

    def convert(self, typ: str, value: str) -> Any:
        """A TSV value as Zeek's JSON writer types it; text that does not fit stays text."""
        if typ.startswith(("set[", "vector[")):
            if value == self.empty:
                return []
            inner = typ[typ.index("[") + 1 : -1]
            esc = "\\x%02x" % ord(self.set_sep[0]) if self.set_sep else None
            return [self.convert(inner, v.replace(esc, self.set_sep) if esc and "\\x" in v else v)
                    for v in value.split(self.set_sep)]
        if value == self.empty:
            return ""
        sep_esc = "\\x%02x" % ord(self.sep[0]) if self.sep else None
        if "\\x" in value and sep_esc:
            value = value.replace(sep_esc, self.sep)
        try:
            if typ in ("count", "int", "port"):
                return int(value)
            if typ in ("time", "interval", "double"):
                return float(value)
        except ValueError:
            return value
        if typ == "bool":
            return {"T": True, "F": False}.get(value, value)
        if value == "\\x2d":  # a literal "-" is escaped so as not to read as unset
            return "-"
        return value


def _read_tsv(ctx: ReadContext) -> Iterator[JsonRecords]:
    fallback = log_type_from_name(ctx.source.path)
    hdr: _Header | None = None
    for block in iter_line_blocks(ctx):
        raws: list[str] = []
        lines: list[int | None] = []
        offsets: list[int | None] = []
        for text, line, off in zip(block.lines, block.numbers, block.offsets, strict=True):
            if text.startswith("#"):
                if text.startswith("#separator "):
                    hdr = _Header(_unhex(text[len("#separator "):]) or "\t")
                elif hdr is not None:
                    hdr.directive(text)
                else:
                    ctx.bad("Zeek TSV: header line before #separator", line=line, offset=off, raw=text)
                continue
            if hdr is None or not hdr.fields:
                ctx.bad("Zeek TSV: data line before a #fields header", line=line, offset=off, raw=text)
                continue
            values = text.split(hdr.sep)
            if len(values) != len(hdr.fields):
                ctx.bad(f"Zeek TSV: {len(values)} fields, #fields names {len(hdr.fields)}",
                        line=line, offset=off, raw=text)
                continue
            types = hdr.types if len(hdr.types) == len(values) else ["string"] * len(values)
            rec: dict[str, Any] = {"_path": hdr.path or fallback}
            for name, typ, value in zip(hdr.fields, types, values, strict=True):
                if value != hdr.unset:
                    rec[name] = hdr.convert(typ, value)
            rec[_TSV_LINE] = text
            raws.append(orjson.dumps(rec).decode())
            lines.append(line)
            offsets.append(off)
        if raws:
            yield JsonRecords(TSV_MAPPING, raws, lines, offsets)
