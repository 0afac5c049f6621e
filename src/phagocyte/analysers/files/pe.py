"""Windows PE files through pefile: imports, sections, entropy, signature, packers.

Why these features: a packed, unsigned binary that resolves process-injection and download APIs
at run time is what droppers and loaders look like; each trait is weak alone and adds up.
"""

from __future__ import annotations

import hashlib
from typing import Any

from phagocyte.analysers.files.entropy import entropy
from phagocyte.analysers.limits import ScanLimits
from phagocyte.analysers.verdict import Reason, Verdict

__all__ = ["analyse_pe", "is_pe"]

_API_GROUPS = {
    "process-injection": ({"virtualallocex", "writeprocessmemory", "createremotethread", "ntunmapviewofsection",
                           "queueuserapc", "setthreadcontext", "ntwritevirtualmemory"}, 0.4, "T1055"),
    "downloader": ({"urldownloadtofilea", "urldownloadtofilew", "internetopenurla", "internetopenurlw",
                    "internetreadfile", "winhttpopen", "httpsendrequesta"}, 0.2, "T1105"),
    "keylogging": ({"setwindowshookexa", "setwindowshookexw", "getasynckeystate", "getkeystate"}, 0.3, "T1056.001"),
    "anti-debug": ({"isdebuggerpresent", "checkremotedebuggerpresent", "ntqueryinformationprocess",
                    "outputdebugstringa"}, 0.1, "T1622"),
    "credential-access": ({"credenumeratea", "credenumeratew", "lsaenumeratelogonsessions", "samconnect",
                           "cryptunprotectdata"}, 0.3, "T1555"),
    "service-install": ({"createservicea", "createservicew"}, 0.15, "T1543.003"),
}
_PACKER_SECTIONS = {b"upx0": "UPX", b"upx1": "UPX", b".aspack": "ASPack", b".mpress1": "MPRESS", b".themida": "Themida",
                    b".vmp0": "VMProtect", b".petite": "Petite", b"pec2": "PECompact", b".nsp0": "NsPack"}


def is_pe(data: bytes) -> bool:
    if data[:2] != b"MZ" or len(data) < 64:
        return False
    off = int.from_bytes(data[60:64], "little")
    return data[off:off + 4] == b"PE\0\0"


def analyse_pe(data: bytes, path: str = "", limits: ScanLimits | None = None) -> Verdict:
    import pefile

    v = Verdict(path=path, kind="pe", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"],
                                               pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_TLS"]])
    except Exception as exc:  # pefile raises PEFormatError and others on damaged headers
        v.errors.append(f"not a readable PE: {exc}"[:300])
        v.add(Reason("pe", "malformed-headers", 0.3, "headers pefile cannot parse", ("T1027",)))
        v.rescore()
        return v
    try:
        _traits(pe, data, v)
    except (IndexError, ValueError, AttributeError, KeyError, pefile.PEFormatError) as exc:
        v.errors.append(f"PE structures damaged: {exc}"[:300])
        v.add(Reason("pe", "malformed-headers", 0.3, "structures pefile cannot read", ("T1027",)))
    finally:
        pe.close()
    v.rescore()
    return v


def _traits(pe: Any, data: bytes, v: Verdict) -> None:
    import pefile

    imports: set[str] = set()
    for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []) or []:
        for imp in entry.imports[:5000]:
            if imp.name:
                imports.add(imp.name.decode("latin-1").lower())
    for name, (apis, weight, tech) in _API_GROUPS.items():
        hit = sorted(imports & apis)
        if hit:
            v.add(Reason("pe", name, weight, ", ".join(hit[:4]), (tech,)))
    if imports and len(imports) <= 6 and {"loadlibrarya", "getprocaddress"} & imports:
        v.add(Reason("pe", "minimal-imports", 0.3, f"{len(imports)} imports incl. GetProcAddress", ("T1027.002",)))
    if not imports:
        v.add(Reason("pe", "no-imports", 0.2, "import table empty", ("T1027.002",)))
    high = []
    for s in pe.sections[:96]:
        name = s.Name.rstrip(b"\0").lower()
        if name in _PACKER_SECTIONS:
            v.add(Reason("pe", "packer", 0.3, _PACKER_SECTIONS[name], ("T1027.002",)))
        e = entropy(s.get_data()[: 16 * 1024 * 1024])
        if e > 7.2 and s.SizeOfRawData > 4096:
            high.append(f"{name.decode('latin-1')}={e:.2f}")
        if s.Characteristics & 0x20000000 and s.Characteristics & 0x80000000:
            v.add(Reason("pe", "writable-executable-section", 0.25, name.decode("latin-1"), ("T1027.002",)))
    if high:
        v.add(Reason("pe", "high-entropy", 0.3, ", ".join(high[:4]), ("T1027.002",)))
    sec = pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
    if not sec.VirtualAddress:
        v.add(Reason("pe", "unsigned", 0.05, "no Authenticode signature"))
    if getattr(pe, "DIRECTORY_ENTRY_TLS", None) is not None:
        v.add(Reason("pe", "tls-callbacks", 0.1, "TLS directory present", ("T1622",)))
    ep = pe.OPTIONAL_HEADER.AddressOfEntryPoint
    ep_section = next((s for s in pe.sections if s.contains_rva(ep)), None)
    if ep_section is None or not ep_section.Characteristics & 0x20000000:
        v.add(Reason("pe", "entry-point-outside-code", 0.3, "", ("T1027.002",)))
    overlay = pe.get_overlay_data_start_offset()
    if overlay and len(data) - overlay > 1024 and entropy(data[overlay: overlay + (1 << 20)]) > 7.5:
        v.add(Reason("pe", "encrypted-overlay", 0.2, f"{len(data) - overlay:,} bytes", ("T1027",)))
    v.indicators["imports"] = sorted(imports)[:200]
