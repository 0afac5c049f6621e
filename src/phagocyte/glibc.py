"""glibc's allocator, tuned where a workload measured it (`mallopt`, `malloc_trim` through ctypes).

One place decides whether the C library is glibc: on others (musl, whose `mallopt` does nothing;
macOS) every call here does nothing and says so."""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

__all__ = ["M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "glibc", "mallopt", "trim"]

M_TRIM_THRESHOLD = -1
"""`mallopt` parameter numbers (malloc.h)."""
M_MMAP_THRESHOLD = -3


@functools.cache
def glibc() -> Any | None:
    """The process's C library when it is glibc, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version, libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc has all three)
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def mallopt(param: int, value: int) -> bool:
    """Set one allocator parameter for the process; whether it was set."""
    libc = glibc()
    return libc is not None and bool(libc.mallopt(param, value))


def trim() -> None:
    """Hand the heap's free memory back to the kernel."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
