"""Each signal on a message written to show it, and a plain message that shows none."""

from __future__ import annotations

import pytest

from phagocyte.email.parse import parse_message
from phagocyte.email.signals import SIGNALS, collect
from phagocyte.email.verdict import analyse
from tests.email.messages import (
    CREDENTIAL_FORM_HTML,
    PDF_HEX_ESCAPED_JS,
    PDF_WITH_JS,
    PE_HEADER,
    SMUGGLING_HTML,
    message,
    qr_png,
    zip_bytes,
)


def codes(raw: bytes) -> dict[str, list[str]]:
    reasons, _ = collect(parse_message(raw))
    return {r.code: r.evidence for r in reasons}


def test_a_plain_business_message_raises_no_signal() -> None:
    v = analyse(message())
    assert v.reasons == [] and v.label == "clean" and v.score == 0.0


def _html(body: str) -> bytes:
    return message(html=f"<html><body>{body}</body></html>")


CASES: list[tuple[str, bytes, str]] = [
    # header
    ("display_name_address_mismatch", message(sender='"billing@paypal.com" <x@mailer.example.net>'), "paypal.com"),
    ("brand_impersonation_sender", message(sender="PayPal Security <alert@secure-mail.example.net>"), "paypal"),
    ("freemail_brand_sender", message(sender="Netflix Support <netflix.billing.team@gmail.com>"), "netflix"),
    ("brand_in_subject", message(subject="Your DocuSign envelope is ready"), "docusign"),
    ("reply_to_mismatch", message(headers={"Reply-To": "ben@other-company.example.com"}), "other-company"),
    ("reply_to_freemail", message(headers={"Reply-To": "ceo.private@gmail.com"}), "gmail.com"),
    ("return_path_mismatch", message(headers={"Return-Path": "<bounce@bulk.example.net>"}), "bulk.example.net"),
    ("spf_fail", message(headers={"Authentication-Results": "mx.example.org; spf=fail smtp.mailfrom=x.net"}),
     "spf=fail"),
    ("dkim_fail", message(headers={"Authentication-Results": "mx.example.org; dkim=fail header.d=x.net"}),
     "dkim=fail"),
    ("dmarc_fail", message(headers={"Authentication-Results": "mx.example.org; dmarc=fail header.from=x"}),
     "dmarc=fail"),
    ("spf_fail", message(headers={"Received-SPF": "Softfail (domain of x.net does not designate 1.2.3.4)"}),
     "softfail"),
    ("received_forged_helo", message(headers={
        "Received": "from mail.paypal.com (host-9.badisp.example.net [203.0.113.9]) by mx.example.org"}),
     "mail.paypal.com"),
    # url
    ("url_ip_literal", _html('<a href="http://203.0.113.7/login">Log in</a>'), "203.0.113.7"),
    ("url_punycode", _html('<a href="https://xn--pypal-4ve.com/">PayPal</a>'), "xn--pypal-4ve.com"),
    ("url_lookalike", _html('<a href="https://paypa1.com/signin">sign in</a>'), "paypal"),
    ("url_lookalike", _html('<a href="https://secure-amazon-billing.example.net/">Amazon</a>'), "amazon"),
    ("url_lookalike", _html('<a href="https://\u0430pple.com/id">Apple ID</a>'), "apple"),
    ("url_shortener", _html('<a href="https://bit.ly/3abcd">view</a>'), "bit.ly"),
    ("url_userinfo", _html('<a href="http://www.paypal.com@203.0.113.5/">PayPal</a>'), "@"),
    ("anchor_domain_mismatch", _html('<a href="https://evil.example.net/x">https://www.chase.com/login</a>'),
     "chase.com"),
    ("url_data_uri", _html('<a href="data:text/html;base64,PHNjcmlwdD4=">open document</a>'), "data:text/html"),
    ("url_suspicious_tld", _html('<a href="https://account-check.top/">check</a>'), "account-check.top"),
    ("html_credential_form", message(html=CREDENTIAL_FORM_HTML), "collect.example.net"),
    ("html_external_form", _html('<form action="https://survey.example.net/s"><input name="q"></form>'),
     "survey.example.net"),
    ("html_smuggling", message(html=SMUGGLING_HTML), "Blob"),
    ("html_meta_refresh", _html('<meta http-equiv="refresh" content="0;url=https://x.example.net/">'), "url="),
    ("html_script", _html("<script>document.write('x')</script>"), "script"),
    # attachment
    ("attachment_executable", message(attachments=[("setup.exe", PE_HEADER, "application/octet-stream")]),
     "setup.exe"),
    ("attachment_double_extension", message(attachments=[("invoice.pdf.exe", PE_HEADER, "application/pdf")]),
     ".pdf.exe"),
    ("attachment_type_mismatch", message(attachments=[("report.pdf", PE_HEADER, "application/pdf")]),
     "named .pdf but is pe"),
    ("attachment_archive", message(attachments=[("docs.zip", zip_bytes({"a.txt": b"hello"}), "application/zip")]),
     "a.txt"),
    ("attachment_nested_archive", message(attachments=[
        ("outer.zip", zip_bytes({"inner.zip": zip_bytes({"run.exe": PE_HEADER})}), "application/zip")]),
     "inner.zip"),
    ("attachment_executable", message(attachments=[
        ("outer.zip", zip_bytes({"inner.zip": zip_bytes({"run.exe": PE_HEADER})}), "application/zip")]),
     "run.exe"),
    ("attachment_encrypted_archive", message(attachments=[
        ("secure.zip", zip_bytes({"scan.js": b"WScript.Echo(1)"}, encrypt=True), "application/zip")]),
     "password-protected"),
    ("attachment_pdf_javascript", message(attachments=[("a.pdf", PDF_WITH_JS, "application/pdf")]), "JavaScript"),
    ("attachment_pdf_javascript", message(attachments=[("b.pdf", PDF_HEX_ESCAPED_JS, "application/pdf")]),
     "JavaScript"),
    ("attachment_pdf_launch", message(attachments=[("a.pdf", PDF_WITH_JS, "application/pdf")]), "Launch"),
    ("attachment_html", message(attachments=[("Remittance.html", CREDENTIAL_FORM_HTML.encode(), "text/html")]),
     "Remittance.html"),
    ("html_credential_form", message(attachments=[("Remittance.html", CREDENTIAL_FORM_HTML.encode(),
                                                   "text/html")]), "password"),
    ("html_smuggling", message(attachments=[("fax.htm", SMUGGLING_HTML.encode(), "text/html")]), "atob"),
    ("attachment_qr_code", message(attachments=[("scan.png", qr_png("https://paypa1.com/login"), "image/png")]),
     "https://paypa1.com/login"),
    ("url_lookalike", message(attachments=[("scan.png", qr_png("https://paypa1.com/login"), "image/png")]),
     "paypa1.com"),
    # language
    ("urgency", message(text="Your account will be suspended within 24 hours unless you act now."),
     "within 24 hours"),
    ("urgency", message(text="Please confirm your password immediately to keep your mailbox."),
     "confirm your password immediately"),
    ("urgency", message(text="Regularize sua conta imediatamente pelo link abaixo."),
     "regularize sua conta imediatamente"),
    ("credential_request", message(text="Please verify your account by signing in to the portal."),
     "verify your account"),
    ("credential_request", message(text="Atualize seus dados e confirme sua senha hoje."), "atualize seus dados"),
    ("payment_request", message(text="Please note our new bank details for the outstanding invoice."),
     "new bank details"),
    ("gift_card", message(text="I need five Apple gift cards for a client today, scratch them and send photos."),
     "gift cards"),
    ("bec_pattern", message(text="Are you available? I need you to handle a quick task for me. Keep this "
                                 "confidential.\nSent from my phone"), "are you available"),
    ("advance_fee", message(text="Congratulations, you have won the lottery. Claim your prize today."), "lottery"),
]


