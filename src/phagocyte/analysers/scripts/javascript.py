"""JavaScript / JScript deobfuscation by static rewriting (never by running it).

Covers what droppers and exploit kits use: hex/unicode/octal escapes, `String.fromCharCode`,
`unescape`/`decodeURIComponent`/`atob`, concatenation and comma tricks, `split/reverse/join`,
literal `replace`, string arrays indexed by number (with obfuscator.io-style rotation and an
accessor function), variables assigned one literal, Dean Edwards' `p,a,c,k,e,d` packer,
JScript conditional compilation, and `eval`/`Function` whose literal argument becomes the next layer.
"""

from __future__ import annotations

import bisect
import re
import urllib.parse
from collections import Counter

from phagocyte.analysers.limits import Budget
from phagocyte.analysers.scripts.decoding import b64decode, decode_text, printable_ratio
from phagocyte.analysers.scripts.rewrite import Pass, Rewrite, fold_concat, rewrite

__all__ = ["deobfuscate_javascript", "js_literal", "js_quote"]

_I = re.IGNORECASE
STR = r"""(?:'[^'\\\n]*+(?:\\(?s:.)[^'\\\n]*+)*+'|"[^"\\\n]*+(?:\\(?s:.)[^"\\\n]*+)*+")"""
_NUM = r"(?:0x[0-9a-f]+|\d+)"
_ESC = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})|([0-7]{1,3})|(.))", re.DOTALL)
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


def js_literal(s: str) -> str:
    """Value of a JavaScript string literal as matched by STR."""
    def esc(m: re.Match[str]) -> str:
        h2, hb, h4, octal, other = m.groups()
        if h2 or hb or h4:
            n = int(h2 or hb or h4, 16)
            return chr(n) if n < 0x110000 else "\ufffd"
        if octal:
            return chr(int(octal, 8) & 0xFF) if octal != "0" else "\0"
        return _SIMPLE.get(other, other)

    return _ESC.sub(esc, s[1:-1])


def js_quote(v: str) -> str:
    v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + v + '"'


def _n(tok: str) -> int:
    tok = tok.strip()
    return int(tok, 16) if tok.lower().startswith("0x") else int(tok)


_LIT = re.compile(STR)
_OCTAL = re.compile(r"\\[0-7]")


def _escapes(t: str, b: Budget) -> str:
    """Rewrite literals that carry escapes into plain ones (`"\\x65val"` -> `"eval"`)."""
    def sub(m: re.Match[str]) -> str:
        s = m.group(0)
        if "\\" not in s or ("\\x" not in s and "\\u" not in s and not _OCTAL.search(s)):
            return s
        return js_quote(js_literal(s))

    return _LIT.sub(sub, t) if "\\" in t else t


_BRACKET_MEMBER = re.compile(r"(?<=[\w$)\]'\"])\s*\[\s*[\"']([A-Za-z_$][\w$]{0,40})[\"']\s*\]")
_SHORT_COMMENT = re.compile(r"/\*(?!@)[^*]{0,80}\*/")


def _cosmetic(t: str, b: Budget) -> str:
    """`x["split"]("#")` -> `x.split("#")`; short inline comments (`/**/` between tokens) dropped."""
    if "/*" in t:
        t = _SHORT_COMMENT.sub("", t)
    return _BRACKET_MEMBER.sub(r".\1", t) if "[" in t else t


def _cc_on(t: str, b: Budget) -> str:
    if "@" not in t:
        return t
    return re.sub(r"/\*@cc_on|@\*/|/\*@if\s*\([^)]{0,80}\)|@if\s*\([^)]{0,80}\)|@elif\s*\([^)]{0,80}\)|@else|@end",
                  "", t, flags=_I)


_CONCAT = re.compile(rf"({STR})\s*\+\s*({STR})")
_COMMA = re.compile(rf"\(\s*(?:[\w.$]+|{STR})\s*,\s*({STR})\s*\)")
_PAREN = re.compile(rf"\(\s*({STR})\s*\)")


