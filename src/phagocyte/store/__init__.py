"""Where events live: the ``Store`` port and its embedded Parquet + DuckDB adapter."""

from phagocyte.store.base import IngestTransaction, SourceRecord, Store, StoreStats
from phagocyte.store.parquet import TABLE_SCHEMAS, ParquetStore

__all__ = ["TABLE_SCHEMAS", "IngestTransaction", "ParquetStore", "SourceRecord", "Store", "StoreStats"]
