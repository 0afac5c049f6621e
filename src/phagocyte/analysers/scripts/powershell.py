"""PowerShell deobfuscation by static rewriting (never by running it).

Covers the Invoke-Obfuscation families and what droppers use: `-EncodedCommand`, backticks and
case noise, `[char]` casts and char-code arrays in any base (Invoke-Obfuscation's encoding menu),
concatenation, `-f` format, `-replace`/`.Replace()`, reversed strings, `FromBase64String` with
gzip/deflate layers, variables assigned one literal, and `Invoke-Expression` in its disguises
(`$env:ComSpec[4,15,25]-join''`, `$PSHome[4]+$PSHome[30]+'x'`, `gv '*mdr*'`...), whose literal
argument becomes the next layer.
"""

from __future__ import annotations

import re

from phagocyte.analysers.limits import Budget
from phagocyte.analysers.scripts.decoding import b64decode, decode_text, inflate, printable_ratio
from phagocyte.analysers.scripts.rewrite import Pass, Rewrite, fold_concat, rewrite

__all__ = ["deobfuscate_powershell", "literal", "quote"]

_I = re.IGNORECASE
# Unrolled, possessive forms: linear and ~10x faster than `(?:[^']|'')*` on large scripts.
_SQ = r"'[^']*+(?:''[^']*+)*+'"
_DQ = r'"[^"`$]*+(?:(?:`(?s:.)|"")[^"`$]*+)*+"'
STR = rf"(?:{_SQ}|{_DQ})"
_NUM = r"(?:0x[0-9a-f]+|\d+)"


