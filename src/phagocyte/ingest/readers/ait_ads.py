"""The AIT Alert Data Set (AIT-ADS) CSV: one Wazuh, Suricata or AMiner alert per row.

``time,name,ip,host,short,time_label,event_label`` (time in epoch seconds). The files hold over a
million rows, so a block is parsed column-wise in Arrow: rows without a quote character are split
with one ``split_pattern`` call; only a block with quotes goes through the ``csv`` module (a quoted
field may hold commas, and newlines: such a record is joined from its physical lines and cited by
its first). The ground-truth labels are kept only as tags (``time_label:<v>``, ``event_label:<v>``)
so that evaluation can read them back; they are not used for anything else.
"""

from __future__ import annotations

import codecs
import csv
from collections import deque
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from phagocyte.ingest.lines import iter_line_blocks
from phagocyte.ingest.reader import ReadContext, Reader, register

COLUMNS = ("time", "name", "ip", "host", "short", "time_label", "event_label")
HEADER = ",".join(COLUMNS).encode()
_VENDOR = {"wazuh": "Wazuh", "suricata": "OISF", "aminer": "AIT"}
_MAX_RECORD_LINES = 100
"""A quoted field left open over this many lines is a stray quote, not a long record."""
_EPOCH = r"^\d{1,12}(\.\d{1,9})?$"

_Line = tuple[str, int, int]
"""A physical line: text, 1-based number, byte offset."""
_Rows = tuple[list[list[str]], list[int], list[int], list[str]]
"""Parsed rows (fields in file order), their first line, byte offset and verbatim text."""


@register
class AitAdsReader(Reader):
    name = "ait_ads"
    description = "AIT Alert Data Set CSV (time,name,ip,host,short,time_label,event_label)"

    def sniff(self, head: bytes, path: str) -> int:
        for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
            if head.startswith(bom):  # the line splitter transcodes UTF-16 sources
                head = head[2 : 2 + 2 * len(HEADER) + 8].decode(enc, "replace").encode()
        first = head.removeprefix(codecs.BOM_UTF8).split(b"\n", 1)[0].rstrip(b"\r")
        return 100 if first == HEADER else 0

    def read(self, ctx: ReadContext) -> Iterator[pa.Table]:
        order: list[int] | None = None  # position of each of COLUMNS in the file's rows
        pending: list[_Line] = []  # the physical lines of a record whose quoted field is still open
        for block in iter_line_blocks(ctx):
            lines, numbers, offsets = block.lines, block.numbers, block.offsets
            if order is None:
                order = self._header(ctx, lines[0])
                if order is not None:
                    lines, numbers, offsets = lines[1:], numbers[1:], offsets[1:]
                else:
                    order = list(range(len(COLUMNS)))
                if not lines:
                    continue
            arr = pa.array(lines, pa.string())
            if not pending and not pc.any(pc.match_substring(arr, '"')).as_py():
                table = self._fast(ctx, arr, numbers, offsets, order)
            else:
                work = deque(pending)
                work.extend(zip(lines, numbers, offsets, strict=True))
                rows, pending = self._slow(ctx, work, final=False)
                table = self._table(ctx, *rows, order)
            if table.num_rows:
                yield table
        if pending:
            rows, _ = self._slow(ctx, deque(pending), final=True)
            table = self._table(ctx, *rows, order or list(range(len(COLUMNS))))
            if table.num_rows:
                yield table

    @staticmethod
    def _header(ctx: ReadContext, first: str) -> list[int] | None:
        try:
            names = [n.strip().lower() for n in next(csv.reader([first]), [])]
        except csv.Error:
            names = []
        if sorted(names) == sorted(COLUMNS):
            return [names.index(c) for c in COLUMNS]
        ctx.warn("no AIT-ADS header line; columns read in the standard order")
        return None

    def _fast(self, ctx: ReadContext, arr: pa.Array, numbers: list[int], offsets: list[int],
              order: list[int]) -> pa.Table:
        """No quotes in the block: a row is good when it has exactly six commas."""
        nums = pa.array(numbers, pa.int64())
        offs = pa.array(offsets, pa.int64())
        good = pc.equal(pc.count_substring(arr, ","), len(COLUMNS) - 1)
        if not pc.all(good).as_py():
            for i in pc.indices_nonzero(pc.invert(good)).to_pylist():
                n = arr[i].as_py().count(",") + 1
                ctx.bad(f"CSV: {n} fields, expected {len(COLUMNS)}", line=numbers[i], offset=offsets[i],
                        raw=arr[i].as_py())
            arr, nums, offs = arr.filter(good), nums.filter(good), offs.filter(good)
        parts = pc.split_pattern(arr, ",")
        cols = [pc.list_element(parts, i) for i in range(len(COLUMNS))]
        return self._build(ctx, cols, nums, offs, arr, order)

    @staticmethod
    def _slow(ctx: ReadContext, work: deque[_Line], *, final: bool) -> tuple[_Rows, list[_Line]]:
        """Rows of lines with quotes, through the csv module. A line with an unbalanced quote opens
        a record that may span lines; if it never closes, or closes into a row that is not one
        alert, only its first line is quarantined and the lines after it are read again."""
        rows: list[list[str]] = []
        out_lines: list[int] = []
        out_offs: list[int] = []
        texts: list[str] = []
        while work:
            text, line, off = work.popleft()
            used = [(text, line, off)]
            if text.count('"') % 2:
                while work and len(used) < _MAX_RECORD_LINES:
                    used.append(work.popleft())
                    if used[-1][0].count('"') % 2:
                        break
                else:
                    if not final and len(used) < _MAX_RECORD_LINES:  # may close in the next block
                        return (rows, out_lines, out_offs, texts), used
                    ctx.bad("CSV: quoted field not closed", line=line, offset=off, raw=text)
                    work.extendleft(reversed(used[1:]))
                    continue
                text = "\n".join(t for t, _, _ in used)
            try:
                fields = next(csv.reader([text], strict=True)) if '"' in text else text.split(",")
            except csv.Error as exc:
                fields, reason = [], f"CSV: {exc}"
            else:
                reason = f"CSV: {len(fields)} fields, expected {len(COLUMNS)}"
            if len(fields) != len(COLUMNS):
                ctx.bad(reason, line=line, offset=off, raw=used[0][0])
                work.extendleft(reversed(used[1:]))
                continue
            rows.append(fields)
            out_lines.append(line)
            out_offs.append(off)
            texts.append(text)
        return (rows, out_lines, out_offs, texts), []

    def _table(self, ctx: ReadContext, rows: list[list[str]], numbers: list[int], offsets: list[int],
               texts: list[str], order: list[int]) -> pa.Table:
        cols = [pa.array(list(c), pa.string()) for c in zip(*rows, strict=True)] if rows else \
            [pa.array([], pa.string()) for _ in COLUMNS]
        return self._build(ctx, cols, pa.array(numbers, pa.int64()), pa.array(offsets, pa.int64()),
                           pa.array(texts, pa.string()), order)

    @staticmethod
    def _build(ctx: ReadContext, cols: list[pa.Array], nums: pa.Array, offs: pa.Array, original: pa.Array,
               order: list[int]) -> pa.Table:
        t, name, ip, host, short, tl, el = (cols[i] for i in order)
        t = pc.utf8_trim_whitespace(t)
        ok = pc.fill_null(pc.match_substring_regex(t, _EPOCH), False)
        if not pc.all(ok).as_py():
            for i in pc.indices_nonzero(pc.invert(ok)).to_pylist():
                ctx.bad(f"AIT-ADS: time {t[i].as_py()!r} is not epoch seconds", line=nums[i].as_py(),
                        offset=offs[i].as_py(), raw=original[i].as_py())
            t, name, ip, host, short, tl, el, nums, offs, original = (
                a.filter(ok) for a in (t, name, ip, host, short, tl, el, nums, offs, original))
        n = len(t)
        micros = pc.cast(pc.round(pc.multiply(pc.cast(t, pa.float64()), 1e6)), pa.int64())
        product = pc.utf8_trim_whitespace(pc.struct_field(pc.extract_regex(name, r"^(?P<p>[^:]*):"), [0]))
        product = pc.if_else(pc.equal(product, ""), pa.scalar(None, pa.string()), product)
        ip, host = _nullify_empty(ip), _nullify_empty(host)
        return pa.table({
            "@timestamp": pc.cast(micros, pa.timestamp("us", tz="UTC")),
            "event.kind": _const("alert", n),
            "event.category": _const(["intrusion_detection"], n),
            "event.type": _const(["info"], n),
            "event.dataset": _const("ait_ads.alerts", n),
            "event.module": _const("ait_ads", n),
            "event.original": original,
            "message": name,
            "log.file.line": nums,
            "log.offset": offs,
            "host.name": host,
            "host.ip": ip,
            "rule.id": short,
            "rule.name": name,
            "observer.product": product,
            "observer.vendor": _vendor(product),
            "related.ip": pa.ListArray.from_arrays(_range(n + 1, 1, pa.int32()), ip, mask=pc.is_null(ip)),
            "tags": _pairs(_prefixed("time_label:", tl), _prefixed("event_label:", el)),
        })


