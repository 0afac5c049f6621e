"""Zeek logs, in both encodings Zeek writes: JSON lines and the default TSV with ``#`` headers.

One mapping serves both: a TSV row is turned into the JSON object Zeek's JSON writer would have
written (keys from ``#fields``, values typed by ``#types``), so a record gives the same ECS row
whichever way it was logged; only ``event.original`` differs (the raw TSV line, or the JSON text).
The log type (``_path``, ``#path``, or the file name: plain ``LogAscii::use_json`` output has no
``_path``) names the dataset, ``zeek.<type>``, and picks the per-type fields.
"""

from __future__ import annotations

import codecs
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
    "notice": "['intrusion_detection']", "software": "['host']", "known_hosts": "['network']",
    "known_services": "['network']", "known_certs": "['network']", "loaded_scripts": "['configuration']",
    "stats": "['host']", "capture_loss": "['host']", "packet_filter": "['configuration']",
}
_TYPE = {"conn": "['connection']", "dns": "['protocol', 'info']", "http": "['protocol', 'access']"}


def _text(x: str) -> str:
    """A JSON string, or a JSON array joined with ',' (Zeek sets and vectors)."""
    return (f"NULLIF(CASE WHEN json_type({x}) = 'ARRAY' THEN array_to_string(json_extract_string({x}, '$[*]'), ',') "
            f"ELSE json_extract_string({x}, '$') END, '')")


def _first(x: str) -> str:
    return f"CASE WHEN json_type({x}) = 'ARRAY' THEN json_extract_string({x}, '$[0]') ELSE {_text(x)} END"


def _case(p: str, table: dict[str, str], default: str = "NULL") -> str:
    arms = " ".join(f"WHEN {sql_str(k)} THEN {v}" for k, v in table.items())
    return f"CASE {p} {arms} ELSE {default} END"


def _first_stage(fallback: str, original: str) -> dict[str, str]:
    """Parse once: the log type ``_p`` and the transformed record ``_j`` for the next stages."""
    # The log type names the dataset (and a store partition): letters, digits and _ only.
    p = (f"CASE WHEN regexp_full_match(j._path, '[a-z0-9_]{{1,64}}') THEN j._path ELSE left(regexp_replace("
         f"lower(COALESCE(j._path, {sql_str(fallback)})), '[^a-z0-9_]+', '_', 'g'), 64) END")
    return {"_p": p, "_j": "j",
            "@timestamp": ts_expr("j.ts"), "event.original": original}


