"""PDF: actions and JavaScript, read with a small bounded parser (pdfid-style keywords plus
FlateDecode streams), and the JavaScript analysed like any script.

Why not a full PDF library: only the active parts matter here (`/JavaScript`, `/OpenAction`,
`/Launch`, embedded files), hostile PDFs break parsers, and every stream inflate is bounded.
"""

from __future__ import annotations

import hashlib
import re

from phagocyte.analysers.limits import Budget, ScanLimits
from phagocyte.analysers.scripts import analyse_text
from phagocyte.analysers.scripts.decoding import inflate
from phagocyte.analysers.verdict import Reason, Verdict

__all__ = ["analyse_pdf", "is_pdf"]

_KEYWORDS = {
    b"/JavaScript": ("javascript", 0.35, "T1059.007"),
    b"/JS": ("javascript", 0.35, "T1059.007"),
    b"/OpenAction": ("open-action", 0.15, "T1204.002"),
    b"/AA": ("additional-action", 0.15, "T1204.002"),
    b"/Launch": ("launch-action", 0.6, "T1204.002"),
    b"/EmbeddedFile": ("embedded-file", 0.25, "T1027.009"),
    b"/RichMedia": ("rich-media", 0.3, "T1203"),
    b"/XFA": ("xfa-form", 0.15, "T1203"),
    b"/JBIG2Decode": ("jbig2", 0.2, "T1203"),
    b"/SubmitForm": ("submit-form", 0.15, "T1056"),
}
_NAME_HEX = re.compile(rb"#([0-9a-fA-F]{2})")
_STREAM = re.compile(rb"<<(.{0,2000}?)>>\s*stream\r?\n", re.DOTALL)
_JS_STRING = re.compile(rb"/JS\s*\((.{0,200000}?)(?<!\\)\)", re.DOTALL)
_JS_HEX = re.compile(rb"/JS\s*<([0-9a-fA-F\s]{2,400000})>")
_MAX_STREAMS = 2000


def is_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:1024]


def _unescape(s: bytes) -> bytes:
    return re.sub(rb"\\([nrtbf()\\]|[0-7]{1,3})", lambda m: {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b",
                  b"f": b"\f"}.get(m.group(1), bytes([int(m.group(1), 8) & 0xFF]) if m.group(1).isdigit()
                  else m.group(1)), s)


def analyse_pdf(data: bytes, path: str = "", limits: ScanLimits | None = None) -> Verdict:
    limits = limits or ScanLimits()
    v = Verdict(path=path, kind="pdf", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    budget = Budget(limits)
    # Names may be hex-obfuscated (/J#61vaScript): normalise them before counting.
    norm = _NAME_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), data) if b"#" in data else data
    scripts: list[bytes] = [_unescape(m.group(1)) for m in _JS_STRING.finditer(norm)]
    scripts += [bytes.fromhex(re.sub(rb"\s", b"", m.group(1)).decode() + ("0" if len(re.sub(rb"\s", b"",
                m.group(1))) % 2 else "")) for m in _JS_HEX.finditer(norm)]
    inflated = 0
    for n, m in enumerate(_STREAM.finditer(data)):
        if n >= _MAX_STREAMS or not budget.ok():
            v.errors.append("stream limit reached")
            break
        if b"FlateDecode" not in m.group(1) and b"/Fl" not in m.group(1):
            continue
        end = data.find(b"endstream", m.end())
        raw = data[m.end(): end if end > 0 else m.end() + limits.max_decompressed_bytes]
        out = inflate(raw, budget)
        if out is None:
            continue
        inflated += len(out)
        if inflated > limits.max_decompressed_bytes:
            v.errors.append(f"PDF streams inflate past {limits.max_decompressed_bytes:,} bytes: rest not read")
            break
        norm += b"\n" + out
        if re.search(rb"\b(?:eval|unescape|String\.fromCharCode|app\.|this\.exportDataObject|util\.printf)", out):
            scripts.append(out)
    for kw, (name, weight, tech) in _KEYWORDS.items():
        count = len(re.findall(re.escape(kw) + rb"(?![A-Za-z])", norm))
        if count:
            v.add(Reason("pdf", name, weight, f"{kw.decode()} x{count}", (tech,)))
    if budget.stopped:
        v.errors.append(budget.stopped)
    if scripts:
        text = "\n".join(s.decode("latin-1") for s in scripts)[: limits.max_text_bytes]
        js = analyse_text(text, "javascript", path=path, limits=limits)
        for r in js.reasons:
            v.add(r)
        v.deobfuscated, v.layers, v.indicators = js.deobfuscated or text, js.layers, js.indicators
        v.errors.extend(js.errors)
    else:
        from phagocyte.analysers.indicators import extract_indicators

        uris = b"\n".join(re.findall(rb"/URI\s*\(([^)]{1,2048})\)", norm)).decode("latin-1")
        v.indicators = extract_indicators(uris, cap=limits.max_indicators)
    v.rescore()
    return v