_CACHE: dict[object, pa.Array] = {}


def _cached(key: object, n: int, make: object) -> pa.Array:
    """A slice of a cached array of at least `n` rows (slices are free: constant columns and index
    ranges cost nothing per batch)."""
    arr = _CACHE.get(key)
    if arr is None or len(arr) < n:
        arr = _CACHE[key] = make(max(n, 65536))  # type: ignore[operator]
    return arr.slice(0, n)


def _const(value: str | list[str], n: int) -> pa.Array:
    if isinstance(value, list):
        return _cached(("list", *value), n, lambda m: pa.ListArray.from_arrays(
            _range(m + 1, 1, pa.int32()), _const(value[0], m)))
    return _cached(value, n, lambda m: pa.array([value] * m, pa.string()))


def _range(n: int, step: int = 1, typ: pa.DataType = pa.int64()) -> pa.Array:
    return _cached(("range", step, str(typ)), n, lambda m: pa.array(range(0, m * step, step), typ))


def _nullify_empty(a: pa.Array) -> pa.Array:
    a = pc.utf8_trim_whitespace(a)
    return pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)


def _prefixed(prefix: str, a: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), a, "")


def _pairs(a: pa.Array, b: pa.Array) -> pa.Array:
    """[[a0, b0], [a1, b1], ...] without a Python loop over the rows."""
    n = len(a)
    j = _range(2 * n)
    idx = pc.add(pc.shift_right(j, 1), pc.multiply(pc.bit_wise_and(j, 1), n))
    values = pa.concat_arrays([a, b]).take(idx)
    return pa.ListArray.from_arrays(_range(n + 1, 2, pa.int32()), values)


def _vendor(product: pa.Array) -> pa.Array:
    enc = pc.dictionary_encode(product)
    names = [_VENDOR.get((p or "").lower()) for p in enc.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(enc.indices, pa.array(names, pa.string())).cast(pa.string())