def literal(s: str) -> str:
    """Value of a PowerShell string literal as matched by STR."""
    if s[0] == "'":
        return s[1:-1].replace("''", "'")
    body = s[1:-1].replace('""', '"')
    return re.sub(r"`(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}.get(m.group(1), m.group(1)), body)


def quote(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _num(tok: str) -> int:
    tok = tok.strip().strip("'\"")
    return int(tok, 16) if tok.lower().startswith("0x") else int(tok)


def _chr(n: int) -> str:
    return chr(n) if 0 <= n < 0x110000 else "\ufffd"


# Cheap guards: a pass whose keyword is absent is skipped (large benign scripts stay fast).
_HAS_FORMAT = re.compile(r"-f\s*['\"]", _I)
_HAS_REPLACE = re.compile(r"replace", _I)
_HAS_JOIN = re.compile(r"join|\[\s*-1\s*\.\.|righttoleft", _I)
_HAS_CHAR = re.compile(r"\[char|toint(?:16|32|64)", _I)
_HAS_XOR = re.compile(r"-bxor", _I)
_HAS_IEX = re.compile(r"invoke-expression|scriptblock\]::create", _I)


# --- cosmetic -----------------------------------------------------------------------------------
_TICK = re.compile(r"`(?=[^0abefnrtv\s`'\"$])")  # escapes are lower case; `E, `N... are noise


def _ticks(t: str, b: Budget) -> str:
    return _TICK.sub("", t)


# --- literals -----------------------------------------------------------------------------------
_CHAR = re.compile(rf"\[char\]\s*\(?\s*({_NUM})\s*\)?", _I)
_CHAR_ARRAY = re.compile(rf"\[char\[\]\]\s*\(\s*({_NUM}(?:\s*,\s*{_NUM})*)\s*\)", _I)
_CAST_STR = re.compile(rf"\[(?:string|char\[\])\]\s*({STR})", _I)
_PAREN = re.compile(rf"(?<![\w\])}}])\(\s*({STR})\s*\)")
_LITERAL = re.compile(STR)
_FORMAT = re.compile(rf"\(?\s*({STR})\s*-f\s*({STR}(?:\s*,\s*{STR})*)\s*\)?", _I)
_REPLACE_OP = re.compile(rf"({STR})\s*-c?replace\s*\(?\s*({STR})\s*,\s*({STR})\s*\)?", _I)
_REPLACE_M = re.compile(rf"({STR})\s*\.\s*replace\s*\(\s*({STR})\s*,\s*({STR})\s*\)", _I)
_JOIN_M = re.compile(rf"\[string\]::join\(\s*({STR})\s*,\s*\(?\s*({STR})\s*\)?\s*\)", _I)
_JOIN_OP = re.compile(rf"({STR})\s*\)?\s*-join\s*({STR})", _I)
_JOIN_UNARY = re.compile(rf"-join\s*\(?\s*({STR})\s*\)?", _I)
_REVERSE_IDX = re.compile(rf"({STR})\s*\)?\s*\[\s*-1\s*\.\.\s*-?\s*\(?\s*[\w$.()']{{1,40}}?\)?\s*\]", _I)
_REVERSE_RX = re.compile(rf"\[regex\]::matches\(\s*({STR})\s*,\s*'\.'\s*,\s*'righttoleft'\s*\)", _I)
_STR_LIST = re.compile(rf"({STR})(?:\s*,\s*{STR})+")
_STR_ITEM = re.compile(STR)


def _literals(t: str, b: Budget) -> str:
    if not _HAS_CHAR.search(t):
        return _PAREN.sub(r"\1", fold_concat(t, _LITERAL, literal, quote) if "+" in t else t)
    t = _CHAR_ARRAY.sub(lambda m: quote("".join(_chr(_num(x)) for x in m.group(1).split(","))), t)
    t = _CHAR.sub(lambda m: quote(_chr(_num(m.group(1)))), t)
    t = _CAST_STR.sub(r"\1", t)
    if "+" in t:
        t = fold_concat(t, _LITERAL, literal, quote)
    return _PAREN.sub(r"\1", t)


def _format(t: str, b: Budget) -> str:
    if not _HAS_FORMAT.search(t):
        return t
    def sub(m: re.Match[str]) -> str:
        fmt = literal(m.group(1))
        args = [literal(a) for a in _STR_ITEM.findall(m.group(2))]

        def field(f: re.Match[str]) -> str:
            i = int(f.group(1))
            return args[i] if i < len(args) else f.group(0)

        return quote(re.sub(r"\{(\d+)(?:,-?\d+)?(?::[^}]*)?\}", field, fmt))

    return _FORMAT.sub(sub, t)


def _replace(t: str, b: Budget) -> str:
    if not _HAS_REPLACE.search(t):
        return t
    def op(m: re.Match[str]) -> str:  # -replace is a case-insensitive regex; matched literally here (no ReDoS)
        pat = re.escape(literal(m.group(2)))
        rep = literal(m.group(3))
        return quote(re.sub(pat, lambda _: rep, literal(m.group(1)), flags=_I))

    t = _REPLACE_OP.sub(op, t)
    return _REPLACE_M.sub(lambda m: quote(literal(m.group(1)).replace(literal(m.group(2)), literal(m.group(3)))), t)


def _join(t: str, b: Budget) -> str:
    if not _HAS_JOIN.search(t):
        return t
    t = _JOIN_M.sub(r"\2", t)
    t = _REVERSE_RX.sub(lambda m: quote(literal(m.group(1))[::-1]), t)
    t = _REVERSE_IDX.sub(lambda m: quote(literal(m.group(1))[::-1]), t)
    # ('a','b','c') -join '' : a list of literals joined
    t = re.sub(rf"\(\s*({STR}(?:\s*,\s*{STR})+)\s*\)\s*-join\s*({STR})",
               lambda m: quote(literal(m.group(2)).join(literal(x) for x in _STR_ITEM.findall(m.group(1)))), t,
               flags=_I)
    t = _JOIN_OP.sub(r"\1", t)

    def unary(m: re.Match[str]) -> str:  # `-join ('a','b')` at the start of an expression, not `$x -join ''`
        before = t[max(0, m.start() - 40):m.start()]
        stripped = before.rstrip()
        if stripped and stripped[-1] not in "(=," and "\n" not in before[len(stripped):]:
            return m.group(0)
        return m.group(1)

    return _JOIN_UNARY.sub(unary, t)


# --- char-code lists in any base (Invoke-Obfuscation ENCODING) --------------------------------------
_XOR_ARRAY = re.compile(
    rf"(?:\[char\[\]\]\s*)?\(\s*({_NUM}(?:\s*,\s*{_NUM})*)\s*\)\s*\|\s*(?:%|foreach(?:-object)?)\s*\{{\s*"
    rf"\[char\]\s*\(\s*\$_\s*-bxor\s*['\"]?({_NUM})['\"]?\s*\)\s*\}}", _I)
_CODE_LIST = re.compile(r"\(\s*((?:'?[0-9a-f]{1,8}'?\s*,\s*){3,}'?[0-9a-f]{1,8}'?)\s*\)", _I)
_BASE_HINT = re.compile(r"toint(?:16|32|64)\s*\(.{0,80}?,\s*(\d+)\s*\)", _I | re.DOTALL)
_FOREACH_AFTER = re.compile(
    rf"({STR})(?:\s*-split\s*{STR})*\s*\|\s*(?:%|foreach(?:-object)?)\s*\{{\s*\(*\s*\[char\][^{{}}]{{0,120}}\}}", _I)
_DELIMITED = re.compile(r"'([0-9a-z~!@#%^&*_+=:;<>,.?/{}\[\]\s-]{40,})'", _I)


def _decode_codes(items: list[str], base: int) -> str | None:
    try:
        s = "".join(_chr(int(x, base)) for x in items if x)
    except ValueError:
        return None
    return s if printable_ratio(s) >= 0.95 else None


def _xor_arrays(t: str, b: Budget) -> str:
    if not _HAS_XOR.search(t):
        return t
    """`[char[]](20,24,5,...) |%{[char]($_ -bxor 0x5d)}`: the codes are XOR-ed with a key first."""
    def sub(m: re.Match[str]) -> str:
        key = _num(m.group(2))
        s = "".join(_chr(_num(x) ^ key) for x in m.group(1).split(","))
        return quote(s) if printable_ratio(s) >= 0.95 else m.group(0)

    return _XOR_ARRAY.sub(sub, t)


def _code_lists(t: str, b: Budget) -> str:
    if not _HAS_CHAR.search(t):
        return t
    def sub(m: re.Match[str]) -> str:
        items = [x.strip().strip("'") for x in m.group(1).split(",")]
        hint = _BASE_HINT.search(t, m.end(), m.end() + 400)
        bases = [int(hint.group(1))] if hint else [16] if any(re.search("[a-f]", x, _I) for x in items) else [10]
        for base in bases:
            s = _decode_codes(items, base) if base in (2, 8, 10, 16) else None
            if s is not None:
                return quote(s)
        return m.group(0)

    t = _CODE_LIST.sub(sub, t)

    def delimited(m: re.Match[str]) -> str:
        hint = _BASE_HINT.search(t, m.end(), m.end() + 600)
        if not hint:
            return m.group(0)
        base = int(hint.group(1))
        digits = {2: "01", 8: "0-7", 10: "0-9", 16: "0-9a-f"}.get(base)
        if digits is None:
            return m.group(0)
        items = re.split(f"[^{digits}]+", m.group(1), flags=_I)
        s = _decode_codes(items, base) if sum(1 for x in items if x) >= 8 else None
        return quote(s) if s is not None else m.group(0)

    if _BASE_HINT.search(t):
        t = _DELIMITED.sub(delimited, t)
    return _FOREACH_AFTER.sub(r"\1", t)


# --- base64, compression, -EncodedCommand ------------------------------------------------------------
_ENC_CMD = re.compile(r"(?<![\w-])[-/]e(?:c|n[a-z]*)?\s+['\"]?([A-Za-z0-9+/]{16,}={0,2})['\"]?", _I)
_FROM_B64 = re.compile(rf"\[(?:system\.)?convert\]::frombase64string\(\s*({STR})\s*\)", _I)
_GETSTRING = re.compile(rf"\[(?:system\.)?text\.encoding\]::\w+\.getstring\(\s*({STR})\s*\)", _I)
_STREAM_PREFIX = re.compile(
    r"(?:new-object\s+(?:system\.)?io\.streamreader\s*\(\s*)?\(?\s*new-object\s+(?:system\.)?io\.compression\."
    r"(?:gzip|deflate)stream\s*\(\s*\(?\s*new-object\s+(?:system\.)?io\.memorystream\s*\(\s*,?\s*(?=['\"])", _I)
_STREAM_SUFFIX = re.compile(
    rf"({STR})\s*\)*\s*,\s*\[(?:system\.)?io\.compression\.compressionmode\]::decompress\s*\)*"
    rf"(?:\s*,\s*\[(?:system\.)?text\.encoding\]::\w+\s*\)*)?\s*(?:\.readtoend\(\s*\))?", _I)
# A bare base64 literal (`$s = 'H4sI...'`), not one that FromBase64String decodes or one nested in another literal.
_LONG_B64 = re.compile(r"(?<![('])'([A-Za-z0-9+/]{60,}={0,2})'(?!')")


def _decode_blob(s: str, b: Budget, *, strict: bool) -> str | None:
    raw = b64decode(s)
    if raw is None:
        return None
    inflated = inflate(raw, b) if raw[:2] in (b"\x1f\x8b", b"x\x9c", b"x\xda", b"x\x01") or not strict else None
    text = decode_text(inflated if inflated is not None else raw)
    return text if printable_ratio(text) >= (0.95 if strict else 0.85) else None


def _base64(t: str, b: Budget) -> str:
    def enc(m: re.Match[str]) -> str:
        raw = b64decode(m.group(1))
        if raw is None:
            return m.group(0)
        text = decode_text(raw)
        return f" -Command {{ {text} }}" if printable_ratio(text) >= 0.9 else m.group(0)

    t = _ENC_CMD.sub(enc, t)

    def frm(m: re.Match[str]) -> str:
        s = _decode_blob(literal(m.group(1)), b, strict=False)
        return quote(s) if s is not None else m.group(0)

    t = _FROM_B64.sub(frm, t)
    t = _GETSTRING.sub(r"\1", t)
    if "compression" in t.lower():
        t = _STREAM_SUFFIX.sub(r"\1", _STREAM_PREFIX.sub("", t))

    def long(m: re.Match[str]) -> str:
        s = _decode_blob(m.group(1), b, strict=True)
        return quote(s) if s is not None else m.group(0)

    return _LONG_B64.sub(long, t)


# --- Invoke-Expression in its disguises, then unwrapping of its literal argument -----------------------
_IEX_ALIASES = re.compile(
    r"[&.]\s*\(\s*(?:"
    r"(?:\$[\w:]+(?:\.tostring\(\))?\[\s*\d+(?:\s*,\s*\d+)*\s*\]|'[iex]'|\"[iex]\"|\s|\+)+(?:-join\s*(?:''|\"\"))?"
    r"|\(\s*(?:gv|get-variable|variable)\s+['\"]\*mdr\*['\"]\s*\)\.name\[\s*3\s*,\s*11\s*,\s*2\s*\]\s*-join\s*(?:''|\"\")"
    r"|['\"](?:iex|invoke-expression)['\"]"
    r")\s*\)"
    r"|[&.]\s*['\"](?:iex|invoke-expression)['\"]"
    r"|\biex\b",
    _I,
)
_IEX_ARG = re.compile(rf"invoke-expression\s*\(?\s*({STR})\s*\)?(?=\s*(?:[);|\n}}]|$))", _I)
_IEX_PIPE = re.compile(rf"({STR})\s*\)?\s*\|\s*invoke-expression\b", _I)
_SCRIPTBLOCK = re.compile(rf"\[scriptblock\]::create\(\s*({STR})\s*\)", _I)


def _iex(t: str, b: Budget) -> str:
    return _IEX_ALIASES.sub("Invoke-Expression", t)


def _unwrap(t: str, b: Budget) -> str:
    if not _HAS_IEX.search(t):
        return t
    def inner(m: re.Match[str]) -> str:
        return "Invoke-Expression {\n" + literal(m.group(1)) + "\n}"

    def piped(m: re.Match[str]) -> str:
        # Only a whole pipeline's input: `'...' | iex`, not the last operand of `x -f '...' | iex`.
        before = t[max(0, m.start() - 40):m.start()]
        stripped = before.rstrip()
        stripped = stripped[:-1].rstrip() if stripped.endswith("(") else stripped
        if stripped and stripped[-1] not in "(;{=}" and "\n" not in before[len(stripped):]:
            return m.group(0)
        return inner(m)

    t = _IEX_PIPE.sub(piped, t)
    t = _IEX_ARG.sub(inner, t)
    return _SCRIPTBLOCK.sub(lambda m: "{\n" + literal(m.group(1)) + "\n}", t)


# --- variables assigned a single literal ------------------------------------------------------------
_REVERSE_VAR = re.compile(
    r"(?:\$(\w+)|\(\s*(?:get-childitem|childitem|gci|dir|ls|get-item|item|gi|get-variable|gv|variable)\s+"
    r"['\"]?(?:variable:)?(\w+)['\"]?\s*\)\.value)\s*\[\s*-1\s*\.\.[^\]]{1,120}\]\s*-join\s*(?:''|\"\")", _I)
_ASSIGN = re.compile(rf"(?<![\w$])\$([a-z_][\w]*)\s*=\s*({STR})\s*(?=[;\r\n|)]|$)", _I)


def _constants(t: str, b: Budget) -> str:
    counts: dict[str, int] = {}
    for m in re.finditer(r"\$([a-z_]\w*)\s*[+\-*/]?=(?!=)", t, _I):
        counts[m.group(1).lower()] = counts.get(m.group(1).lower(), 0) + 1
    consts: dict[str, tuple[int, str]] = {}
    for m in _ASSIGN.finditer(t):
        name = m.group(1).lower()
        if counts.get(name) == 1 and len(m.group(2)) <= 65536 and name not in ("_", "true", "false", "null"):
            consts[name] = (m.end(), m.group(2))
    if not consts:
        return t

    def reverse(m: re.Match[str]) -> str:
        c = consts.get((m.group(1) or m.group(2) or "").lower())
        return quote(literal(c[1])[::-1]) if c and m.start() >= c[0] else m.group(0)

    t = _REVERSE_VAR.sub(reverse, t)
    pattern = re.compile(r"\$(" + "|".join(re.escape(n) for n in consts) + r")\b(?!\s*[+\-*/]?=(?!=))", _I)

    def sub(m: re.Match[str]) -> str:
        end, lit = consts[m.group(1).lower()]
        if m.start() < end:
            return m.group(0)
        before = t[max(0, m.start() - 40):m.start()].rstrip()
        after = t[m.end():m.end() + 12].lstrip().lower()
        line_start = t.rfind("\n", 0, m.start()) + 1
        if t.count('"', line_start, m.start()) % 2:
            return m.group(0)  # inside a double-quoted string
        if before.endswith(("(", "+", ",", "|")) or re.search(r"(?:invoke-expression|iex)$", before, _I) \
                or after.startswith(("+", ")", "|", ".replace", "-f ", "-replace", "-join", "-split")):
            return lit
        return m.group(0)

    return pattern.sub(sub, t)


_CANON = {w.lower(): w for w in (
    "Invoke-Expression", "New-Object", "Net.WebClient", "DownloadString", "DownloadFile", "DownloadData",
    "Invoke-WebRequest", "Start-Process", "Invoke-Command", "Invoke-Mimikatz", "Invoke-Shellcode",
    "FromBase64String", "Reflection.Assembly", "VirtualAlloc", "CreateThread", "GetString", "Text.Encoding",
    "IO.Compression.GzipStream", "IO.Compression.DeflateStream", "IO.MemoryStream", "IO.StreamReader",
    "Set-MpPreference", "Add-MpPreference", "Get-WmiObject", "Invoke-WmiMethod", "Start-BitsTransfer",
    "Write-Output", "Write-Host", "Out-Null", "Get-Random", "ForEach-Object", "Where-Object",
)}
_CANON_RE = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in sorted(_CANON, key=len, reverse=True))
                       + r")(?![\w-])", _I)


def _case(t: str, b: Budget) -> str:
    return _CANON_RE.sub(lambda m: _CANON[m.group(1).lower()], t)


PASSES = (
    Pass("ticks", _ticks, decoding=False),
    Pass("iex-alias", _iex, decoding=False),
    Pass("base64", _base64),
    Pass("xor", _xor_arrays),
    Pass("char-codes", _code_lists),
    Pass("literals", _literals),
    Pass("format", _format),
    Pass("replace", _replace),
    Pass("join", _join),
    Pass("constants", _constants),
    Pass("iex", _unwrap),
)


def deobfuscate_powershell(text: str, budget: Budget) -> Rewrite:
    """Rewrite until nothing changes or the budget is spent; the result keeps every decoded layer inline."""
    r = rewrite(text, PASSES, budget)
    r.text = _case(r.text, budget)
    return r
