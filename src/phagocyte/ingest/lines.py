"""Splitting a byte stream into numbered text lines, bounded in length, whatever the encoding.

Text readers (JSON lines, syslog, CEF, Zeek, CSV) all need the same care: physical line numbers
that match what an analyst sees in an editor (so that an alert can cite ``file:line``), a UTF-8 or
UTF-16 byte-order mark honoured, a line that is not UTF-8 still kept (decoded as Latin-1 and
counted as a warning), and a line longer than ``Limits.max_record_bytes`` quarantined without ever
being held in memory whole.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from phagocyte.ingest.reader import EXCERPT_BYTES, ReadContext

__all__ = ["LineBlock", "decode_line", "iter_line_blocks"]

_CHUNK = 1024 * 1024
_BLANK = " \t\n\r\x0b\x0c"  # what bytes.strip() strips: a line of only these is blank


@dataclass
class LineBlock:
    """Consecutive non-empty lines: text, 1-based physical line number, byte offset.

    With ``arrow=True`` a block may instead hold ``array``: the lines as an Arrow string array
    that points into the bytes read (no Python string per line), with ``numbers`` and
    ``offsets`` as Arrow int64 arrays."""

    lines: list[str] = field(default_factory=list)
    numbers: list[int] | pa.Int64Array = field(default_factory=list)
    offsets: list[int] | pa.Int64Array = field(default_factory=list)
    array: pa.StringArray | None = None
    physical: int = 0
    """Arrow blocks: the physical lines (newlines) the block covers, blank ones included."""

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.lines)


_WS_BYTES = np.zeros(256, dtype=bool)
_WS_BYTES[[9, 10, 11, 12, 13, 32]] = True


def _arrow_lines(data: bytes, first_line: int, first_offset: int, max_len: int) -> LineBlock | None:
    """`data` (complete lines, each ending with a newline) as one Arrow block without copying
    the text, or None when a line is over the limit or the bytes are not UTF-8 (the per-line
    path handles those). Each string keeps its line end: JSON parsers ignore it, and the
    original text is trimmed where it is stored."""
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)  # the newline of every line
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    if int((ends - starts).max()) > max_len:
        return None
    bounds = np.empty(len(ends) + 1, dtype=np.int32)
    bounds[0] = 0
    bounds[1:] = ends + 1
    strings = pa.StringArray.from_buffers(len(ends), pa.py_buffer(bounds), pa.py_buffer(data))
    if not data.isascii():
        try:
            strings.validate(full=True)
        except pa.ArrowInvalid:
            return None
    # A blank line (empty or only whitespace) starts with a whitespace byte (its newline at the
    # least): look only at those, not at every byte.
    keep = np.ones(len(ends), dtype=bool)
    for i in np.flatnonzero(_WS_BYTES[arr[starts]]):
        keep[i] = bool(data[starts[i]:ends[i]].strip())
    numbers = np.arange(first_line, first_line + len(ends), dtype=np.int64)
    offsets = starts.astype(np.int64) + first_offset
    if not keep.all():
        mask = pa.array(keep)
        return LineBlock(array=strings.filter(mask), numbers=pa.array(numbers[keep]),
                         offsets=pa.array(offsets[keep]), physical=len(ends))
    return LineBlock(array=strings, numbers=pa.array(numbers), offsets=pa.array(offsets), physical=len(ends))


def _fast_lines(buf: bytes, last: int, max_len: int) -> list[str] | None:
    """The complete lines of `buf` as text when they are ASCII, without CR and none too long."""
    head = buf[:last]
    if not head.isascii() or b"\r" in head:
        return None
    texts = head.decode("ascii").split("\n")
    if last > max_len and max(map(len, texts)) > max_len:
        return None
    return texts


def decode_line(raw: bytes, ctx: ReadContext) -> str:
    """UTF-8, or Latin-1 for a line that is not (kept, and counted as a warning)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        ctx.warn("lines not UTF-8, decoded as Latin-1")
        return raw.decode("latin-1")


class _Utf16ToUtf8:
    """Wrap a UTF-16 stream (after its BOM) so that it reads as UTF-8 bytes."""

    def __init__(self, inner: BinaryIO, encoding: str) -> None:
        self._inner = inner
        self._dec = codecs.getincrementaldecoder(encoding)(errors="replace")

    def read(self, n: int) -> bytes:
        while True:
            data = self._inner.read(n)
            text = self._dec.decode(data, final=not data)
            if text or not data:
                return text.encode("utf-8")


def _with_encoding(stream: BinaryIO, ctx: ReadContext) -> tuple[object, int]:
    """Detect a byte-order mark; return a UTF-8 byte reader and the BOM length skipped."""
    first = stream.read(4)
    if first.startswith(codecs.BOM_UTF8):
        return _Prepend(first[3:], stream), 3
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if first.startswith(bom):
            ctx.warn(f"source transcoded from {enc}; offsets count UTF-8 bytes")
            return _Utf16ToUtf8(_Prepend(first[2:], stream), enc), 2  # type: ignore[arg-type]
    return _Prepend(first, stream), 0


