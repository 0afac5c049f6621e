"""Bounds on what analysing one input may cost.

Why one object: every decoding layer (base64, gzip, char arrays, eval unwrapping) can blow up
size or recurse without end on hostile input; each layer checks the same budget, and when one is
spent the analysis stops with a reason in the verdict instead of hanging or exhausting memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Budget", "ScanLimits"]

_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScanLimits:
    max_file_bytes: int = 32 * _MiB
    """Larger files are not analysed (the verdict says so)."""
    max_text_bytes: int = 4 * _MiB
    """Longest script text any layer may produce; decoding stops there."""
    max_layers: int = 24
    """Decoding rounds (each round peels one layer of base64, gzip, eval, IEX...)."""
    max_decompressed_bytes: int = 8 * _MiB
    max_ratio: float = 200.0
    """Most decompressed bytes per compressed byte before a stream is called a bomb."""
    max_seconds: float = 5.0
    """CPU-time budget (of the analysing thread) for one input's deobfuscation: CPU, not wall clock, so
    that the same file gets the same verdict on a busy machine as on an idle one; analysis never waits
    on anything, so CPU time bounds its wall time too."""
    max_indicators: int = 200


@dataclass(slots=True)
class Budget:
    """The running budget of one analysis; decoders call `ok()` between steps."""

    limits: ScanLimits
    started: float = field(default_factory=time.thread_time)
    stopped: str | None = None

    def ok(self) -> bool:
        if self.stopped is None and time.thread_time() - self.started > self.limits.max_seconds:
            self.stopped = f"time limit ({self.limits.max_seconds:g} s CPU) reached while deobfuscating"
        return self.stopped is None

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
