"""Script analysis: language, bounded deobfuscation, heuristics, indicators -> one Verdict.

    analyse_script(data, path) -> Verdict      (nothing is executed)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from phagocyte.analysers.indicators import extract_indicators
from phagocyte.analysers.limits import Budget, ScanLimits
from phagocyte.analysers.scripts.decoding import decode_text
from phagocyte.analysers.scripts.heuristics import match_rules, obfuscation_reasons
from phagocyte.analysers.scripts.javascript import deobfuscate_javascript
from phagocyte.analysers.scripts.language import LANGUAGES, detect_language
from phagocyte.analysers.scripts.powershell import deobfuscate_powershell
from phagocyte.analysers.scripts.rewrite import Rewrite
from phagocyte.analysers.scripts.vba import deobfuscate_vba
from phagocyte.analysers.verdict import Verdict

__all__ = ["LANGUAGES", "analyse_script", "analyse_text", "deobfuscate", "detect_language"]

_DEOBFUSCATORS: dict[str, tuple[Callable[[str, Budget], Rewrite], ...]] = {
    "powershell": (deobfuscate_powershell,),
    "javascript": (deobfuscate_javascript,),
    "vbscript": (deobfuscate_vba,),
    "hta": (deobfuscate_javascript, deobfuscate_vba),
    "batch": (deobfuscate_powershell,),  # batch droppers carry `powershell -enc ...`
}


def deobfuscate(text: str, language: str, budget: Budget) -> Rewrite:
    """All the language's deobfuscators in turn, under one budget."""
    layers: list[str] = []
    rounds = 0
    for fn in _DEOBFUSCATORS.get(language, ()):
        r = fn(text, budget)
        text, rounds = r.text, rounds + r.rounds
        layers.extend(r.layers)
    return Rewrite(text, layers, rounds)


def analyse_text(text: str, language: str, *, path: str = "", limits: ScanLimits | None = None,
                 verdict: Verdict | None = None) -> Verdict:
    """Deobfuscate and judge script text (a file's, a script block's or a command line's)."""
    limits = limits or ScanLimits()
    v = verdict or Verdict(path=path, kind=language, size=len(text))
    if len(text) > limits.max_text_bytes:
        v.errors.append(f"script text cut to {limits.max_text_bytes:,} of {len(text):,} characters")
        text = text[: limits.max_text_bytes]
    budget = Budget(limits)
    r = deobfuscate(text, language, budget)
    if budget.stopped:
        v.errors.append(budget.stopped)
    v.layers = r.layers
    if r.text != text:
        v.deobfuscated = r.text
    for reason in match_rules(language, r.text) + obfuscation_reasons(r.layers):
        v.add(reason)
    v.indicators = extract_indicators(r.text, cap=limits.max_indicators)
    v.rescore()
    return v


def analyse_script(data: bytes, path: str = "", *, language: str | None = None,
                   limits: ScanLimits | None = None) -> Verdict:
    """Judge one script file's bytes; the language is guessed from the name and content when not given."""
    limits = limits or ScanLimits()
    lang = language or detect_language(path, data[:65536]) or "javascript"
    v = Verdict(path=path, kind=lang, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return analyse_text(decode_text(data), lang, path=path, limits=limits, verdict=v)
