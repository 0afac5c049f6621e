"""Documents and binaries: PDF actions and JavaScript, PE and ELF traits, Office containers."""

from __future__ import annotations

import io
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from phagocyte.analysers.files import analyse_elf, analyse_office, analyse_pdf, analyse_pe
from phagocyte.analysers.scan import kind_of


def _pdf(objects: list[bytes]) -> bytes:
    body = b"%PDF-1.7\n"
    for n, obj in enumerate(objects, 1):
        body += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    return body + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"


def test_pdf_with_open_action_javascript_in_a_compressed_stream() -> None:
    js = b"var s = unescape('%u0c0c%u0c0c%u0c0c%u0c0c'); app.alert('x'); eval(s);"
    stream = zlib.compress(js)
    pdf = _pdf([b"<< /Type /Catalog /OpenAction 2 0 R >>",
                b"<< /S /JavaScript /JS 3 0 R >>",
                b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"])
    v = analyse_pdf(pdf, "a.pdf")
    names = {r.name for r in v.reasons}
    assert {"open-action", "javascript", "heap-spray"} <= names, names
    assert v.label == "malicious"


def test_pdf_launch_action_with_hex_obfuscated_name() -> None:
    pdf = _pdf([b"<< /Type /Catalog /OpenAction << /S /L#61unch /F (cmd.exe) >> >>"])
    v = analyse_pdf(pdf, "b.pdf")
    assert "launch-action" in {r.name for r in v.reasons}


def test_plain_pdf_is_clean() -> None:
    v = analyse_pdf(_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]), "c.pdf")
    assert v.label == "clean" and not v.reasons


def _pip_exe() -> Path:
    import pip

    exe = Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe"
    if not exe.exists():
        pytest.skip("pip's distlib launcher (a real PE) is not installed here")
    return exe


def test_real_pe_launcher_is_parsed_and_not_malicious() -> None:
    data = _pip_exe().read_bytes()
    assert kind_of(data, "t64.exe") == "pe"
    v = analyse_pe(data, "t64.exe")
    assert not v.errors
    assert "createprocessw" in v.indicators["imports"]
    assert v.label != "malicious", v.to_json()


def test_truncated_pe_is_a_recorded_failure() -> None:
    data = _pip_exe().read_bytes()[:400]
    v = analyse_pe(data, "cut.exe")
    assert v.label in ("clean", "suspicious")


def test_real_elf_interpreter_is_parsed() -> None:
    data = Path(sys.executable).resolve().read_bytes()
    assert kind_of(data, "python") == "elf"
    v = analyse_elf(data, "python")
    assert not v.errors and v.label == "clean", v.to_json()
    assert analyse_elf(data[:200], "cut").errors


def test_office_container_without_macros_is_clean() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    data = buf.getvalue()
    assert kind_of(data, "a.docx") == "office"
    v = analyse_office(data, "a.docx")
    assert v.label == "clean" and not any(r.name == "macros" for r in v.reasons)


def test_damaged_ole_is_a_recorded_failure() -> None:
    v = analyse_office(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "bad.doc")
    assert v.label in ("clean", "suspicious")