def _is_call(m: re.Match[str]) -> bool:
    """The parentheses at `m` are a call's (`f ("a")`, `new Function ("a")`, `g()("a")`), not grouping."""
    before = m.string[max(0, m.start() - 12):m.start()].rstrip()
    return bool(before) and (before[-1].isalnum() or before[-1] in "_$)]") and not before.endswith(("return", "typeof"))


def _unparen(m: re.Match[str]) -> str:
    """`("a")` -> `"a"`, except where the parentheses are a call's."""
    return m.group(0) if _is_call(m) else m.group(1)


def _uncomma(m: re.Match[str]) -> str:
    """`(0, "a")` -> `"a"` (the comma operator's value), except in a call, where the comma separates
    arguments: `RegExp("a|b", 'g')` stays as it is."""
    return m.group(0) if _is_call(m) else m.group(1)


def _concat(t: str, b: Budget) -> str:
    if "+" in t:
        t = fold_concat(t, _LIT, js_literal, js_quote)
    if "," in t:
        t = _COMMA.sub(_uncomma, t)
    return _PAREN.sub(_unparen, t)


_FROMCHARCODE = re.compile(rf"String\s*\.\s*fromCharCode\s*\(\s*({_NUM}(?:\s*,\s*{_NUM})*)\s*\)", _I)
_FROMCHARCODE_APPLY = re.compile(
    rf"String\s*\.\s*fromCharCode\s*\.\s*apply\s*\(\s*[\w.$]+\s*,\s*\[\s*({_NUM}(?:\s*,\s*{_NUM})*)\s*\]\s*\)", _I)
_UNESCAPE = re.compile(rf"\b(unescape|decodeURIComponent|decodeURI|atob)\s*\(\s*({STR})\s*\)")


def _decoders(t: str, b: Budget) -> str:
    if "romCharCode" not in t and "scape" not in t and "decodeURI" not in t and "atob" not in t:
        return t
    def chars(m: re.Match[str]) -> str:
        return js_quote("".join(chr(_n(x) % 0x110000) for x in m.group(1).split(",")))

    t = _FROMCHARCODE.sub(chars, t)
    t = _FROMCHARCODE_APPLY.sub(chars, t)

    def unesc(m: re.Match[str]) -> str:
        fn, s = m.group(1), js_literal(m.group(2))
        if fn == "atob":
            raw = b64decode(s)
            if raw is None:
                return m.group(0)
            text = decode_text(raw)
            return js_quote(text) if printable_ratio(text) >= 0.9 else m.group(0)
        if fn == "unescape":
            s = re.sub(r"%u([0-9a-fA-F]{4})", lambda x: chr(int(x.group(1), 16)), s)
            return js_quote(urllib.parse.unquote(s, encoding="latin-1"))
        try:
            return js_quote(urllib.parse.unquote(s, errors="strict"))
        except UnicodeDecodeError:
            return m.group(0)

    return _UNESCAPE.sub(unesc, t)


_ARRAY_JOIN = re.compile(
    rf"\[\s*({STR}(?:\s*,\s*{STR})*)\s*\]\s*(\.\s*reverse\(\s*\)\s*)?\.\s*join\(\s*({STR})\s*\)")
_REVERSE = re.compile(
    rf"({STR})\s*\.\s*split\(\s*(?:''|\"\")\s*\)\s*\.\s*reverse\(\s*\)\s*\.\s*join\(\s*(?:''|\"\")\s*\)")
_SPLIT_JOIN = re.compile(rf"({STR})\s*\.\s*split\(\s*({STR})\s*\)\s*\.\s*join\(\s*({STR})\s*\)")
_REPLACE_STR = re.compile(rf"({STR})\s*\.\s*replace(?:All)?\(\s*({STR})\s*,\s*({STR})\s*\)")
_REPLACE_RX = re.compile(rf"({STR})\s*\.\s*replace\(\s*/((?:[^/\\\n\[]|\\.){{1,200}})/([gimsuy]*)\s*,\s*({STR})\s*\)")


