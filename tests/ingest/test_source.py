"""Sources: folders, gzip, zip, tar.gz (nested), chosen by magic bytes, with bomb limits."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from phagocyte.config import Limits
from phagocyte.ingest.source import Source, SourceFailure, iter_sources

LINE = b'{"@timestamp": "2024-01-01T00:00:00Z", "message": "hello"}\n'


def _expand(paths: list[Path], limits: Limits | None = None) -> list[Source | SourceFailure]:
    return list(iter_sources([str(p) for p in paths], limits or Limits()))


def _read(s: Source) -> bytes:
    with s.open() as f:
        return f.read()


def test_plain_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.log").write_bytes(LINE)
    (tmp_path / "d" / "b.log").write_bytes(LINE * 2)
    got = _expand([tmp_path / "d"])
    assert [s.path for s in got] == [str(tmp_path / "d" / "a.log"), str(tmp_path / "d" / "b.log")]
    assert _read(got[1]) == LINE * 2
    assert got[0].id != got[1].id and len(got[0].id) == 64


def test_gzip_by_magic_not_name(tmp_path: Path) -> None:
    p = tmp_path / "no-extension"
    p.write_bytes(gzip.compress(LINE * 3))
    (s,) = _expand([p])
    assert isinstance(s, Source) and _read(s) == LINE * 3 and s.head == LINE * 3


def test_zip_members_and_nested_tar_gz(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tf:
        for name, data in (("x/one.json", LINE), ("x/two.json", LINE * 2)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    p = tmp_path / "bundle.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("logs/a.json", LINE)
        zf.writestr("logs/inner.tar.gz", inner.getvalue())
        zf.writestr("logs/c.json.gz", gzip.compress(LINE * 4))
    # A source is valid while the iteration stands on it (archives close behind it): read it there.
    got = []
    by_path = {}
    for s in iter_sources([str(p)], Limits()):
        assert isinstance(s, Source), s
        got.append(s)
        by_path[s.path] = _read(s)
    assert by_path == {
        f"{p}!logs/a.json": LINE,
        f"{p}!logs/inner.tar.gz!x/one.json": LINE,
        f"{p}!logs/inner.tar.gz!x/two.json": LINE * 2,
        f"{p}!logs/c.json": LINE * 4,
    }
    ids = [s.id for s in got]
    assert len(set(ids)) == 4
    assert ids == [s.id for s in _expand([p])]  # stable: the idempotency key


def test_gzip_bomb_is_stopped_by_ratio(tmp_path: Path) -> None:
    p = tmp_path / "bomb.gz"
    p.write_bytes(gzip.compress(b"\0" * (50 * 1024 * 1024)))
    limits = Limits(max_ratio=100.0, ratio_grace_bytes=1024 * 1024)
    (s,) = _expand([p], limits)
    assert isinstance(s, Source)
    with pytest.raises(Exception, match="ratio"):
        _read(s)


def test_zip_bomb_declared_size_is_refused_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "bomb.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.json", b"\0" * (20 * 1024 * 1024))
    got = _expand([p], Limits(max_ratio=50.0, ratio_grace_bytes=1024 * 1024))
    assert isinstance(got[0], SourceFailure) and "ratio" in got[0].reason


def test_decompressed_size_limit(tmp_path: Path) -> None:
    p = tmp_path / "big.gz"
    p.write_bytes(gzip.compress(LINE * 100_000))
    (s,) = _expand([p], Limits(max_decompressed_bytes=1024 * 1024))
    assert isinstance(s, Source)
    with pytest.raises(Exception, match="decompressed size"):
        _read(s)


def test_archive_depth_limit(tmp_path: Path) -> None:
    data = LINE
    for _ in range(5):
        data = gzip.compress(data)
    p = tmp_path / "deep.gz"
    p.write_bytes(data)
    got = _expand([p], Limits(max_archive_depth=3))
    assert isinstance(got[0], SourceFailure) and "nested deeper" in got[0].reason


def test_corrupt_archives_and_missing_paths_are_failures(tmp_path: Path) -> None:
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"PK\x03\x04" + b"\xff" * 100)
    bad_gz = tmp_path / "bad.gz"
    bad_gz.write_bytes(gzip.compress(LINE * 1000)[:60])
    got = _expand([bad_zip, bad_gz, tmp_path / "nope"])
    assert next(type(g).__name__ for g in got) == "SourceFailure"
    assert isinstance(got[-1], SourceFailure) and "no such file" in got[-1].reason
    # A truncated gzip is found when read, not when listed: the pipeline records that as a failure.


def test_encrypted_zip_member_is_a_failure(tmp_path: Path) -> None:
    p = tmp_path / "enc.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.json", LINE)
    raw = bytearray(p.read_bytes())
    raw[6] |= 0x1  # local header flag: encrypted
    cd = raw.find(b"PK\x01\x02")
    raw[cd + 8] |= 0x1  # central directory flag
    p.write_bytes(bytes(raw))
    (f,) = _expand([p])
    assert isinstance(f, SourceFailure) and "encrypted" in f.reason


def test_trailing_bytes_after_gzip_stream_are_tolerated_and_noted(tmp_path: Path) -> None:
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress(LINE * 3) + b"\n")
    (s,) = _expand([p])
    assert isinstance(s, Source)
    with s.open() as f:
        assert f.read() == LINE * 3
    assert s.notes == [f"{p}: ignored bytes after the end of the gzip stream"]
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(gzip.compress(LINE * 1000)[:-12])
    (c,) = _expand([truncated])  # cut inside the stream: data is missing, an error
    assert isinstance(c, SourceFailure) and "truncated" in c.reason


def test_macos_metadata_and_hidden_members_are_skipped(tmp_path: Path) -> None:
    p = tmp_path / "mac.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("logs/a.json", LINE)
        zf.writestr("__MACOSX/logs/._a.json", b"\x00\x05\x16\x07junk")
        zf.writestr("logs/.DS_Store", b"junk")
    assert [s.path for s in _expand([p])] == [f"{p}!logs/a.json"]


def test_file_facts_hash_the_complete_lines_apart(tmp_path: Path) -> None:
    import hashlib

    from phagocyte.ingest.source import file_facts

    p = tmp_path / "f.log"
    p.write_bytes(b"a\nbb\nccc")
    f = file_facts(p)
    assert (f.size, f.newlines, f.complete_size) == (8, 2, 5)
    assert f.sha256 == hashlib.sha256(b"a\nbb\nccc").hexdigest()
    assert f.complete_sha256 == hashlib.sha256(b"a\nbb\n").hexdigest()
    assert file_facts(p, limit=5).sha256 == f.complete_sha256


def test_file_facts_overlapped_hashing_matches_the_serial_one(tmp_path: Path, monkeypatch) -> None:
    """Big files are hashed on a helper thread, chunk by chunk: same facts as one plain pass."""
    import hashlib

    from phagocyte.ingest import source as source_mod

    data = b"".join(b"line %d %s\n" % (i, b"x" * (i % 37)) for i in range(3000)) + b"partial"
    p = tmp_path / "big.log"
    p.write_bytes(data)
    monkeypatch.setattr(source_mod, "_FACTS_CHUNK", 1000)  # many chunks, most with a newline inside
    complete = data[: data.rfind(b"\n") + 1]
    for overlap in (1, 1 << 60):  # threaded, serial
        monkeypatch.setattr(source_mod, "_OVERLAP_BYTES", overlap)
        f = source_mod.file_facts(p)
        assert (f.size, f.newlines, f.complete_size) == (len(data), 3000, len(complete))
        assert f.sha256 == hashlib.sha256(data).hexdigest()
        assert f.complete_sha256 == hashlib.sha256(complete).hexdigest()
        part = source_mod.file_facts(p, limit=12_345)
        assert part.size == 12_345 and part.sha256 == hashlib.sha256(data[:12_345]).hexdigest()
        assert part.newlines == data[:12_345].count(b"\n")