def _mapping_stage() -> dict[str, str]:
    p = "_p"
    src_ip = f"COALESCE(_j.\"id.orig_h\", CASE {p} WHEN 'notice' THEN _j.src WHEN 'dhcp' THEN _j.client_addr " \
             f"WHEN 'files' THEN {_first('_j.tx_hosts')} END)"
    dst_ip = f"COALESCE(_j.\"id.resp_h\", CASE {p} WHEN 'notice' THEN _j.dst WHEN 'dhcp' THEN _j.server_addr " \
             f"WHEN 'files' THEN {_first('_j.rx_hosts')} END)"
    host_ip = f"CASE WHEN {p} IN ('known_hosts', 'known_services', 'known_certs', 'software') THEN _j.host END"
    kclient = "CASE WHEN " + p + " = 'kerberos' THEN _j.client END"
    return {
        "event.kind": f"CASE {p} WHEN 'notice' THEN 'alert' ELSE 'event' END",
        "event.module": "'zeek'",
        "event.dataset": f"'zeek.' || {p}",
        "event.code": p,
        "event.category": _case(p, _CATEGORY, f"CASE WHEN {src_ip} IS NOT NULL THEN ['network'] END"),
        "event.type": _case(p, _TYPE, "['info']"),
        "event.action": _case(p, {
            "weird": "_j.name", "smb_files": "_j.action", "ftp": "_j.command", "dce_rpc": "_j.operation",
            "modbus": "_j.func", "kerberos": "_j.request_type", "dhcp": _text("_j.msg_types"),
        }),
        "event.outcome": "CASE COALESCE(_j.success, _j.auth_success) WHEN true THEN 'success' "
                         "WHEN false THEN 'failure' END",
        "message": _case(p, {"notice": "_j.msg", "syslog": "_j.message"}),
        "log.level": f"CASE {p} WHEN 'syslog' THEN lower(_j.severity) END",
        "observer.vendor": "'Zeek'",
        "observer.product": "'Zeek'",
        "observer.name": "COALESCE(_j._node, _j.peer)",
        "source.ip": src_ip,
        "source.port": "_j.\"id.orig_p\"",
        "destination.ip": dst_ip,
        "destination.port": f"COALESCE(_j.\"id.resp_p\", CASE {p} WHEN 'notice' THEN _j.p END)",
        "destination.domain": f"CASE {p} WHEN 'ssl' THEN _j.server_name END",
        "host.ip": host_ip,
        "network.transport": "lower(COALESCE(_j.proto, _j.port_proto))",
        "network.protocol": _case(p, {"conn": f"lower({_text('_j.service')})",
                                      "known_services": f"lower({_text('_j.service')})",
                                      **{k: sql_str(v) for k, v in _PROTOCOL.items()}}),
        "network.community_id": "_j.community_id",
        "dns.question.name": f"CASE {p} WHEN 'dns' THEN _j.query END",
        "dns.question.type": f"CASE {p} WHEN 'dns' THEN _j.qtype_name END",
        "dns.response_code": f"CASE {p} WHEN 'dns' THEN _j.rcode_name END",
        "dns.answers": f"CASE {p} WHEN 'dns' THEN {_text('_j.answers')} END",
        "url.domain": f"CASE {p} WHEN 'http' THEN _j.host END",
        "url.path": f"CASE {p} WHEN 'http' THEN _j.uri END",
        "http.request.method": f"CASE {p} WHEN 'http' THEN _j.method END",
        "http.response.status_code": f"CASE {p} WHEN 'http' THEN _j.status_code END",
        "user_agent.original": f"CASE WHEN {p} IN ('http', 'smtp') THEN _j.user_agent END",
        "user.name": "NULLIF(" + _case(p, {
            "kerberos": f"split_part({kclient}, '/', 1)", "ntlm": "_j.username", "rdp": "_j.cookie",
            "ftp": "_j.user",
        }) + ", '')",
        "user.domain": "NULLIF(" + _case(p, {
            "kerberos": f"NULLIF(split_part({kclient}, '/', 2), '')", "ntlm": "_j.domainname",
        }) + ", '')",
        "file.path": f"CASE {p} WHEN 'smb_files' THEN {_text('_j.path')} END",
        "file.name": f"CASE {p} WHEN 'smb_files' THEN _j.name WHEN 'files' THEN _j.filename END",
        "file.hash.md5": "_j.md5",
        "file.hash.sha1": "_j.sha1",
        "file.hash.sha256": "_j.sha256",
        "rule.name": f"CASE {p} WHEN 'notice' THEN _j.note END",
    }


_RELATED = {"related.ip": list_expr(
    '"source.ip"', 'CASE WHEN "destination.ip" IS DISTINCT FROM "source.ip" THEN "destination.ip" END', '"host.ip"')}
_STAGES = (_mapping_stage(), _RELATED)


@lru_cache(maxsize=64)
def _json_mapping(fallback: str) -> JsonMapping:
    """The mapping for JSON records whose ``_path`` is absent and whose file is named `fallback`."""
    return JsonMapping(_STRUCT, _first_stage(fallback, "raw"), stages=_STAGES)


_TSV_LINE = "_phago_tsv_line"
"""Key under which a TSV row's JSON carries its raw line (for ``event.original``)."""
TSV_MAPPING = JsonMapping({**_STRUCT, _TSV_LINE: "VARCHAR"}, _first_stage("unknown", f'j."{_TSV_LINE}"'),
                          keep_original=False, stages=_STAGES)

_NAME = re.compile(r"[a-z0-9_]+")


def log_type_from_name(path: str) -> str:
    """``conn.log``, ``conn.json.gz``, ``dns.2018-03-24-10-00-00.log`` -> ``conn``/``dns``."""
    name = PurePosixPath(path.replace("\\", "/").rsplit("!", 1)[-1]).name.lower()
    m = _NAME.match(name)
    return m.group(0) if m else "unknown"


_TS_MATES = (b'"uid":', b'"fuid":', b'"certificate.version":')


def _utf8_head(head: bytes) -> bytes:
    """The head as UTF-8 (a UTF-16 source is transcoded by the line splitter as well)."""
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[2 : len(head) - len(head) % 2].decode(enc, "replace").encode()
    return head.removeprefix(codecs.BOM_UTF8)


def _line1(head: bytes) -> bytes:
    return head.lstrip(b" \t\r\n").split(b"\n", 1)[0]


