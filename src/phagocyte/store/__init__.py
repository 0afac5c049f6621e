"""Where events live: the ``Store`` port and its embedded Parquet + DuckDB adapter.

The adapter is imported when first named (PEP 562): importing ``pyarrow.parquet`` costs ~10 ms and
~6 MB of a command's start, and `phago hunt` without a home, which reads through the port only
(``store.base``), never needs it.
"""

from typing import Any

from phagocyte.store.base import IngestTransaction, SourceRecord, Store, StoreStats

__all__ = ["TABLE_SCHEMAS", "IngestTransaction", "ParquetStore", "SourceRecord", "Store", "StoreStats"]


def __getattr__(name: str) -> Any:
    if name in ("ParquetStore", "TABLE_SCHEMAS"):
        from phagocyte.store import parquet

        return getattr(parquet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