@pytest.mark.parametrize(("code", "raw", "evidence"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_signal_fires_with_its_evidence(code: str, raw: bytes, evidence: str) -> None:
    found = codes(raw)
    assert code in found, f"{code} not raised; got {sorted(found)}"
    assert any(evidence.lower() in e.lower() for e in found[code]), found[code]


def test_every_signal_has_a_test_case() -> None:
    tested = {c for c, _, _ in CASES}
    untested = set(SIGNALS) - tested - {
        # no hand-made file can show these without the real thing: an Office file with a VBA project, an
        # archive over the limits (tested in test_attachments), a PDF embedded file, links inside a PDF,
        # an attachment that cannot be opened, a chain of over 20 Received headers
        "attachment_office_macro", "attachment_archive_bomb", "attachment_pdf_embedded_file", "attachment_pdf_link",
        "attachment_unreadable", "received_many_hops"}
    assert not untested, f"write a case for {sorted(untested)}"


def test_brand_owners_are_not_flagged() -> None:
    raw = message(sender="PayPal <service@paypal.com>",
                  html='<a href="https://www.paypal.com/signin">https://www.paypal.com/signin</a>')
    found = codes(raw)
    assert not {"brand_impersonation_sender", "url_lookalike", "anchor_domain_mismatch"} & set(found), found


def test_qr_link_is_an_indicator_and_a_plain_image_is_not_a_qr_code() -> None:
    v = analyse(message(attachments=[("scan.png", qr_png("https://paypa1.com/login"), "image/png")]))
    assert "https://paypa1.com/login" in v.indicators["urls"]
    blank = analyse(message(attachments=[("logo.png", qr_png("x")[:8] + b"\x00" * 100, "image/png")]))
    assert "attachment_qr_code" not in {r.code for r in blank.reasons}


def test_bec_needs_a_short_message_without_links() -> None:
    raw = message(text="Are you available? " + "Long newsletter text about the quarterly results. " * 40
                  + " https://news.example.org/q3")
    assert "bec_pattern" not in codes(raw)


def test_signal_only_score_combines_and_critical_signals_floor_it() -> None:
    v = analyse(message(attachments=[("setup.exe", PE_HEADER, "application/octet-stream")]))
    assert v.label == "phishing" and v.score >= 0.75
    weak = analyse(message(subject="Your DocuSign envelope is ready"))
    assert weak.label == "clean" and 0 < weak.score < 0.3


def test_banded_distance_equals_full_distance() -> None:
    """The early-exit, banded edit distance agrees with the plain dynamic programme below its cap."""
    import random

    from phagocyte.email.domains import _distance

    def full(a: str, b: str, cap: int) -> int:
        prev2: list[int] = []
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i] + [0] * len(b)
            for j, cb in enumerate(b, 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
                if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                    cur[j] = min(cur[j], prev2[j - 2] + 1)
            prev2, prev = prev, cur
        return min(prev[-1], cap)

    rng = random.Random(0)
    for _ in range(3000):
        b = "".join(rng.choice("abcdef") for _ in range(rng.randint(1, 10)))
        a = list(b)
        for _ in range(rng.randint(0, 3)):  # insertions, deletions, transpositions
            op = rng.randrange(3)
            if op == 0:
                a.insert(rng.randrange(len(a) + 1), rng.choice("abcdef"))
            elif op == 1 and len(a) > 1:
                a.pop(rng.randrange(len(a)))
            elif len(a) > 1:
                k = rng.randrange(len(a) - 1)
                a[k], a[k + 1] = a[k + 1], a[k]
        for cap in (2, 3, 4):
            assert _distance("".join(a), b, cap) == full("".join(a), b, cap)


def test_lookalike_prefilter_finds_what_a_full_scan_finds() -> None:
    """The deletion-neighbourhood prefilter is exact: same brand as scanning every brand label."""
    import random

    from phagocyte.email.domains import _LONG_BRAND_LABELS, _distance, _label_imitates, _skeleton

    def scan(label: str) -> str | None:
        skel = _skeleton(label)
        for brand_label, brand in _LONG_BRAND_LABELS:
            d = _distance(skel, brand_label) if label != brand_label else 3
            if d == 1 or (d == 2 and len(brand_label) >= 9):
                return brand
        return None

    rng = random.Random(1)
    labels = []
    for brand_label, _ in _LONG_BRAND_LABELS:
        for _ in range(8):
            chars = list(brand_label)
            for _ in range(rng.randint(1, 3)):
                chars[rng.randrange(len(chars))] = rng.choice("aeilo01-")
            labels.append("".join(chars))
    hits = 0
    for label in labels:
        brand, how = _label_imitates(label)
        if how.startswith("homoglyph"):
            continue
        assert brand == scan(label), label
        hits += brand is not None
    assert hits > 50


@pytest.mark.parametrize("text", [
    "I set the time, but the timed commands are executed immediately, not at the time I asked for.",
    "If you are not the intended recipient, please notify the sender immediately and delete this e-mail.",
    "The stream stops and the device reboots immediately after the FPGA image is loaded.",
])
def test_immediately_in_ordinary_prose_is_not_urgency(text: str) -> None:
    # Technical mail and confidentiality notices say "immediately" without asking the reader to act.
    assert "urgency" not in codes(message(text=text))


def test_a_cdn_one_edit_from_a_brands_cdn_is_no_lookalike() -> None:
    """`sstatic.net` (Stack Overflow's CDN) is one edit from Google's `gstatic`: nobody reads either as
    a brand. A near miss of the brand's own name still is one."""
    from phagocyte.email.domains import host_facts

    assert host_facts("cdn.sstatic.net").lookalike is None
    assert host_facts("paypai.com").lookalike == "paypal"
    assert host_facts("goog1e.com").lookalike == "google"
