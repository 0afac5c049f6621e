"""JSON records from a source, whether it holds JSON lines or one top-level JSON array.

Exports come both ways (Suricata's ``eve.json`` is JSON lines; many tools and samples write
``[{...}, {...}]``). Either way a record keeps its exact text (for ``event.original``) and the
physical line where it starts, so an alert can cite ``file:line``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from phagocyte.ingest.lines import iter_line_blocks
from phagocyte.ingest.reader import EXCERPT_BYTES, ReadContext

__all__ = ["JsonBlock", "first_json_object", "iter_json_blocks", "looks_like_json_array", "read_document"]

JsonBlock = tuple[list[str], list[int | None], list[int | None]]
"""(record texts, 1-based start lines, byte offsets)."""


@lru_cache(maxsize=4)
def first_json_object(head: bytes) -> dict[str, Any] | None:
    """The first record of a JSON-lines or JSON-array head, if it is a complete JSON object.

    Cached: every JSON reader sniffs the same head."""
    if head.startswith(codecs.BOM_UTF16_LE):
        text = head[2:].decode("utf-16-le", errors="ignore")
    elif head.startswith(codecs.BOM_UTF16_BE):
        text = head[2:].decode("utf-16-be", errors="ignore")
    else:
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    text = text.lstrip(" \t\r\n")
    try:
        if text.startswith("["):
            rest = text[1:].lstrip(" \t\r\n")
            obj = json.JSONDecoder().raw_decode(rest)[0] if rest.startswith("{") else None
        else:
            obj = json.loads(text.split("\n", 1)[0]) if text.startswith("{") else None
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def looks_like_json_array(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"[") and text[1:].lstrip(b" \t\r\n")[:1] in (b"{", b"]", b"")


def iter_json_blocks(ctx: ReadContext) -> Iterator[JsonBlock]:
    """Blocks of at most ``batch_rows`` record texts from a JSON-lines or JSON-array source."""
    if looks_like_json_array(ctx.source.head):
        yield from _array_blocks(ctx)
        return
    for block in iter_line_blocks(ctx, arrow=True):
        if block.array is not None:
            yield block.array, block.numbers, block.offsets  # type: ignore[misc]
        else:
            yield block.lines, list(block.numbers), list(block.offsets)


_WS = " \t\r\n"


def read_document(ctx: ReadContext) -> tuple[str, int] | None:
    """The whole source as text (bounded by ``max_json_document_bytes``), for formats that must be
    parsed as one document; returns (text, bytes of byte-order mark skipped), or None when the
    document is over the limit (quarantined). UTF-16 is transcoded; text that is not UTF-8 is
    read as Latin-1 and counted as a warning."""
    limit = ctx.limits.max_json_document_bytes
    with ctx.source.open() as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        ctx.bad(f"JSON document larger than {limit} bytes: not read", line=1, offset=0,
                raw=data[:EXCERPT_BYTES])
        return None
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            ctx.warn(f"source transcoded from {enc}; offsets count UTF-8 bytes")
            return data[2:].decode(enc, errors="replace"), 2
    skip = 3 if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8"), skip
    except UnicodeDecodeError:
        ctx.warn("document not UTF-8, decoded as Latin-1")
        return data[skip:].decode("latin-1"), skip


def _array_blocks(ctx: ReadContext) -> Iterator[JsonBlock]:
    """Split a top-level array into element texts without building Python objects for them.

    A record that shares its starting line with another (an array written on one line) gets no
    line number (its byte offset still says where it is): the line is the key of a JSON record's
    `event.id`, which must be its own. A block is not cut between two records of one line unless
    it has grown to twice `batch_rows` (then the line's records are all marked already)."""
    doc = read_document(ctx)
    if doc is None:
        return
    text = doc[0]
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, line_pos = 1 + text.count("\n", 0, pos), pos
    rows = ctx.limits.batch_rows
    raws: list[str] = []
    lines: list[int | None] = []
    offsets: list[int | None] = []
    n = len(text)
    ascii_only = text.isascii()
    byte_pos, byte_at = 0, 0  # byte offset of character position byte_at (non-ASCII texts)
    prev_line = 0  # the line the previous record started on
    while True:
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos >= n:
            ctx.bad("JSON array not closed (truncated document)", line=line, offset=pos)
            break
        if text[pos] == "]":
            break
        line += text.count("\n", line_pos, pos)
        line_pos = pos
        try:
            _, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            # The rest of the array cannot be split reliably: quarantine it as one record.
            why = getattr(exc, "msg", "nested too deeply")
            ctx.bad(f"not JSON: {why} (rest of the array not read)", line=line, offset=pos,
                    raw=text[pos:pos + EXCERPT_BYTES])
            break
        shared = line == prev_line
        if len(raws) >= rows and (not shared or len(raws) >= 2 * rows):
            yield raws, lines, offsets
            raws, lines, offsets = [], [], []
        if shared and lines:
            lines[-1] = None
        raws.append(text[pos:end])
        lines.append(None if shared else line)
        prev_line = line
        if not ascii_only:
            byte_pos += len(text[byte_at:pos].encode("utf-8"))
            byte_at = pos
        offsets.append(pos if ascii_only else byte_pos)
        pos = end
        while pos < n and text[pos] in _WS:
            pos += 1
        if pos < n and text[pos] == ",":
            pos += 1
        elif pos < n and text[pos] != "]":
            ctx.bad(f"expected ',' or ']' in JSON array at offset {pos} (rest not read)",
                    line=line + text.count("\n", line_pos, pos), offset=pos,
                    raw=text[pos:pos + EXCERPT_BYTES])
            break
    if raws:
        yield raws, lines, offsets