class _Prepend:
    def __init__(self, prefix: bytes, inner: BinaryIO) -> None:
        self._prefix = prefix
        self._inner = inner

    def read(self, n: int) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix, b""
            return out
        return self._inner.read(n)


def iter_line_blocks(
    ctx: ReadContext,
    stream: BinaryIO | None = None,
    *,
    block_rows: int | None = None,
    start_line: int | None = None,
    arrow: bool = False,
) -> Iterator[LineBlock]:
    """Yield blocks of at most `block_rows` non-empty lines from the source (or `stream`).

    With `arrow`, most blocks come as Arrow arrays (see ``LineBlock``), in input order."""
    rows = block_rows or ctx.limits.batch_rows
    max_len = ctx.limits.max_record_bytes
    own = stream is None
    raw_stream = ctx.source.open() if stream is None else stream
    try:
        tail = stream is None and ctx.source.start_offset > 0
        reader: object
        if tail:  # a grown file: only what was appended since the last read
            raw_stream.seek(ctx.source.start_offset)
            reader, offset = _Prepend(b"", raw_stream), ctx.source.start_offset
        else:
            reader, offset = _with_encoding(raw_stream, ctx)
        line_no = start_line if start_line is not None else (ctx.source.start_line if tail else 1)
        buf = b""
        buf_off = offset  # byte offset of buf[0]
        # A line over the limit is skipped chunk by chunk: (line, offset, excerpt, bytes so far).
        overlong: tuple[int, int, bytes, int] | None = None
        block = LineBlock()
        while True:
            chunk = reader.read(_CHUNK)  # type: ignore[attr-defined]
            if not chunk:
                break
            if overlong is not None:
                ln, off, excerpt, seen = overlong
                nl = chunk.find(b"\n")
                if nl < 0:
                    overlong = (ln, off, excerpt, seen + len(chunk))
                    continue
                ctx.bad(f"line longer than {max_len} bytes ({seen + nl} bytes)", line=ln,
                        offset=off, raw=excerpt)
                overlong = None
                line_no += 1
                buf_off = off + seen + nl + 1
                buf = chunk[nl + 1 :]
            else:
                buf += chunk
            last = buf.rfind(b"\n")
            fast = _arrow_lines(buf[: last + 1], line_no, buf_off, max_len) if arrow and last >= 0 else None
            if fast is not None:
                if block.lines:
                    yield block
                    block = LineBlock()
                if len(fast):
                    yield fast
                line_no += fast.physical  # counted once, by _arrow_lines
                buf_off += last + 1
                buf = buf[last + 1 :]
                if len(buf) > max_len:
                    overlong = (line_no, buf_off, buf[:EXCERPT_BYTES], len(buf))
                    buf = b""
                continue
            texts = _fast_lines(buf, last, max_len) if last >= 0 else None
            if texts is not None:
                # ASCII without CR and no line over the limit (the common case): split and
                # number in bulk instead of line by line.
                starts = list(accumulate((len(t) + 1 for t in texts[:-1]), initial=buf_off))
                keep = [i for i, t in enumerate(texts) if t.strip(_BLANK)]
                if len(keep) == len(texts):
                    block.lines += texts
                    block.numbers += list(range(line_no, line_no + len(texts)))  # type: ignore[operator]
                    block.offsets += starts
                else:
                    block.lines += [texts[i] for i in keep]
                    block.numbers += [line_no + i for i in keep]
                    block.offsets += [starts[i] for i in keep]
                line_no += len(texts)
                buf_off += last + 1
                buf = buf[last + 1 :]
                while len(block.lines) >= rows:
                    yield LineBlock(block.lines[:rows], block.numbers[:rows], block.offsets[:rows])
                    block = LineBlock(block.lines[rows:], block.numbers[rows:], block.offsets[rows:])
                parts = []
            else:
                parts = buf.split(b"\n")
                buf = parts.pop()
            for part in parts:
                n = len(part)
                if n > max_len:
                    ctx.bad(f"line longer than {max_len} bytes ({n} bytes)", line=line_no,
                            offset=buf_off, raw=part[:EXCERPT_BYTES])
                elif part.strip():
                    text = decode_line(part[:-1] if part.endswith(b"\r") else part, ctx)
                    block.lines.append(text)
                    block.numbers.append(line_no)
                    block.offsets.append(buf_off)
                    if len(block.lines) >= rows:
                        yield block
                        block = LineBlock()
                line_no += 1
                buf_off += n + 1
            if len(buf) > max_len:
                overlong = (line_no, buf_off, buf[:EXCERPT_BYTES], len(buf))
                buf = b""
        if overlong is not None:
            ln, off, excerpt, seen = overlong
            ctx.bad(f"line longer than {max_len} bytes ({seen} bytes, source ends inside it)",
                    line=ln, offset=off, raw=excerpt)
        elif buf.strip():
            block.lines.append(decode_line(buf[:-1] if buf.endswith(b"\r") else buf, ctx))
            block.numbers.append(line_no)
            block.offsets.append(buf_off)
        if block.lines:
            yield block
    finally:
        if own:
            raw_stream.close()

