"""Line splitting: physical line numbers, encodings, and lines over the length limit."""

from __future__ import annotations

import io

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phagocyte.config import Limits
from phagocyte.ingest.lines import iter_line_blocks
from phagocyte.ingest.reader import ReadContext
from phagocyte.ingest.source import Source


def _ctx(data: bytes, **limits: int) -> ReadContext:
    src = Source(path="mem", id="0" * 64, opener=lambda: io.BytesIO(data), head=data[:65536])
    return ReadContext(src, Limits(**limits))


def _lines(data: bytes, **limits: int) -> tuple[list[tuple[int, int, str]], ReadContext]:
    ctx = _ctx(data, **limits)
    out = []
    for b in iter_line_blocks(ctx, block_rows=3):
        out += list(zip(b.numbers, b.offsets, b.lines, strict=True))
    return out, ctx


def test_numbers_count_empty_lines_and_crlf() -> None:
    got, _ = _lines(b"a\r\n\r\nb\n\n\nc")
    assert got == [(1, 0, "a"), (3, 5, "b"), (6, 9, "c")]


def test_utf8_bom_is_skipped_and_utf16_is_transcoded() -> None:
    got, _ = _lines(b"\xef\xbb\xbfx\ny\n")
    assert [g[2] for g in got] == ["x", "y"] and got[0][1] == 3
    got, ctx = _lines("héllo\nwörld\n".encode("utf-16"))
    assert [g[2] for g in got] == ["héllo", "wörld"]
    assert any("utf-16" in w for w in ctx.warnings)


def test_latin1_line_is_kept_and_counted() -> None:
    got, ctx = _lines("ok\ncaf\xe9\n".encode("latin-1"))
    assert [g[2] for g in got] == ["ok", "café"]
    assert ctx.warnings == {"lines not UTF-8, decoded as Latin-1": 1}


def test_overlong_lines_are_quarantined_without_holding_them() -> None:
    big = b"x" * 3_000_000  # spans several 1 MiB reads
    got, ctx = _lines(b"first\n" + big + b"\nlast\n" + big, max_record_bytes=1000)
    assert [(n, t) for n, _, t in got] == [(1, "first"), (3, "last")]
    assert [(b.line, b.offset) for b in ctx.bad_records] == [(2, 6), (4, 6 + len(big) + 6)]
    assert "3000000 bytes" in ctx.bad_records[0].reason
    assert len(ctx.bad_records[0].excerpt or "") <= 4096


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
       st.sampled_from([b"\n", b"\r\n"]))
def test_any_bytes_every_non_blank_line_once(lines: list[bytes], sep: bytes) -> None:
    data = sep.join(lines)
    assume(not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")))  # a byte-order mark is not a line
    got, ctx = _lines(data, max_record_bytes=30)
    def stored_len(i: int, raw: bytes) -> int:  # a CRLF line carries its CR until it is stripped
        return len(raw) + (1 if sep == b"\r\n" and i < len(lines) - 1 else 0)

    expected = [i + 1 for i, raw in enumerate(lines) if raw.strip() and stored_len(i, raw) <= 30]
    assert [n for n, _, _ in got] == expected
    assert len(got) + len(ctx.bad_records) == sum(1 for raw in lines if raw.strip() or len(raw) > 30)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["", " ", "a", "{\"k\": 1}", "x" * 50, "é", "tab\there"]), max_size=400),
       st.integers(1, 7))
def test_fast_and_slow_paths_agree_with_a_naive_split(lines: list[str], rows: int) -> None:
    data = "\n".join(lines).encode("utf-8")
    ctx = _ctx(data, max_record_bytes=40)
    got = [(n, o, t) for b in iter_line_blocks(ctx, block_rows=rows)
           for n, o, t in zip(b.numbers, b.offsets, b.lines, strict=True)]
    for b in iter_line_blocks(_ctx(data, max_record_bytes=40), block_rows=rows):
        assert 0 < len(b) <= rows
    expected, off = [], 0
    for i, t in enumerate(lines):
        raw = t.encode("utf-8")
        if t.strip() and len(raw) <= 40:
            expected.append((i + 1, off, t))
        off += len(raw) + 1
    assert got == expected
    assert [b.line for b in ctx.bad_records] == [i + 1 for i, t in enumerate(lines) if len(t.encode()) > 40]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["", " ", "\t", "a", '{"k": 1}', "x" * 50, "é", "caf\udce9", "r\r"]), max_size=300),
       st.integers(1, 500))
def test_arrow_blocks_match_the_list_blocks(lines: list[str], rows: int) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    ctx_a, ctx_l = _ctx(data, max_record_bytes=40), _ctx(data, max_record_bytes=40)
    got = []
    for b in iter_line_blocks(ctx_a, block_rows=rows, arrow=True):
        texts = [t.rstrip("\r\n") for t in b.array.to_pylist()] if b.array is not None else b.lines
        nums = b.numbers.to_pylist() if b.array is not None else b.numbers
        offs = b.offsets.to_pylist() if b.array is not None else b.offsets
        got += list(zip(nums, offs, texts, strict=True))
    want = [(n, o, t.rstrip("\r")) for b in iter_line_blocks(ctx_l, block_rows=rows)
            for n, o, t in zip(b.numbers, b.offsets, b.lines, strict=True)]
    assert got == want
    assert [(b.line, b.reason) for b in ctx_a.bad_records] == [(b.line, b.reason) for b in ctx_l.bad_records]


def test_arrow_blocks_number_lines_across_chunks(monkeypatch) -> None:
    """Line numbers carry over from one read chunk to the next (blank lines counted, not stored)."""
    from phagocyte.ingest import lines as lines_mod

    monkeypatch.setattr(lines_mod, "_CHUNK", 64)
    texts = [("" if i % 7 == 3 else " " if i % 11 == 5 else f'{{"n": {i}}}') for i in range(500)]
    data = "\n".join(texts).encode() + b"\n"
    got = []
    for b in iter_line_blocks(_ctx(data), block_rows=50, arrow=True):
        assert b.array is not None
        got += list(zip(b.numbers.to_pylist(), [t.rstrip("\n") for t in b.array.to_pylist()], strict=True))
    assert got == [(i + 1, t) for i, t in enumerate(texts) if t.strip()]
