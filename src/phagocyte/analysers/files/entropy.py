"""Shannon entropy of bytes: packed or encrypted sections sit above ~7.2 bits per byte."""

from __future__ import annotations

import numpy as np

__all__ = ["entropy"]


def entropy(data: bytes) -> float:
    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())
