"""Linux ELF files through pyelftools: sections, entropy, symbols, packers and telling strings."""

from __future__ import annotations

import hashlib
import io
import re

from phagocyte.analysers.files.entropy import entropy
from phagocyte.analysers.limits import ScanLimits
from phagocyte.analysers.verdict import Reason, Verdict

__all__ = ["analyse_elf", "is_elf"]

_STRINGS = (
    ("reverse-shell", re.compile(rb"/dev/tcp/|/bin/sh -i|sh -c .{0,40}\| ?nc "), 0.45, "T1059.004"),
    ("coin-miner", re.compile(rb"stratum\+tcp://|xmrig|cryptonight", re.I), 0.6, "T1496"),
    ("botnet", re.compile(rb"HTTPFLOOD|UDPFLOOD|/bin/busybox [A-Z]{4,}|LOLNOGTFO|killall -9 ", re.I), 0.6, "T1498"),
    ("persistence", re.compile(rb"/etc/rc\.local|/etc/cron|\.bashrc|systemctl enable", re.I), 0.15, "T1037"),
)
_SYMBOLS = {"ptrace": ("anti-debug", 0.15, "T1622"), "prctl": ("process-rename", 0.05, "T1036")}


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def analyse_elf(data: bytes, path: str = "", limits: ScanLimits | None = None) -> Verdict:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    v = Verdict(path=path, kind="elf", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if b"UPX!" in data[:4096] or b"UPX!" in data[-4096:]:
        v.add(Reason("elf", "packer", 0.35, "UPX", ("T1027.002",)))
    try:
        elf = ELFFile(io.BytesIO(data))
        sections = list(elf.iter_sections())[:256]
        if not sections or elf.get_section_by_name(".text") is None:
            v.add(Reason("elf", "no-section-table", 0.25, "sections stripped or absent", ("T1027",)))
        if elf.get_section_by_name(".symtab") is None:
            v.add(Reason("elf", "stripped", 0.05, "no symbol table"))
        high = [f"{s.name}={entropy(s.data()):.2f}" for s in sections
                if s["sh_size"] > 4096 and s["sh_type"] != "SHT_NOBITS" and entropy(s.data()[: 1 << 24]) > 7.2]
        if high:
            v.add(Reason("elf", "high-entropy", 0.3, ", ".join(high[:4]), ("T1027.002",)))
        dynsym = elf.get_section_by_name(".dynsym")
        names = {sym.name for sym in dynsym.iter_symbols()} if dynsym is not None and hasattr(dynsym, "iter_symbols") \
            else set()
        for sym, (name, weight, tech) in _SYMBOLS.items():
            if sym in names:
                v.add(Reason("elf", name, weight, sym, (tech,)))
        if elf.header["e_type"] == "ET_EXEC" and dynsym is None:
            v.add(Reason("elf", "static-binary", 0.1, "statically linked"))
    except (ELFError, ValueError, KeyError, IndexError, AssertionError) as exc:
        v.errors.append(f"not a readable ELF: {exc}"[:300])
        v.add(Reason("elf", "malformed-headers", 0.3, "headers pyelftools cannot parse", ("T1027",)))
    for name, rx, weight, tech in _STRINGS:
        m = rx.search(data[: 64 * 1024 * 1024])
        if m:
            v.add(Reason("elf", name, weight, m.group(0)[:60].decode("latin-1"), (tech,)))
    v.rescore()
    return v
