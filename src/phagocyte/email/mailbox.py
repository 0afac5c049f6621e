"""Files and folders -> raw messages: `.eml` (and any RFC 822 file), Outlook `.msg`, mbox.

Recognised by content: an OLE2 file is an Outlook message (read with extract-msg and rebuilt as
RFC 822, so one analyser serves both), a file that starts with an mbox `From ` line is split into
its messages, anything else is one message. A file that cannot be read yields a `Skipped` with
the reason, and the walk goes on.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

__all__ = ["MAX_FILE_BYTES", "Skipped", "iter_messages", "msg_to_rfc822"]

MAX_FILE_BYTES = 512 * 1024 * 1024
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if f.is_file() and not any(part.startswith(".") for part in rel) and f.name != "MANIFEST.md":
                    yield f
        else:
            yield p


def iter_messages(paths: Iterable[str | Path]) -> Iterator[tuple[str, bytes] | Skipped]:
    """(label, raw message) for every message under `paths`; `Skipped` for what cannot be read."""
    for f in _files(paths):
        try:
            size = f.stat().st_size
            if size > MAX_FILE_BYTES:
                yield Skipped(str(f), f"file of {size:,} bytes is over {MAX_FILE_BYTES:,}")
                continue
            with f.open("rb") as fh:
                head = fh.read(8)
            if head == _OLE:
                yield str(f), msg_to_rfc822(f)
            elif head.startswith(b"From "):
                yield from _mbox(f)
            else:
                yield str(f), f.read_bytes()
        except Exception as exc:  # one unreadable file never stops the run
            yield Skipped(str(f), f"{type(exc).__name__}: {str(exc)[:200]}")


def _mbox(f: Path) -> Iterator[tuple[str, bytes]]:
    box = stdlib_mailbox.mbox(str(f), create=False)
    try:
        keys = list(box.keys())
        if len(keys) <= 1:
            yield str(f), f.read_bytes()
            return
        for i, key in enumerate(keys, 1):
            yield f"{f}:{i}", box.get_bytes(key)
    finally:
        box.close()


def msg_to_rfc822(path: Path) -> bytes:
    """An Outlook .msg rebuilt as RFC 822: its transport headers, bodies and attachments."""
    import extract_msg

    msg = extract_msg.openMsg(str(path), strict=False)
    try:
        out = EmailMessage(policy=SMTP)
        header = getattr(msg, "header", None)
        if header is not None:
            for k, v in header.items():
                if k.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
                    try:
                        out[k] = str(v)
                    except Exception:
                        continue
        fields = (("From", "sender"), ("To", "to"), ("Subject", "subject"))
        for name, value in ((n, getattr(msg, attr, None)) for n, attr in fields):
            if value and name not in out:
                out[name] = " ".join(str(value).split())
        body = getattr(msg, "body", None) or ""
        out.set_content(str(body))
        html = getattr(msg, "htmlBody", None)
        if html:
            out.add_alternative(html.decode("utf-8", "replace") if isinstance(html, bytes) else str(html),
                                subtype="html")
        for att in getattr(msg, "attachments", [])[:200]:
            data = getattr(att, "data", None)
            if isinstance(data, bytes):
                name = getattr(att, "longFilename", None) or getattr(att, "shortFilename", None) or "attachment"
                out.add_attachment(data, maintype="application", subtype="octet-stream", filename=str(name))
        return out.as_bytes()
    finally:
        msg.close()
