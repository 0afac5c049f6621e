"""Attachments judged by what they are, not what they claim: magic bytes, archives, macros, PDF actions.

Everything is read from memory, within limits: archive members are listed and read only while
sizes and compression ratios stay sane, nested archives to a fixed depth, PDFs by a bounded byte
scan (no PDF library executes anything here), Office macros are detected with oletools. A file
that cannot be inspected is a finding with its reason, never an exception.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

from phagocyte.email.html import read_html
from phagocyte.email.parse import Attachment

__all__ = ["Finding", "inspect_attachment", "sniff"]

MAX_MEMBERS = 200
MAX_UNPACKED = 50 * 1024 * 1024
MAX_RATIO = 100.0
MAX_DEPTH = 3
MAX_SCAN = 10 * 1024 * 1024

RISKY_EXTENSIONS = frozenset({
    "exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "ps1", "lnk", "msi",
    "jar", "iso", "img", "vhd", "vhdx", "cpl", "dll", "reg", "chm", "xll", "appx", "msix", "svg",
})
ARCHIVES = frozenset({"zip", "rar", "7z", "gzip", "iso", "cab"})
# extension -> the true types it may carry
_EXPECTED: dict[str, tuple[str, ...]] = {
    "pdf": ("pdf",), "doc": ("ole",), "xls": ("ole",), "ppt": ("ole",), "msg": ("ole",),
    "docx": ("ooxml",), "xlsx": ("ooxml",), "pptx": ("ooxml",), "docm": ("ooxml",), "xlsm": ("ooxml",),
    "zip": ("zip", "ooxml"), "jar": ("zip",), "rar": ("rar",), "7z": ("7z",), "gz": ("gzip",), "tgz": ("gzip",),
    "png": ("png",), "jpg": ("jpeg",), "jpeg": ("jpeg",), "gif": ("gif",), "bmp": ("bmp",),
    "exe": ("pe",), "dll": ("pe",), "scr": ("pe",), "com": ("pe",), "cpl": ("pe",),
    "html": ("html",), "htm": ("html",), "shtml": ("html",), "iso": ("iso",), "img": ("iso",), "lnk": ("lnk",),
    "rtf": ("rtf",), "txt": ("text",), "csv": ("text",), "ics": ("text",), "vcf": ("text",),
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "pe"), (b"\x7fELF", "elf"), (b"\xcf\xfa\xed\xfe", "macho"), (b"\xfe\xed\xfa", "macho"),
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"), (b"%PDF", "pdf"),
    (b"Rar!\x1a\x07", "rar"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x1f\x8b", "gzip"), (b"MSCF", "cab"),
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp"),
    (b"{\\rtf", "rtf"), (b"L\x00\x00\x00\x01\x14\x02\x00", "lnk"),
)
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)?<(?:!doctype\s+html|html|head|body|script|form|meta)\b", re.I | re.S)
_PDF_NAME_ESC = re.compile(rb"#([0-9a-fA-F]{2})")
_PDF_URI = re.compile(rb"/URI\s*\(([^)]{1,2000})\)")


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    evidence: str
    url: str = ""
    """A link the attachment carries (decoded from a QR code), to be judged like the message's links."""