def _join_arrays(t: str, b: Budget) -> str:
    """`['a','b'].join('')`, `['b','a'].reverse().join('')`: literal arrays joined into one literal."""
    def sub(m: re.Match[str]) -> str:
        items = [js_literal(x) for x in _LIT.findall(m.group(1))]
        if m.group(2):
            items.reverse()
        return js_quote(js_literal(m.group(3)).join(items))

    return _ARRAY_JOIN.sub(sub, t)


def _strings(t: str, b: Budget) -> str:
    if ".join" in t:
        t = _join_arrays(t, b)
    if ".split" not in t and ".replace" not in t:
        return t
    t = _REVERSE.sub(lambda m: js_quote(js_literal(m.group(1))[::-1]), t)
    def split_join(m: re.Match[str]) -> str:
        src, sep = js_literal(m.group(1)), js_literal(m.group(2))
        return js_quote(js_literal(m.group(3)).join(src.split(sep) if sep else list(src)))

    t = _SPLIT_JOIN.sub(split_join, t)

    def rstr(m: re.Match[str]) -> str:
        src, old, new = js_literal(m.group(1)), js_literal(m.group(2)), js_literal(m.group(3))
        return js_quote(src.replace(old, new, 1 if "All" not in m.group(0)[:0] and ".replaceAll" not in m.group(0)
                                    else -1))

    t = _REPLACE_STR.sub(rstr, t)

    def rrx(m: re.Match[str]) -> str:
        body, flags = m.group(2), m.group(3)
        # A real regular expression is replayed only when short and free of nested quantifiers, so hostile
        # input cannot trigger catastrophic backtracking here.
        if re.search(r"(?<!\\)[.*+?()|{}^$]", body) and (len(body) > 40 or re.search(r"[*+}]\)?[*+{]", body)):
            return m.group(0)
        try:
            rx = re.compile(body, _I if "i" in flags else 0)
        except re.error:
            return m.group(0)
        rep = js_literal(m.group(4))
        return js_quote(rx.sub(lambda _: rep, js_literal(m.group(1)), count=0 if "g" in flags else 1))

    return _REPLACE_RX.sub(rrx, t)


# --- arrays of strings, rotation, accessor --------------------------------------------------------------
_ARRAY = re.compile(rf"(?<![\w$])([\w$]+)\s*=\s*(?:\[|new\s+Array\s*\()\s*({STR}(?:\s*,\s*{STR})*)\s*[\])]")
_ROTATE_HEAD = re.compile(r"\(\s*function\s*\(\s*[\w$]+\s*,\s*[\w$]+\s*\)\s*\{")
_ROTATE_TAIL = re.compile(rf"\}}\s*\(\s*([\w$]+)\s*,\s*({_NUM})\s*\)\s*\)?", _I)
_ACCESSOR = re.compile(
    r"(?:var|let|const)\s+([\w$]+)\s*=\s*function\s*\(\s*([\w$]+)\s*(?:,\s*[\w$]+\s*)?\)\s*\{\s*\2\s*=\s*\2\s*-\s*"
    r"(0x[0-9a-f]+|\d+)\s*;\s*var\s+[\w$]+\s*=\s*([\w$]+)\s*\[\s*\2\s*\]", _I)
_ACCESSOR_FN = re.compile(
    r"function\s+([\w$]+)\s*\(\s*([\w$]+)\s*(?:,\s*[\w$]+\s*)?\)\s*\{\s*\2\s*=\s*\2\s*-\s*(0x[0-9a-f]+|\d+)\s*;"
    r"\s*var\s+[\w$]+\s*=\s*([\w$]+)\s*\[\s*\2\s*\]", _I)


_ASSIGNED = re.compile(r"(?<![\w$])([\w$]+)\s*=(?!=)")
_WRITTEN = re.compile(r"(?<![\w$.])([\w$]+)\s*(?:[+\-*/|&]?=(?!=)|\+\+|--)")
_ARRAY_START = re.compile(r"=\s*(?:\[|new\s+Array\s*\()\s*['\"]")


