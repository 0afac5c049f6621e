"""Phishing e-mail analysis: one message's bytes in, an explained verdict out.

    parse.py        bytes -> ParsedMessage (bounded MIME walk, decoded text, links, attachments)
    html.py         links, forms, scripts and text from hostile HTML (stdlib parser, never rendered)
    domains.py      registrable domains, brands, look-alikes, homoglyphs, punycode, shorteners
    attachments.py  true type by magic bytes, archives, Office macros, PDF actions, HTML attachments
    signals.py      every rule: a Reason with its evidence (headers, URLs, attachments, language)
    provenance.py   strips era- and source-revealing headers and list footers (for fair evaluation)
    model.py        the learned classifier (hashed text + signal features, logistic regression)
    verdict.py      analyse(): signals + model -> label, calibrated score, reasons, indicators
    mailbox.py      .eml, .msg, mbox files and folders -> messages
    alerts.py       verdicts -> ECS alerts for triage

Nothing here fetches the network, renders HTML or runs what it analyses.
"""

from __future__ import annotations

from phagocyte.email.verdict import Verdict, analyse

__all__ = ["Verdict", "analyse"]
