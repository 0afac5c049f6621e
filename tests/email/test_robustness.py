"""Hostile input: garbage, truncation, bombs, wrong charsets, huge parts, hostile HTML. Never a crash."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phagocyte.email.attachments import MAX_UNPACKED, inspect_attachment
from phagocyte.email.html import read_html
from phagocyte.email.parse import Attachment, EmailLimits, parse_message
from phagocyte.email.provenance import strip_provenance
from phagocyte.email.verdict import analyse
from tests.email.messages import CREDENTIAL_FORM_HTML, message, zip_bytes

HEADERS = st.sampled_from([b"From: ", b"To: ", b"Subject: ", b"Content-Type: ", b"Content-Transfer-Encoding: ",
                           b"MIME-Version: 1.0", b"Received: from ", b"Reply-To: ", b"Content-Disposition: "])
MIME_TOKENS = st.sampled_from([b"multipart/mixed; boundary=\"b\"", b"\n--b\n", b"\n--b--\n", b"message/rfc822",
                               b"text/html; charset=\"x-unknown\"", b"base64", b"quoted-printable", b"=?utf-8?b?",
                               b"?=",
                               b"<a href=\"", b"<form><input type=password>", b"\n\n", b"\r\n", b"\x00", b"\xff\xfe",
                               b"=\n", b"=ZZ", b"attachment; filename=\"a.zip\"", b"PK\x03\x04", b"%PDF"])
GARBAGE = st.lists(st.one_of(HEADERS, MIME_TOKENS, st.binary(max_size=64)), max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(GARBAGE)
def test_mime_garbage_never_crashes(raw: bytes) -> None:
    v = analyse(raw)
    assert v.label in ("phishing", "spam", "clean") and 0.0 <= v.score <= 1.0
    strip_provenance(raw)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(raw: bytes) -> None:
    assert analyse(raw).label in ("phishing", "spam", "clean")


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2000))
def test_truncated_real_shaped_message_never_crashes(cut: int) -> None:
    raw = message(html=CREDENTIAL_FORM_HTML, attachments=[("a.zip", zip_bytes({"x.txt": b"x"}), "application/zip")])
    analyse(raw[: len(raw) * cut // 2000])


def _nested(depth: int) -> bytes:
    inner = b"From: a@example.org\nSubject: core\n\nbody\n"
    for _ in range(depth):
        inner = b"From: a@example.org\nContent-Type: message/rfc822\n\n" + inner
    return inner


def test_nested_rfc822_bomb_stops_at_the_depth_limit() -> None:
    pm = parse_message(_nested(50), EmailLimits(max_depth=8))
    assert any("nested deeper than 8" in p for p in pm.problems), pm.problems
    assert pm.nested_messages == 8


def test_rfc822_nesting_beyond_the_parser_recursion_is_a_problem_not_a_crash() -> None:
    v = analyse(_nested(3000))
    assert v.problems, "a 3000-deep nesting must be reported"


def test_thousands_of_parts_are_cut() -> None:
    parts = b"".join(b"--b\nContent-Type: text/plain\n\nx\n" for _ in range(3000))
    raw = b"From: a@example.org\nContent-Type: multipart/mixed; boundary=\"b\"\n\n" + parts + b"--b--\n"
    pm = parse_message(raw, EmailLimits(max_parts=100))
    assert any("MIME parts" in p for p in pm.problems)


def test_unknown_charset_is_read_and_reported() -> None:
    raw = (b"From: a@example.org\nContent-Type: text/plain; charset=\"x-klingon\"\n\n"
           b"verify your account now\n")
    pm = parse_message(raw)
    assert "verify your account" in pm.text
    assert any("unknown charset" in p for p in pm.problems)


def test_wrong_charset_declared_decodes_with_replacement() -> None:
    raw = "From: a@example.org\nContent-Type: text/plain; charset=utf-8\n\nAtualize já\n".encode("latin-1")
    pm = parse_message(raw)
    assert "Atualize j" in pm.text


def test_huge_part_is_hashed_not_inspected() -> None:
    data = b"MZ" + b"\x00" * 3_000_000
    raw = message(attachments=[("big.bin", data, "application/octet-stream")])
    pm = parse_message(raw, EmailLimits(max_part_bytes=1_000_000))
    (att,) = pm.attachments
    assert att.size == len(data) and att.payload == b"" and len(att.sha256) == 64
    assert any("hashed, not inspected" in p for p in pm.problems)


def test_oversized_message_is_cut() -> None:
    raw = message(text="x" * 200_000)
    pm = parse_message(raw, EmailLimits(max_message_bytes=50_000))
    assert any("message cut" in p for p in pm.problems)


def test_zip_bomb_members_are_not_read() -> None:
    bomb = zip_bytes({"a.bin": b"\x00" * (MAX_UNPACKED + 1)})
    kind, findings = inspect_attachment(Attachment("bomb.zip", "application/zip", len(bomb), "", "", bomb))
    assert kind == "zip"
    assert any(f.code == "attachment_archive_bomb" for f in findings)


def test_corrupt_zip_is_a_finding() -> None:
    data = b"PK\x03\x04" + b"\x00" * 26
    _, findings = inspect_attachment(Attachment("x.zip", "application/zip", 30, "", "", data))
    assert any(f.code == "attachment_unreadable" for f in findings)


def test_deeply_nested_archives_stop() -> None:
    data = b"hello"
    for i in range(6):
        data = zip_bytes({f"level{i}.zip" if i else "a.txt": data})
    _, findings = inspect_attachment(Attachment("deep.zip", "application/zip", len(data), "", "", data))
    assert any("nested deeper" in f.evidence for f in findings)


HOSTILE_HTML = [
    "<" * 50_000,
    "<a href='" + "x" * 200_000,
    "<div>" * 5_000 + "text",
    "<script>" + "a" * 50_000,
    "<!--" * 5_000,
    "<a href=\"javascript:alert(1)\">x</a><img src=x onerror=alert(1)><svg onload=alert(1)>",
    "<form><input type=password><form><input type=password>" * 1000,
    "\x00\ud800<html>".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]


def test_hostile_html_never_crashes_and_stays_bounded() -> None:
    for html in HOSTILE_HTML:
        facts = read_html(html)
        assert len(facts.anchors) <= 500 and len(facts.forms) <= 500
    huge = read_html("<p>" + "a " * 1_000_001 + "</p>")
    assert any("HTML cut" in p for p in huge.problems)


def test_base64_with_garbage_is_decoded_leniently() -> None:
    body = base64.b64encode(b"please verify your account").decode()
    raw = (f"From: a@example.org\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
           f"{body[:10]}!!!{body[10:]}\n").encode()
    assert analyse(raw).label in ("phishing", "spam", "clean")
