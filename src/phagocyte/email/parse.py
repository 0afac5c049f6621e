"""One raw message -> `ParsedMessage`: decoded headers, text, links and attachments, within limits.

The stdlib parser (`compat32` policy: it is several times faster than `policy.default` and never
raises on bad headers) reads the MIME tree; the walk over it is ours, iterative and bounded, so a
nested `message/rfc822` bomb, a part count in the thousands or a wrong charset becomes a recorded
problem, never a crash. Parts are decoded, never executed or rendered.
"""

from __future__ import annotations

import codecs
import email.header
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from functools import lru_cache

from phagocyte.email.html import Anchor, Form, read_html

__all__ = ["Attachment", "EmailLimits", "ParsedMessage", "parse_message"]

_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class EmailLimits:
    """What one message may cost; past a limit the rest is skipped with a stated reason."""

    max_message_bytes: int = 40 * _MiB
    max_parts: int = 500
    max_depth: int = 8
    """Nesting of multiparts and attached messages (`message/rfc822`)."""
    max_part_bytes: int = 25 * _MiB
    """Decoded size of one part; larger parts are hashed but not inspected."""
    max_text_chars: int = 500_000
    max_headers: int = 1_000
    max_urls: int = 500


@dataclass(slots=True)
class Attachment:
    name: str
    declared_type: str
    size: int
    sha256: str
    md5: str
    payload: bytes = field(repr=False)
    inline: bool = False
    origin: str = ""
    """Container path for a member of an archive (`outer.zip!inner.exe`), empty for a MIME part."""


@dataclass(slots=True)
class ParsedMessage:
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    """Plain-text parts, then the visible text of HTML parts."""
    html: list[str] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    text_urls: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    forms: list[Form] = field(default_factory=list)
    smuggling: list[str] = field(default_factory=list)
    meta_refresh: list[str] = field(default_factory=list)
    scripts: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    structure: list[str] = field(default_factory=list)
    nested_messages: int = 0
    problems: list[str] = field(default_factory=list)

    def get(self, name: str) -> str:
        """First value of a header ('' when absent), case-insensitive."""
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), "")

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.headers if k.lower() == low]

    @property
    def subject(self) -> str:
        return self.get("subject")

    def address(self, name: str) -> tuple[str, str]:
        """(display name, lower-cased address) of an address header."""
        return _address(self.get(name))


_URL = re.compile(r"""(?i)\b(?:https?://|www\.)[^\s<>"'`{}|\\^\[\]]{2,2000}""")
_CTYPE_COUNT = re.compile(rb"(?im)^content-type:")
_FROM_LINE = re.compile(rb"^From [^\r\n]*\r?\n")


@lru_cache(maxsize=4096)
def _address(value: str) -> tuple[str, str]:
    try:
        name, addr = email.utils.parseaddr(value)
    except Exception:
        return "", ""
    return name.strip(), addr.strip().lower()


def decode_header(value: object) -> str:
    """RFC 2047 decoded, whitespace-folded text of a header value; never raises."""
    raw = str(value) if not isinstance(value, str) else value
    if "=?" not in raw:
        return " ".join(raw.split())
    try:
        parts = email.header.decode_header(raw)
        out = []
        for chunk, charset in parts:
            if isinstance(chunk, bytes):
                out.append(_decode(chunk, charset)[0])
            else:
                out.append(chunk)
        return " ".join("".join(out).split())
    except Exception:
        return " ".join(raw.split())


