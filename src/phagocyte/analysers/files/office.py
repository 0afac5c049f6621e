"""Office documents: VBA and Excel 4 (XLM) macros through oletools' olevba, then the VBA
deobfuscator and heuristics on the macro source.

Why olevba: it reads OLE, OpenXML, Word 2003 XML, MHT and SLK containers, decompresses VBA
streams and extracts XLM formulas; what it flags (auto-exec, suspicious keywords, IOCs) is kept
as reasons beside our own."""

from __future__ import annotations

import hashlib
import logging

from phagocyte.analysers.limits import ScanLimits
from phagocyte.analysers.scripts import analyse_text
from phagocyte.analysers.verdict import Reason, Verdict

__all__ = ["analyse_office", "is_office"]

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WEIGHTS = {"AutoExec": 0.2, "Suspicious": 0.12}
_STRONG = {"shell", "wscript.shell", "powershell", "urldownloadtofile", "createobject", "callbyname", "exec",
           "run", "environ", "adodb.stream", "savetofile", "xmlhttp", "virtualalloc", "rtlmovememory",
           "createthread", "lib", "call", "formula", "register", "executeexcel4macro"}


def is_office(data: bytes) -> bool:
    head = data[:8192]
    return head.startswith(_OLE) or (head.startswith(b"PK\x03\x04") and (
        b"word/" in data[:65536] or b"xl/" in data[:65536] or b"ppt/" in data[:65536]
        or b"[Content_Types].xml" in data[:65536]))


def analyse_office(data: bytes, path: str = "", limits: ScanLimits | None = None) -> Verdict:
    limits = limits or ScanLimits()
    v = Verdict(path=path, kind="office", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    from oletools import olevba  # imported on use: it is slow to import and logs on its own

    logging.getLogger("olevba").setLevel(logging.CRITICAL)
    try:
        parser = olevba.VBA_Parser(path or "document", data=data)
    except Exception as exc:  # oletools raises bare Exceptions on unknown or damaged containers
        v.errors.append(f"not readable as an Office document: {exc}"[:300])
        return v
    try:
        if parser.detect_is_encrypted():
            v.add(Reason("office", "encrypted-document", 0.25, "password-protected container", ("T1027",)))
        if not parser.detect_vba_macros():
            v.rescore()
            return v
        sources = []
        for _, stream, _, code in parser.extract_macros():
            if code and len(code) < limits.max_text_bytes:
                sources.append(f"' --- {stream}\n{code}")
        xlm = "xlm" if getattr(parser, "xlm_macros", None) else None
        code = "\n".join(sources)[: limits.max_text_bytes]
        v.add(Reason("office", "macros", 0.1, xlm or "vba", ("T1204.002",)))
        for kind, keyword, description in parser.analyze_macros() or []:
            w = _WEIGHTS.get(kind, 0.0)
            if kind == "Suspicious" and str(keyword).lower() in _STRONG:
                w = 0.2
            if kind == "IOC":
                v.indicators.setdefault("olevba-ioc", []).append(str(keyword)[:200])
            if w:
                v.add(Reason("office", f"{kind.lower()}:{str(keyword).lower()}"[:60], w, str(description)[:120]))
        if xlm:
            v.add(Reason("office", "excel4-macros", 0.35, "XLM formulas", ("T1059",)))
        try:
            if parser.detect_vba_stomping():
                v.add(Reason("office", "vba-stomping", 0.6, "p-code differs from source", ("T1564.007",)))
        except Exception:  # p-code disassembly fails on some files; stomping is then unknown
            v.errors.append("VBA stomping check failed")
    except Exception as exc:
        v.errors.append(f"macro extraction failed: {exc}"[:300])
        v.rescore()
        return v
    finally:
        parser.close()
    script = analyse_text(code, "vbscript", path=path, limits=limits)
    for r in script.reasons:
        v.add(r)
    v.indicators = {**script.indicators, **{k: x for k, x in v.indicators.items() if k not in script.indicators}}
    v.deobfuscated = script.deobfuscated or code
    v.layers = script.layers
    v.errors.extend(script.errors)
    v.rescore()
    return v