def sniff(data: bytes) -> str:
    """True type by magic bytes: pe, elf, zip, ooxml, ole, pdf, png, html, iso, text, binary, ..."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            if kind == "zip" and b"[Content_Types].xml" in data[:65536]:
                return "ooxml"
            if kind == "bmp" and len(data) < 26:
                continue
            return kind
    if len(data) > 0x8006 and data[0x8001:0x8006] == b"CD001":
        return "iso"
    head = data[:4096]
    if _HTML_START.match(head) or b"<html" in head.lower():
        return "html"
    if not head:
        return "empty"
    if b"\x00" in head:
        return "binary"
    return "text"


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def inspect_attachment(att: Attachment) -> tuple[str, list[Finding]]:
    """(true type, findings) of one attachment or archive member, recursively within the limits."""
    findings: list[Finding] = []
    kind = _inspect(att.name, att.payload, findings, 0) if att.payload else "unread"
    return kind, findings


def _inspect(name: str, data: bytes, out: list[Finding], depth: int) -> str:
    kind = sniff(data)
    ext = extension(name)
    label = name or "(unnamed)"
    if ext and ext in _EXPECTED and kind not in _EXPECTED[ext] and kind not in ("empty", "binary"):
        out.append(Finding("attachment_type_mismatch", f"{label}: named .{ext} but is {kind}"))
    parts = name.lower().rsplit(".", 2)
    if len(parts) == 3 and parts[2] in RISKY_EXTENSIONS and len(parts[1]) <= 4 and parts[1] in _EXPECTED:
        out.append(Finding("attachment_double_extension", f"{label}: .{parts[1]}.{parts[2]}"))
    if kind in ("pe", "elf", "macho", "lnk") or ext in RISKY_EXTENSIONS - {"iso", "img", "svg"}:
        what = kind if kind in ("pe", "elf", "macho", "lnk") else "." + ext
        out.append(Finding("attachment_executable", f"{label}: {what}"))
    if kind in ("zip", "rar", "7z", "gzip", "iso", "cab"):
        if depth > 0:
            out.append(Finding("attachment_nested_archive", f"{label}: {kind} inside an archive (depth {depth + 1})"))
        if kind == "zip":
            _zip(label, data, out, depth)
        elif kind in ("iso", "cab") or kind in ("rar", "7z"):
            out.append(Finding("attachment_archive", f"{label}: {kind} (not opened: no safe reader here)"))
    elif kind in ("ole", "ooxml"):
        _office(label, data, out)
    elif kind == "pdf":
        _pdf(label, data, out)
    elif kind == "html" or ext in ("html", "htm", "shtml", "svg"):
        _html(label, data, out)
    elif kind in ("png", "jpeg", "gif", "bmp"):
        _qr(label, data, out)
    return kind


def _zip(label: str, data: bytes, out: list[Finding], depth: int) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as exc:
        out.append(Finding("attachment_unreadable", f"{label}: zip not readable ({type(exc).__name__})"))
        return
    names = [i.filename for i in infos[:20]]
    out.append(Finding("attachment_archive", f"{label}: zip with {len(infos)} member(s): {', '.join(names)[:300]}"))
    if any(i.flag_bits & 0x1 for i in infos):
        out.append(Finding("attachment_encrypted_archive", f"{label}: password-protected members"))
    if len(infos) > MAX_MEMBERS:
        out.append(Finding("attachment_unreadable", f"{label}: {len(infos)} members, over {MAX_MEMBERS}: not opened"))
        return
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if total > MAX_UNPACKED or (total > 1_000_000 and total / packed > MAX_RATIO):
        out.append(Finding("attachment_archive_bomb",
                           f"{label}: {total:,} bytes unpacked from {packed:,} (limits {MAX_UNPACKED:,}, ratio "
                           f"{MAX_RATIO:.0f}): members not read"))
        return
    if depth + 1 >= MAX_DEPTH:
        out.append(Finding("attachment_unreadable", f"{label}: archives nested deeper than {MAX_DEPTH}: not opened"))
        return
    for info in infos:
        if info.is_dir() or info.flag_bits & 0x1:
            if info.flag_bits & 0x1:
                _inspect_name_only(f"{label}!{info.filename}", out)
            continue
        try:
            with zf.open(info) as fh:
                member = fh.read(MAX_UNPACKED + 1)[:MAX_UNPACKED]
        except Exception as exc:
            out.append(Finding("attachment_unreadable", f"{label}!{info.filename}: {type(exc).__name__}"))
            continue
        _inspect(f"{label}!{info.filename}", member, out, depth + 1)


def _inspect_name_only(name: str, out: list[Finding]) -> None:
    ext = extension(name)
    if ext in RISKY_EXTENSIONS:
        out.append(Finding("attachment_executable", f"{name}: .{ext} (encrypted member, by name)"))


def _office(label: str, data: bytes, out: list[Finding]) -> None:
    if len(data) > MAX_SCAN:
        out.append(Finding("attachment_unreadable", f"{label}: Office file over {MAX_SCAN:,} bytes: macros unchecked"))
        return
    try:
        from oletools.olevba import VBA_Parser
    except ImportError:  # pragma: no cover - oletools is a declared dependency
        out.append(Finding("attachment_unreadable", f"{label}: oletools missing: macros not checked"))
        return
    try:
        vba = VBA_Parser(label, data=data)
        try:
            if vba.detect_vba_macros():
                kinds = sorted({kw for typ, kw, _ in vba.analyze_macros() if typ in ("AutoExec", "Suspicious")})[:8]
                out.append(Finding("attachment_office_macro",
                                   f"{label}: VBA macros" + (f" ({', '.join(kinds)})" if kinds else "")))
        finally:
            vba.close()
    except Exception as exc:
        out.append(Finding("attachment_unreadable", f"{label}: Office file not readable ({type(exc).__name__})"))


MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_PIXELS = 25_000_000


def _qr(label: str, data: bytes, out: list[Finding]) -> None:
    """QR codes in an image (quishing moves the link where text filters do not look), with zxing-cpp."""
    if len(data) > MAX_IMAGE_BYTES:
        return
    try:
        import warnings

        import zxingcpp
        from PIL import Image
    except ImportError:  # pragma: no cover - declared dependencies; QR decoding is skipped without them
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
            src = Image.open(io.BytesIO(data))
            if src.width * src.height > MAX_IMAGE_PIXELS:
                raise ValueError("image too large")
            src.draft("L", (2000, 2000))
            gray = src.convert("L")
        qr = zxingcpp.BarcodeFormats([zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.MicroQRCode])
        codes = zxingcpp.read_barcodes(gray, formats=qr)
    except Exception as exc:
        out.append(Finding("attachment_unreadable", f"{label}: image not decoded ({type(exc).__name__})"))
        return
    for code in codes[:5]:
        text = code.text[:2000]
        url = text if text.lower().startswith(("http://", "https://", "www.")) else ""
        out.append(Finding("attachment_qr_code", f"{label}: QR code -> {text[:200]}", url))


def _pdf(label: str, data: bytes, out: list[Finding]) -> None:
    body = _PDF_NAME_ESC.sub(lambda m: bytes([int(m.group(1), 16)]), data[:MAX_SCAN])
    if re.search(rb"/(JavaScript|JS)\b", body):
        out.append(Finding("attachment_pdf_javascript", f"{label}: /JavaScript action"))
    if re.search(rb"/Launch\b", body):
        out.append(Finding("attachment_pdf_launch", f"{label}: /Launch action"))
    if re.search(rb"/EmbeddedFile\b", body):
        out.append(Finding("attachment_pdf_embedded_file", f"{label}: embedded file"))
    uris = [m.group(1).decode("latin-1", "replace") for m in _PDF_URI.finditer(body)][:20]
    if uris:
        out.append(Finding("attachment_pdf_link", f"{label}: " + ", ".join(uris)[:400]))


def _html(label: str, data: bytes, out: list[Finding]) -> None:
    facts = read_html(data[:MAX_SCAN].decode("utf-8", "replace"))
    for form in facts.forms:
        if form.password:
            out.append(Finding("html_credential_form", f"{label}: form with a password field, action "
                                                       f"{form.action[:200] or '(none)'}"))
            break
    if facts.smuggling:
        out.append(Finding("html_smuggling", f"{label}: script with {', '.join(facts.smuggling[:6])}"))
    if facts.meta_refresh:
        out.append(Finding("html_meta_refresh", f"{label}: refresh to {facts.meta_refresh[0][:200]}"))
    for href in [a.href for a in facts.anchors] + facts.sources:
        if href.lower().startswith("data:text/html") or href.lower().startswith("data:application"):
            out.append(Finding("url_data_uri", f"{label}: {href[:80]}"))
            break