def _arrays(t: str, b: Budget) -> str:
    if not _ARRAY_START.search(t):  # cheap test first: most texts hold no literal array to resolve
        return t
    arrays: dict[str, list[str]] = {}
    counts = Counter(_ASSIGNED.findall(t))  # findall + Counter: the count runs in C, not a Python loop
    for m in _ARRAY.finditer(t):
        if counts.get(m.group(1)) == 1:
            arrays[m.group(1)] = [js_literal(x) for x in _LIT.findall(m.group(2))]
    if not arrays:
        return t
    if "push" in t and "shift" in t:
        # obfuscator.io: `(function(arr, n){ ... arr.push(arr.shift()) ... }(ARR, 0x1a3))` rotates ARR n times.
        for head in _ROTATE_HEAD.finditer(t):
            window = t[head.end(): head.end() + 1200]
            if "push" not in window or "shift" not in window:
                continue
            tail = _ROTATE_TAIL.search(window)
            if tail is None or not arrays.get(tail.group(1)):
                continue
            values = arrays[tail.group(1)]
            k = _n(tail.group(2)) % len(values)
            arrays[tail.group(1)] = values[k:] + values[:k]
            t = t[: head.start()] + t[head.end() + tail.end():]
            break
    for rx in (_ACCESSOR, _ACCESSOR_FN):
        for m in rx.finditer(t):
            fn, offset, arr = m.group(1), _n(m.group(3)), m.group(4)
            if arr not in arrays:
                continue
            values = arrays[arr]

            def call(c: re.Match[str], values: list[str] = values, offset: int = offset) -> str:
                i = _n(c.group(1).strip("'\"")) - offset
                return js_quote(values[i]) if 0 <= i < len(values) else c.group(0)

            t = re.sub(rf"(?<![\w$]){re.escape(fn)}\s*\(\s*('(?:0x[0-9a-f]+|\d+)'|\"(?:0x[0-9a-f]+|\d+)\"|{_NUM})"
                       rf"\s*(?:,\s*{STR}\s*)?\)", call, t, flags=_I)
    names = "|".join(re.escape(n) for n in arrays)

    def joined(m: re.Match[str]) -> str:
        values = arrays[m.group(1)]
        return js_quote(js_literal(m.group(3)).join(values[::-1] if m.group(2) else values))

    t = re.sub(rf"(?<![\w$.])({names})\s*(\.\s*reverse\(\s*\)\s*)?\.\s*join\(\s*({STR})\s*\)", joined, t)

    def index(m: re.Match[str]) -> str:
        values = arrays[m.group(1)]
        i = _n(m.group(2))
        return js_quote(values[i]) if 0 <= i < len(values) else m.group(0)

    return re.sub(rf"(?<![\w$.])({names})\s*\[\s*({_NUM})\s*\]", index, t, flags=_I)


# --- variables assigned a single literal ------------------------------------------------------------------
_ASSIGN = re.compile(rf"(?<![\w$.])([\w$]+)\s*=\s*({STR})\s*(?=[;,\n)]|$)")


_CONST_LONG = 1024
_STR_RE = re.compile(STR)
_CONST_GROWTH = 256 * 1024


