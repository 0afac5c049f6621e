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
