"""Phagocyte's exceptions: one root, so callers can catch ours apart from everyone else's.

    PhagocyteError
    ├── ConfigError          bad setting or environment value
    ├── InputError           a source cannot be read at all (missing, unreadable, over a limit)
    │   ├── WrongFormat      a reader is not the right one for this source (raised before the
    │   │                    first record only; after it, bad records are quarantined instead)
    │   └── LimitExceeded    a size, depth or decompression-ratio limit was hit
    ├── StoreError           the store is locked, damaged, or refused an operation
    └── QueryError           a user query is not read-only SQL or failed to run

A bad *record* is not an exception: readers report it to the quarantine and go on.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "LimitExceeded",
    "PhagocyteError",
    "QueryError",
    "StoreError",
    "WrongFormat",
]


class PhagocyteError(Exception):
    """Root of every error Phagocyte raises on purpose."""


class ConfigError(PhagocyteError):
    """A setting or environment value is invalid."""


class InputError(PhagocyteError):
    """A source cannot be read at all."""


class WrongFormat(InputError):
    """The chosen reader does not understand this source (only before its first record)."""


class LimitExceeded(InputError):
    """A size, depth or decompression-ratio limit was exceeded."""


class StoreError(PhagocyteError):
    """The store refused or failed an operation."""


class QueryError(PhagocyteError):
    """A user query is not allowed or failed."""
