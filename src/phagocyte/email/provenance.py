"""Remove what tells *where and when* a message came from, so evaluation measures content.

The public corpora are 20 years and several mailboxes apart: the 2002 ham passed through a
fetchmail hop, the phishing through Outlook's filters, the modern ham through a Mailman list and
an archiver. A classifier can reach near-perfect scores on those cues alone. `strip_provenance`
keeps only what the sender wrote and the reader sees:

- headers: only From, Reply-To, Subject and the MIME headers (Date, Received, Return-Path, To/Cc,
  Message-ID, Authentication-Results, DKIM, List-*, X-*, Delivered-To and all others go), then To,
  Date and Message-ID come back with one constant value for every message (`PLACEHOLDERS`);
- a list's rewriting is undone: `Name via List <list@>` with a Reply-To becomes the poster's own
  From; list tags like `[USRP-users]` leave the subject;
- list and group footers (Mailman, Yahoo! Groups, SourceForge) leave the text and HTML parts;
- the corpora's anonymisation placeholders (`phishing@pot`, `zzzz`, `spamassassin.taint.org`)
  become neutral ones, since they name the corpus;
- years (1980-2049) in the text and subject become `YEAR` (quoted "On ... 2019 ... wrote:" lines,
  copyright notices): the date is gone from the headers, it must not stay in the body.

Used identically by `phago email train --strip-provenance`, the cross-validation and the peers'
input in `bench/email_eval.py`. A message that cannot be rebuilt keeps its body and loses its
headers by a line-based filter instead.
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.policy import compat32

from phagocyte.email.parse import decode_header

__all__ = ["KEPT_HEADERS", "PLACEHOLDERS", "clean_text", "strip_provenance"]

KEPT_HEADERS = frozenset({"from", "reply-to", "subject", "mime-version", "content-type",
                          "content-transfer-encoding", "content-disposition"})
# The same neutral values for every message: a filter that penalises a missing Date, To or Message-ID
# (SpamAssassin, rspamd) would otherwise judge the stripping, not the message.
PLACEHOLDERS = (("To", "recipient@example.com"), ("Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
                ("Message-ID", "<message@example.com>"))
_LIST_TAG = re.compile(r"\[[A-Za-z0-9_.-]{2,30}\]\s*")
_VIA = re.compile(r"^\s*(.*?)\s+via\s+[\w .-]{1,60}$", re.I)
_FOOTERS = (
    re.compile(r"(?:_{30,}|-{30,})[^\n]{0,20}\n(?:[^\n]{0,300}\n){0,6}?[^\n]{0,300}"
               r"(?:listinfo|mailing list|unsubscribe|mailman)[^\n]{0,400}(?:\n[^\n]{0,300}"
               r"(?:listinfo|unsubscribe|https?://|mailto:|@)[^\n]{0,400})*", re.I),
    re.compile(r"-{5,} ?Yahoo! Groups Sponsor[\s\S]{0,2000}?(?:yahoo\.com/info/terms/?|$)", re.I),
    re.compile(r"-{20,}\s*\n\s*This (?:sf\.net|SF\.net) email is sponsored by[\s\S]{0,1500}?"
               r"(?:listinfo/\S+|$)", re.I),
)
_PLACEHOLDERS = (
    (re.compile(r"phishing@pot", re.I), "user@example.com"),
    (re.compile(r"(?:spamassassin\.)?taint\.org", re.I), "example.org"),
    (re.compile(r"zzzz", re.I), "user"),
    (re.compile(r"\b(?:19[89]\d|20[0-4]\d)\b"), "YEAR"),
)
# Rewritten parts are quoted-printable, as most text mail is (base64 text would look odd to the peers' rules).
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_HEADER_LINE = re.compile(rb"^([!-9;-~]+):")


def clean_text(text: str) -> str:
    """A part's text without list footers and corpus placeholders."""
    for pattern in _FOOTERS:
        text = pattern.sub("", text)
    for pattern, repl in _PLACEHOLDERS:
        text = pattern.sub(repl, text)
    return text


def _clean_header(value: str) -> str:
    for pattern, repl in _PLACEHOLDERS:
        value = pattern.sub(repl, value)
    return value


def strip_provenance(raw: bytes) -> bytes:
    """The message as its sender wrote it: see the module doc for exactly what goes."""
    try:
        msg = message_from_bytes(raw, policy=compat32)
        _strip_headers(msg)
        _strip_parts(msg)
        return msg.as_bytes(unixfrom=False)
    except Exception:
        return _fallback(raw)


def _strip_headers(msg: Message) -> None:
    from_ = _clean_header(decode_header(msg.get("from", "")))
    reply = _clean_header(decode_header(msg.get("reply-to", "")))
    subject = _LIST_TAG.sub("", _clean_header(decode_header(msg.get("subject", "")))).strip()
    for key in {k.lower() for k in msg}:
        if key not in KEPT_HEADERS:
            del msg[key]
    for key in ("from", "reply-to", "subject"):
        del msg[key]
    name_addr = from_.rsplit("<", 1)
    via = _VIA.match(name_addr[0].strip().strip('"')) if len(name_addr) == 2 else None
    if via and reply:
        from_ = f'"{via.group(1)}" <{reply.rsplit("<", 1)[-1].strip(" >")}>'
        reply = ""
    if from_:
        msg["From"] = Header(from_, "utf-8").encode() if not from_.isascii() else from_
    if reply:
        msg["Reply-To"] = Header(reply, "utf-8").encode() if not reply.isascii() else reply
    if subject:
        msg["Subject"] = Header(subject, "utf-8").encode() if not subject.isascii() else subject
    for key, value in PLACEHOLDERS:
        msg[key] = value


def _strip_parts(msg: Message) -> None:
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < 500:
        part, depth = stack.pop()
        seen += 1
        if part.is_multipart():
            if depth < 8:
                stack.extend((p, depth + 1) for p in part.get_payload() if isinstance(p, Message))
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or part.get_filename():
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            text = data.decode(charset, "replace")
        except LookupError:
            text = data.decode("utf-8", "replace")
        cleaned = clean_text(text)
        if cleaned != text:
            del part["content-transfer-encoding"]
            part.set_payload(cleaned, _UTF8_QP)


def _fallback(raw: bytes) -> bytes:
    """Line-based: drop every top-level header outside KEPT_HEADERS (with its folded lines)."""
    head, sep, body = raw.partition(b"\n\n")
    out: list[bytes] = []
    keep = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if keep:
                out.append(line)
            continue
        m = _HEADER_LINE.match(line)
        keep = bool(m) and m.group(1).decode("ascii", "replace").lower() in KEPT_HEADERS  # type: ignore[union-attr]
        if keep:
            out.append(line)
    out.extend(f"{k}: {v}".encode() for k, v in PLACEHOLDERS)
    return b"\n".join(out) + sep + body
