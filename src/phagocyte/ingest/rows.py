"""Building an event table from Python dicts, for readers that parse records in Python.

Types come from the event schema, never from inference, so one odd value cannot change a
column's type: a value that does not fit its field is an error in the reader, caught by its tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from phagocyte.schema import FIELD_TYPES

__all__ = ["rows_to_table"]


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows keyed by event-schema field names -> an Arrow table of just those columns."""
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names[key] = None
    unknown = set(names) - FIELD_TYPES.keys()
    if unknown:
        raise ValueError(f"fields not in the event schema: {sorted(unknown)}")
    arrays = {name: pa.array([row.get(name) for row in rows], FIELD_TYPES[name]) for name in names}
    if not arrays:
        return pa.table({"log.file.line": pa.array([None] * len(rows), pa.int64())})
    return pa.table(arrays)