def _decode(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Text of a part in its declared charset; (text, problem) when the charset is unknown."""
    cs = (charset or "utf-8").strip().strip('"').lower() or "utf-8"
    try:
        codecs.lookup(cs)
    except LookupError:
        return data.decode("utf-8", "replace"), f"unknown charset {cs[:40]!r}, read as UTF-8"
    try:
        return data.decode(cs, "replace"), None
    except Exception:
        return data.decode("utf-8", "replace"), f"charset {cs[:40]!r} failed, read as UTF-8"


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        param = part.get_param("name") if part.get("content-type") else None
        name = param if isinstance(param, str) else None
    return decode_header(name)[:255] if name else ""


def parse_message(raw: bytes, limits: EmailLimits | None = None) -> ParsedMessage:
    """Parse one RFC 822 message; every part that could not be read is named in `problems`."""
    lim = limits or EmailLimits()
    pm = ParsedMessage()
    if len(raw) > lim.max_message_bytes:
        pm.problems.append(f"message cut to {lim.max_message_bytes:,} of {len(raw):,} bytes")
        raw = raw[: lim.max_message_bytes]
    raw = _FROM_LINE.sub(b"", raw[:200], count=1) + raw[200:] if raw.startswith(b"From ") else raw
    try:
        if len(_CTYPE_COUNT.findall(raw)) > lim.max_parts * 2:
            pm.problems.append(f"more than {lim.max_parts * 2} MIME parts: only the headers were read")
            msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
            _read_headers(pm, msg, lim)
            return pm
        msg = message_from_bytes(raw, policy=compat32)
    except RecursionError:
        pm.problems.append("MIME structure nested too deep for the parser: only the headers were read")
        msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
        _read_headers(pm, msg, lim)
        return pm
    _read_headers(pm, msg, lim)
    for defect in (getattr(msg, "defects", None) or [])[:5]:
        pm.problems.append(f"MIME defect: {type(defect).__name__}")
    _walk(pm, msg, lim)
    return pm


def _read_headers(pm: ParsedMessage, msg: Message, lim: EmailLimits) -> None:
    items = msg.items()
    if len(items) > lim.max_headers:
        pm.problems.append(f"{len(items):,} headers: only the first {lim.max_headers:,} were read")
    pm.headers = [(k, decode_header(v)) for k, v in items[: lim.max_headers]]


def _walk(pm: ParsedMessage, root: Message, lim: EmailLimits) -> None:
    texts: list[str] = []
    html_texts: list[str] = []
    text_len = 0
    parts = 0
    stack: list[tuple[Message, int]] = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > lim.max_parts:
            pm.problems.append(f"more than {lim.max_parts} MIME parts: the rest were skipped")
            break
        try:
            text_len = _visit(pm, part, depth, parts, stack, texts, html_texts, text_len, lim)
        except Exception as exc:  # a malformed part is a recorded problem; the other parts are still read
            pm.problems.append(f"part {parts} could not be read: {type(exc).__name__}: {str(exc)[:100]}")
    pm.text = "\n".join(texts + html_texts)
    if pm.html:
        pm.text_urls = [m.group(0).rstrip(".,;:!?)'\"") for m in _URL.finditer("\n".join(texts))][: lim.max_urls]
    else:
        pm.text_urls = [m.group(0).rstrip(".,;:!?)'\"") for m in _URL.finditer(pm.text)][: lim.max_urls]


def _visit(pm: ParsedMessage, part: Message, depth: int, parts: int, stack: list[tuple[Message, int]],
           texts: list[str], html_texts: list[str], text_len: int, lim: EmailLimits) -> int:
    """Read one MIME node: queue its children, keep its text, or record it as an attachment."""
    ctype = (part.get_content_type() or "text/plain").lower()
    if len(pm.structure) < 200:
        pm.structure.append(ctype)
    if part.is_multipart() or ctype == "message/rfc822":
        if depth >= lim.max_depth:
            pm.problems.append(f"{ctype} nested deeper than {lim.max_depth}: its parts were skipped")
            return text_len
        if ctype == "message/rfc822":
            pm.nested_messages += 1
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
        return text_len
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        pm.problems.append(f"part {parts} ({ctype}) could not be decoded: {type(exc).__name__}")
        return text_len
    if not isinstance(data, bytes):
        data = b""
    name = _filename(part)
    disposition = str(part.get("content-disposition") or "").split(";")[0].strip().lower()
    is_text = ctype in ("text/plain", "text/html") and not name and disposition != "attachment"
    if not is_text:
        if len(pm.attachments) < lim.max_parts:
            kept = data if len(data) <= lim.max_part_bytes else b""
            if not kept and data:
                pm.problems.append(f"attachment {name or ctype!r} of {len(data):,} bytes: hashed, not inspected")
            pm.attachments.append(Attachment(
                name=name, declared_type=ctype, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                md5=hashlib.md5(data, usedforsecurity=False).hexdigest(), payload=kept,
                inline=disposition == "inline"))
        return text_len
    if text_len >= lim.max_text_chars:
        pm.problems.append(f"text beyond {lim.max_text_chars:,} characters skipped (part {parts})")
        return text_len
    text, problem = _decode(data[: lim.max_text_chars * 4], part.get_content_charset())
    if problem:
        pm.problems.append(f"part {parts} ({ctype}): {problem}")
    text = text[: lim.max_text_chars - text_len]
    text_len += len(text)
    if ctype == "text/html":
        pm.html.append(text)
        facts = read_html(text)
        html_texts.append(facts.text)
        pm.anchors.extend(facts.anchors[: lim.max_urls - len(pm.anchors)])
        pm.sources.extend(facts.sources[: lim.max_urls - len(pm.sources)])
        pm.forms.extend(facts.forms)
        pm.smuggling.extend(facts.smuggling)
        pm.meta_refresh.extend(facts.meta_refresh)
        pm.scripts += facts.scripts
        pm.problems.extend(facts.problems)
    else:
        texts.append(text)
    return text_len
