"""The reader contract and the registry that picks a reader by sniffing a source's content.

A reader is small: a ``name``, a cheap ``sniff`` that scores the first 64 KiB of a source, and
``read``, which yields Arrow tables whose columns are event-schema fields (see
``phagocyte.schema``). Like plaso's parsers, a reader may raise ``WrongFormat`` only before its
first record; after that, every bad record goes to ``ctx.bad(...)`` (counted, quarantined with its
position and the reason) and reading goes on.
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from phagocyte.config import Limits
from phagocyte.ingest.source import Source

if TYPE_CHECKING:
    from phagocyte.ingest.jsonmap import JsonRecords

__all__ = ["REGISTRY", "BadRecord", "ReadContext", "Reader", "choose", "get_reader", "register"]

EXCERPT_BYTES = 4096
"""How much of a bad record the quarantine keeps (the position points at the rest)."""


@dataclass
class BadRecord:
    """A record that could not be read, with where it was and why."""

    reason: str
    line: int | None = None
    offset: int | None = None
    record: int | None = None
    excerpt: str | None = None
    excerpt_encoding: str = "utf-8"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class ReadContext:
    """What a reader gets besides the source: the limits and the quarantine."""

    source: Source
    limits: Limits
    bad_records: list[BadRecord] = field(default_factory=list)
    bad_count: int = 0
    warnings: dict[str, int] = field(default_factory=dict)

    def bad(
        self,
        reason: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        record: int | None = None,
        raw: bytes | str | None = None,
    ) -> None:
        """Quarantine one bad record; reading goes on."""
        excerpt: str | None = None
        enc = "utf-8"
        if isinstance(raw, str):
            excerpt = raw[:EXCERPT_BYTES]
        elif isinstance(raw, bytes | bytearray | memoryview):
            chunk = bytes(raw[:EXCERPT_BYTES])
            try:
                excerpt = chunk.decode("utf-8")
            except UnicodeDecodeError:
                excerpt = base64.b64encode(chunk).decode("ascii")
                enc = "base64"
        self.bad_count += 1
        self.bad_records.append(BadRecord(reason, line, offset, record, excerpt, enc))

    def warn(self, what: str, n: int = 1) -> None:
        """Count a recoverable oddity (e.g. a line decoded as Latin-1); the record is kept."""
        self.warnings[what] = self.warnings.get(what, 0) + n

    def drain_bad(self) -> list[BadRecord]:
        out, self.bad_records = self.bad_records, []
        return out


class Reader(ABC):
    """One input format."""

    name: ClassVar[str]
    """Short name, used by ``--format`` and stored in the manifest."""
    resumable: ClassVar[bool] = False
    """True when every record is one line read through ``iter_line_blocks``: a grown file can
    then be read from where the last ingest stopped (see ``pipeline``)."""
    description: ClassVar[str]
    """One line for ``phago formats``."""
    magic: ClassVar[bytes | None] = None
    """A binary format's signature: a head that starts with it is this reader's, without asking
    the other readers (their text sniffers decoding 64 KiB of binary cost ~0.5 ms per file, a lot
    for a folder of hundreds of small EVTX files). No text format may start with these bytes."""

    @abstractmethod
    def sniff(self, head: bytes, path: str) -> int:
        """Score 0-100 for how sure this reader is that it can read a source with this head."""

    @abstractmethod
    def read(self, ctx: ReadContext) -> Iterator[pa.Table | JsonRecords]:
        """Yield batches of at most ``ctx.limits.batch_rows`` records: tables of event-schema
        columns, or raw JSON records with the mapping that normalises them (``jsonmap``)."""


REGISTRY: dict[str, type[Reader]] = {}


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator: add a reader to the registry (its module is imported by ``readers``)."""
    if cls.name in REGISTRY:
        raise ValueError(f"reader name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_reader(name: str) -> Reader:
    import phagocyte.ingest.readers  # noqa: F401  (registers every reader)

    try:
        return REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def choose(source: Source) -> tuple[Reader | None, int]:
    """The reader with the highest sniff score for this source, or None if all score 0."""
    import phagocyte.ingest.readers  # noqa: F401

    for cls in REGISTRY.values():
        if cls.magic and source.head.startswith(cls.magic):
            return cls(), 100
    best: Reader | None = None
    best_score = 0
    for cls in REGISTRY.values():
        reader = cls()
        try:
            score = reader.sniff(source.head, source.path)
        except Exception:  # a sniffer must never break ingest; treat as "not mine"
            score = 0
        if score > best_score:
            best, best_score = reader, score
    return best, best_score