@register
class ZeekReader(Reader):
    name = "zeek"
    description = "Zeek logs (conn, dns, http, ssl, notice, ... ): JSON lines or TSV with #fields headers"

    def sniff(self, head: bytes, path: str) -> int:
        head = _utf8_head(head)
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
        if b'"ts":' in sample and any(k in sample for k in _TS_MATES):
            return 70
        return 0

    def read(self, ctx: ReadContext) -> Iterator[JsonRecords]:
        if _line1(_utf8_head(ctx.source.head)).startswith(b"#separator "):
            yield from _read_tsv(ctx)
            return
        mapping = _json_mapping(log_type_from_name(ctx.source.path))
        for raws, lines, offsets in iter_json_blocks(ctx):
            yield JsonRecords(mapping, raws, lines, offsets)


# --- TSV ----------------------------------------------------------------------------------------

_HEX = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unhex(text: str) -> str:
    return _HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


_NUMBER: dict[str, Any] = {"count": int, "int": int, "port": int, "time": float, "interval": float,
                           "double": float}
_BOOL = {"T": True, "F": False}


def _bool(value: str) -> bool:
    try:
        return _BOOL[value]
    except KeyError:
        raise ValueError(value) from None


def _escape(ch: str) -> str | None:
    return f"\\x{ord(ch[0]):02x}" if ch else None


_CONTAINER = "container"


def _is_container(typ: str) -> bool:
    return typ.endswith("]") and typ.startswith(("set[", "vector["))


class _Header:
    """One header block's state: separators, markers, field names and types, and from them a
    plan that converts a row with one cheap step per field (the slow path handles the rest)."""

    def __init__(self, sep: str) -> None:
        self.sep = sep
        self.set_sep = ","
        self.empty = "(empty)"
        self.unset = "-"
        self.path: str | None = None
        self.fields: list[str] | None = None
        self.types: list[str] = []
        self._plan: list[tuple[str, Any, str]] | None = None

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
        self._plan = None

    def _compile(self) -> list[tuple[str, Any, str]]:
        assert self.fields is not None
        types = self.types if len(self.types) == len(self.fields) else ["string"] * len(self.fields)
        plan = []
        for name, typ in zip(self.fields, types, strict=True):
            if _is_container(typ):
                conv: Any = _CONTAINER
            elif typ == "bool":
                conv = _bool
            else:
                conv = _NUMBER.get(typ)
            plan.append((name, conv, typ))
        self._sep_esc, self._set_esc = _escape(self.sep), _escape(self.set_sep)
        self._plan = plan
        return plan

    def record(self, values: list[str], fallback: str) -> dict[str, Any]:
        """A row as the object Zeek's JSON writer would have written (unset fields left out)."""
        plan = self._plan or self._compile()
        rec: dict[str, Any] = {"_path": self.path or fallback}
        unset, empty = self.unset, self.empty
        for (name, conv, typ), value in zip(plan, values, strict=True):
            if value == unset:
                continue
            if conv is None:  # text
                rec[name] = value if value != empty and "\\" not in value else self._slow(typ, value)
            elif conv is _CONTAINER:
                rec[name] = self._slow(typ, value)
            else:
                try:
                    rec[name] = conv(value)
                except ValueError:
                    rec[name] = self._slow(typ, value)
        return rec

    def _slow(self, typ: str, value: str) -> Any:
        if self._sep_esc and "\\x" in value:
            value = value.replace(self._sep_esc, self.sep)
        if not _is_container(typ):
            return self._scalar(typ, value)
        if value == self.empty:
            return []
        inner, esc = typ[typ.index("[") + 1 : -1], self._set_esc
        return [self._scalar(inner, v.replace(esc, self.set_sep) if esc and "\\x" in v else v)
                for v in value.split(self.set_sep)]

    def _scalar(self, typ: str, value: str) -> Any:
        """Typed as #types says; text that does not fit its type stays text (json_transform
        then leaves a typed ECS field empty, and event.original has the value)."""
        if value == self.empty:
            return ""
        conv = _bool if typ == "bool" else _NUMBER.get(typ)
        if conv is not None:
            try:
                return conv(value)
            except ValueError:
                return value
        if value == "\\x2d":  # a lone "-" is escaped so that it does not read as unset
            return "-"
        return value


def _big_as_text(v: Any) -> Any:
    if isinstance(v, list):
        return [_big_as_text(x) for x in v]
    return str(v) if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64 else v


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
            rec = hdr.record(values, fallback)
            rec[_TSV_LINE] = text
            try:
                raws.append(orjson.dumps(rec).decode())
            except TypeError:  # an integer beyond 64 bits: keep it as text
                raws.append(orjson.dumps({k: _big_as_text(v) for k, v in rec.items()}).decode())
            lines.append(line)
            offsets.append(off)
        if raws:
            yield JsonRecords(TSV_MAPPING, raws, lines, offsets)