def _constants(t: str, b: Budget) -> str:
    if not _ASSIGN.search(t):  # no literal assigned anywhere: skip counting every assignment
        return t
    counts = Counter(_WRITTEN.findall(t))
    consts: dict[str, tuple[int, str]] = {}
    for m in _ASSIGN.finditer(t):
        if counts.get(m.group(1)) == 1 and len(m.group(2)) <= 65536:
            consts[m.group(1)] = (m.end(), m.group(2))
    if not consts:
        return t
    names = "|".join(re.escape(n) for n in consts)
    pattern = re.compile(r"(?<![\w$.'\"])(" + names + r")(?![\w$'\"])(?!\s*[:(]|\s*=(?!=))")

    used: Counter[str] = Counter()
    added = 0
    # a name inside a string literal is text, not a variable: substituting there changed the text
    # every round (24 rounds of `constants` on plain library code) and could grow it without end
    spans = [(m.start(), m.end()) for m in _STR_RE.finditer(t)]
    starts = [a for a, _ in spans]

    def sub(m: re.Match[str]) -> str:
        nonlocal added
        end, lit = consts[m.group(1)]
        if m.start() < end:
            return m.group(0)
        i = bisect.bisect_right(starts, m.start()) - 1
        if i >= 0 and m.start() < spans[i][1]:
            return m.group(0)
        before = t[max(0, m.start() - 30):m.start()].rstrip()
        after = t[m.end():m.end() + 12].lstrip()
        if before.endswith(("(", "+", ",", "[")) or after.startswith(("+", ")", ".replace", ".split", "]", ",")):
            # Bounded growth: a long literal is put in once (the payload handed to eval/atob), short ones
            # wherever used, up to _CONST_GROWTH per pass. Without it a string built by doubling itself
            # doubled the text every round until the size limit (seconds of CPU on one file, nothing learnt).
            if (len(lit) > _CONST_LONG and used[m.group(1)]) or added + len(lit) > _CONST_GROWTH:
                return m.group(0)
            used[m.group(1)] += 1
            added += len(lit)
            return lit
        return m.group(0)

    return pattern.sub(sub, t)


# --- eval / Function / packer --------------------------------------------------------------------------------
_EVAL = re.compile(  # one look at the first character before trying the branches: 54 -> 16 ms on lodash.js
    rf"(?=[wtsgenF])(?:(?:(?:window|this|self|globalThis)\s*\[\s*[\"']eval[\"']\s*\]|\beval)\s*\(\s*({STR})\s*\)"
    rf"|(?:new\s+)?\bFunction\s*\(\s*({STR})\s*\)\s*\(\s*\)"
    rf"|\bset(?:Timeout|Interval)\s*\(\s*({STR})\s*[,)])")
_PACKER = re.compile(
    r"eval\s*\(\s*function\s*\(\s*p\s*,\s*a\s*,\s*c\s*,\s*k\s*,\s*e\s*,\s*[dr]\s*\)\s*\{.{0,1200}?\}\s*\(\s*"
    rf"({STR})\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*({STR})\s*\.\s*split\(\s*['\"]\|['\"]\s*\)"
    r"\s*(?:,\s*0\s*,\s*\{\s*\})?\s*\)\s*\)", re.DOTALL)


def _base_n(n: int, a: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if a > 62:
        return str(n)
    out = ""
    while True:
        out = digits[n % a] + out
        n //= a
        if n == 0:
            return out


def _unpack(t: str, b: Budget) -> str:
    if "p,a,c,k,e," not in t.replace(" ", ""):
        return t
    def sub(m: re.Match[str]) -> str:
        p, a, c = js_literal(m.group(1)), int(m.group(2)), int(m.group(3))
        words = js_literal(m.group(4)).split("|")
        if not 2 <= a <= 62 or c > 100_000:
            return m.group(0)
        table = {_base_n(i, a): (words[i] if i < len(words) and words[i] else _base_n(i, a)) for i in range(c)}
        return "\n" + re.sub(r"\b\w+\b", lambda w: table.get(w.group(0), w.group(0)), p) + "\n"

    return _PACKER.sub(sub, t)


def _eval(t: str, b: Budget) -> str:
    if "eval" not in t and "Function" not in t and "set" not in t:
        return t
    def sub(m: re.Match[str]) -> str:
        s = m.group(1) or m.group(2) or m.group(3)
        return "\n// eval:\n{\n" + js_literal(s) + "\n}"

    return _EVAL.sub(sub, t)


PASSES = (
    Pass("cc_on", _cc_on, decoding=False),
    Pass("members", _cosmetic, decoding=False),
    Pass("escapes", _escapes),
    Pass("packer", _unpack),
    Pass("char-codes", _decoders),
    Pass("literals", _concat),
    Pass("strings", _strings),
    Pass("arrays", _arrays),
    Pass("constants", _constants),
    Pass("eval", _eval),
)


def deobfuscate_javascript(text: str, budget: Budget) -> Rewrite:
    """Rewrite until nothing changes or the budget is spent; decoded layers stay inline."""
    return rewrite(text, PASSES, budget)
