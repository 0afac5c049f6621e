"""VBA / VBScript deobfuscation by static rewriting: string building with `Chr`, `&`, `StrReverse`,
`Replace`, and `Execute`/`Eval` of a literal (the next layer)."""

from __future__ import annotations

import re

from phagocyte.analysers.limits import Budget
from phagocyte.analysers.scripts.rewrite import Pass, Rewrite, rewrite

__all__ = ["deobfuscate_vba", "vb_literal", "vb_quote"]

_I = re.IGNORECASE
STR = r'"[^"\n]*+(?:""[^"\n]*+)*+"'
_LIT = re.compile(STR)
_NUM = r"(?:&H[0-9a-f]+|\d+)"


def vb_literal(s: str) -> str:
    return s[1:-1].replace('""', '"')


def vb_quote(v: str) -> str:
    return '"' + v.replace('"', '""').replace("\n", '" & vbLf & "') + '"'


def _n(tok: str) -> int:
    return int(tok[2:], 16) if tok.lower().startswith("&h") else int(tok)


_CHR = re.compile(rf"\bChr[WB]?\$?\s*\(\s*({_NUM})\s*(?:([+-])\s*({_NUM})\s*)?\)", _I)
_CONCAT = re.compile(rf"({STR})\s*[&+]\s*({STR})")
_REVERSE = re.compile(rf"\bStrReverse\s*\(\s*({STR})\s*\)", _I)
_REPLACE = re.compile(rf"\bReplace\s*\(\s*({STR})\s*,\s*({STR})\s*,\s*({STR})\s*\)", _I)
_PAREN = re.compile(rf"(?<![\w)])\(\s*({STR})\s*\)")
_EXECUTE = re.compile(rf"\b(?:Execute(?:Global)?|Eval)\s*\(?\s*({STR})\s*\)?", _I)
_LINE_CONT = re.compile(r"\s+_\r?\n\s*")


def _chr(t: str, b: Budget) -> str:
    def sub(m: re.Match[str]) -> str:
        n = _n(m.group(1))
        if m.group(2):
            n = n + _n(m.group(3)) if m.group(2) == "+" else n - _n(m.group(3))
        return vb_quote(chr(n % 0x110000))

    return _CHR.sub(sub, _LINE_CONT.sub(" ", t))


def _strings(t: str, b: Budget) -> str:
    for _ in range(64):
        new = _CONCAT.sub(lambda m: vb_quote(vb_literal(m.group(1)) + vb_literal(m.group(2))), t)
        new = _PAREN.sub(r"\1", new)
        if new == t or not b.ok():
            break
        t = new
    t = _REVERSE.sub(lambda m: vb_quote(vb_literal(m.group(1))[::-1]), t)
    return _REPLACE.sub(lambda m: vb_quote(vb_literal(m.group(1)).replace(vb_literal(m.group(2)),
                                                                          vb_literal(m.group(3)))), t)


def _execute(t: str, b: Budget) -> str:
    return _EXECUTE.sub(lambda m: "' Execute:\n" + vb_literal(m.group(1)) + "\n", t)


PASSES = (Pass("char-codes", _chr), Pass("literals", _strings), Pass("execute", _execute))


def deobfuscate_vba(text: str, budget: Budget) -> Rewrite:
    return rewrite(text, PASSES, budget)
