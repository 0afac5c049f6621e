"""The rewriting engine shared by the deobfuscators: named passes applied until nothing changes.

Why passes to a fixpoint: obfuscators nest their tricks (a char array inside a format string
inside base64 inside gzip inside an `Invoke-Expression`), and peeling one layer exposes the
next. Each round is bounded by the budget: a limit on rounds (depth), on text size and on time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from phagocyte.analysers.limits import Budget

__all__ = ["Pass", "Rewrite", "fold_concat", "rewrite"]


@dataclass(frozen=True, slots=True)
class Pass:
    """One rewrite: `name` goes into the verdict's `layers` when it changed the text."""

    name: str
    apply: Callable[[str, Budget], str]
    decoding: bool = True
    """False for cosmetic passes (ticks, case) that should not count as layers."""


@dataclass(slots=True)
class Rewrite:
    text: str
    layers: list[str]
    rounds: int


def rewrite(text: str, passes: Sequence[Pass], budget: Budget) -> Rewrite:
    layers: list[str] = []
    lim = budget.limits
    rounds = 0
    while rounds < lim.max_layers and budget.ok():
        rounds += 1
        before = text
        for p in passes:
            if not budget.ok():
                break
            new = p.apply(text, budget)
            if new == text:
                continue
            if len(new) > lim.max_text_bytes:
                budget.stop(f"deobfuscated text would exceed {lim.max_text_bytes:,} characters ({p.name})")
                break
            text = new
            if p.decoding:
                layers.append(p.name)
        if text == before:
            break
    else:
        if budget.stopped is None and rounds >= lim.max_layers:
            budget.stop(f"depth limit: {lim.max_layers} decoding rounds")
    return Rewrite(text, layers, rounds)


def fold_concat(text: str, literal: re.Pattern[str], value: Callable[[str], str], quote: Callable[[str], str]) -> str:
    """Fold `'a' + "b" + 'c'` runs into one literal in a single left-to-right scan.

    Why not a regex `STR + STR` to a fixpoint: on large scripts that re-scans every literal once per
    round and re-tries from inside literals after a failed match; one tokenising pass is linear.
    """
    out: list[str] = []
    pos = 0
    run: list[str] = []
    run_start = run_end = 0
    for m in literal.finditer(text):
        if run and _PLUS.fullmatch(text, run_end, m.start()):
            run.append(m.group(0))
            run_end = m.end()
            continue
        if len(run) > 1:
            out.append(text[pos:run_start])
            out.append(quote("".join(value(s) for s in run)))
            pos = run_end
        run, run_start, run_end = [m.group(0)], m.start(), m.end()
    if len(run) > 1:
        out.append(text[pos:run_start])
        out.append(quote("".join(value(s) for s in run)))
        pos = run_end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


_PLUS = re.compile(r"\s*\+\s*")
