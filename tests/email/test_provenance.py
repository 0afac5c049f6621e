"""Provenance stripping: what tells where and when a message came from goes; what the sender wrote stays."""

from __future__ import annotations

from phagocyte.email.parse import parse_message
from phagocyte.email.provenance import KEPT_HEADERS, PLACEHOLDERS, strip_provenance
from tests.email.messages import message

FOOTER = ("\n_______________________________________________\nUSRP-users mailing list\n"
          "USRP-users@lists.ettus.com\nhttp://lists.ettus.com/mailman/listinfo/usrp-users_lists.ettus.com\n")
LIST_HEADERS = {
    "List-Id": "<usrp-users.lists.ettus.com>",
    "List-Unsubscribe": "<mailto:usrp-users-leave@lists.ettus.com>",
    "Delivered-To": "lists+usrp-users@lfdr.de",
    "Received": "from mm2.emwd.com (mm2.emwd.com [172.104.30.75]) by mail.lfdr.de (Postfix)",
    "X-Mailer": "Evolution 1.0",
    "Authentication-Results": "mx.example.org; dkim=pass",
    "Reply-To": "Ben Miller <ben@example.org>",
}


def test_only_sender_subject_and_mime_headers_remain() -> None:
    raw = message(sender="Ben Miller via USRP-users <usrp-users@lists.ettus.com>",
                  subject="Re: [USRP-users] B210 clock drift", text="Hi all,\nthe fix is in 4.6.\n" + FOOTER,
                  headers=LIST_HEADERS)
    pm = parse_message(strip_provenance(raw))
    assert {k.lower() for k, _ in pm.headers} <= KEPT_HEADERS | {k.lower() for k, _ in PLACEHOLDERS}
    assert pm.subject == "Re: B210 clock drift"
    assert pm.address("from") == ("Ben Miller", "ben@example.org"), "the list's From rewriting is undone"
    assert pm.get("reply-to") == ""
    assert [pm.get(k) for k, _ in PLACEHOLDERS] == [v for _, v in PLACEHOLDERS], "constant To, Date, Message-ID"
    assert "the fix is in 4.6" in pm.text
    assert "mailing list" not in pm.text and "listinfo" not in pm.text


def test_html_footer_and_quoted_year_go_too() -> None:
    html = ("<p>Thanks!</p><p>On Wed, May 1, 2019 at 8:52 PM Ann wrote:</p>"
            "<div>_______________________________________________<br>\nUSRP-users mailing list<br>\n"
            '<a href="http://lists.ettus.com/mailman/listinfo/usrp-users">listinfo</a><br>\n</div>')
    pm = parse_message(strip_provenance(message(html=html)))
    assert "Thanks!" in pm.text
    assert "2019" not in pm.text and "YEAR" in pm.text
    assert "mailing list" not in pm.text


def test_corpus_placeholders_become_neutral() -> None:
    raw = message(to="phishing@pot", text="Dear phishing@pot, your mailbox is full.\nzzzz@spamassassin.taint.org")
    stripped = strip_provenance(raw)
    assert b"phishing@pot" not in stripped and b"taint.org" not in stripped and b"zzzz" not in stripped
    assert "user@example.com" in parse_message(stripped).text


def test_attachments_survive_stripping() -> None:
    raw = message(attachments=[("a.pdf", b"%PDF-1.4 /JavaScript", "application/pdf")], headers=LIST_HEADERS)
    pm = parse_message(strip_provenance(raw))
    assert [a.name for a in pm.attachments] == ["a.pdf"] and pm.attachments[0].payload.startswith(b"%PDF")


def test_unparseable_message_falls_back_to_a_header_filter() -> None:
    raw = b"From: a@example.org\nReceived: from x\n\tby y\nX-Spam: yes\nSubject: hi\n\nbody\n"
    out = strip_provenance(raw)
    assert b"Received" not in out and b"X-Spam" not in out and b"Subject: hi" in out and b"body" in out
    assert b"To: recipient@example.com" in out
