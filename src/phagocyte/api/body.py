"""Reading request bodies with a hard size limit (chunked uploads included)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request, status

__all__ = ["ndjson", "read_limited"]


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def ndjson(body: bytes, *, max_lines: int) -> list[dict[str, Any]]:
    """Parse NDJSON objects; the first bad line is reported with its number (nothing is half-accepted)."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"line {n}: not JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"line {n}: not a JSON object")
        out.append(obj)
        if len(out) > max_lines:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"more than {max_lines} lines")
    return out
