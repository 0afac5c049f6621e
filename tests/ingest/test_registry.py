"""The reader registry: every reader module registers, names are unique, sniffers are safe."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import phagocyte.ingest.readers as readers_pkg
from phagocyte.ingest.reader import REGISTRY, Reader, get_reader


def test_every_reader_module_registers_a_reader() -> None:
    get_reader("evtx")
    modules = [m.name for m in pkgutil.iter_modules(readers_pkg.__path__)]
    assert modules
    registered = {cls.__module__.rsplit(".", 1)[-1] for cls in REGISTRY.values()}
    assert not [m for m in modules if m not in registered], "a reader module with no @register"


def test_readers_are_well_formed() -> None:
    get_reader("evtx")
    for name, cls in REGISTRY.items():
        assert issubclass(cls, Reader) and cls.name == name
        assert cls.description and len(cls.description) < 100
        importlib.import_module(cls.__module__)


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown format 'nope'; known: "):
        get_reader("nope")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.text(max_size=40))
def test_sniffers_never_raise_and_stay_in_range(head: bytes, name: str) -> None:
    get_reader("evtx")
    for cls in REGISTRY.values():
        score = cls().sniff(head, name)
        assert isinstance(score, int) and 0 <= score <= 100


def test_a_binary_signature_decides_without_the_text_sniffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An EVTX head goes to the EVTX reader without 64 KiB of binary being decoded by every text
    sniffer; a head without a signature is still offered to every reader."""
    from phagocyte.ingest.reader import choose
    from phagocyte.ingest.source import Source

    get_reader("evtx")
    asked: list[str] = []
    for cls in REGISTRY.values():
        if cls.magic is None:
            def sniff(self: Reader, head: bytes, path: str, _orig=cls.sniff) -> int:
                asked.append(self.name)
                return _orig(self, head, path)
            monkeypatch.setattr(cls, "sniff", sniff)

    def src(head: bytes) -> Source:
        return Source(path="x", id="0" * 64, opener=lambda: None, head=head)  # type: ignore[arg-type,return-value]

    reader, score = choose(src(b"ElfFile\x00" + b"\x00" * 4000))
    assert reader is not None and reader.name == "evtx" and score == 100 and asked == []
    reader, _ = choose(src(b'{"timestamp":"2024-01-01T00:00:00Z","event_type":"alert"}\n'))
    assert reader is not None and reader.name != "evtx"
    assert sorted(asked) == sorted(n for n, c in REGISTRY.items() if c.magic is None)
    assert all(not cls.magic or not cls().sniff(b"not " + cls.magic, "x") for cls in REGISTRY.values())
