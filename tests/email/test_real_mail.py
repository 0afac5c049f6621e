"""Real messages from the public corpora (sampled): read without a crash, indicators extracted, stripped clean."""

from __future__ import annotations

import random
from pathlib import Path

from phagocyte.email.parse import parse_message
from phagocyte.email.provenance import KEPT_HEADERS, PLACEHOLDERS, strip_provenance
from phagocyte.email.verdict import analyse
from tests.conftest import evaldata


def _sample(folder: Path, n: int, pattern: str = "*") -> list[Path]:
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.name != "MANIFEST.md")
    return random.Random(3).sample(files, min(n, len(files)))


def test_phishing_pot_messages_give_verdicts_and_indicators() -> None:
    files = _sample(evaldata("email") / "phishing_pot" / "email", 60, "*.eml")
    verdicts = [analyse(f.read_bytes(), str(f)) for f in files]
    assert all(v.label in ("phishing", "spam", "clean") for v in verdicts)
    with_urls = sum(bool(v.indicators["urls"]) for v in verdicts)
    assert with_urls >= 40, f"only {with_urls}/60 phishing messages with URLs"
    assert sum(bool(v.reasons) for v in verdicts) >= 40, "signals should fire on most real phishing"
    assert all(v.indicators["sender"]["from"] or v.problems or not v.indicators["sender"]["from_name"]
               for v in verdicts)
    for v in verdicts:
        for a in v.indicators["attachments"]:
            assert len(str(a["sha256"])) == 64 and a["true_type"]


def test_ham_corpora_are_read_and_mostly_clean_by_signals_alone() -> None:
    easy = _sample(evaldata("email") / "spamassassin_public_corpus" / "easy-ham-1", 60)
    modern = _sample(evaldata("email_modern_ham") / "usrp-users", 60, "*.eml")
    labels = [analyse(f.read_bytes()).label for f in easy + modern]
    assert labels.count("phishing") <= 12, f"{labels.count('phishing')}/120 ham judged phishing by signals alone"


def test_stripping_removes_list_and_era_cues_from_real_mail() -> None:
    for f in _sample(evaldata("email_modern_ham") / "usrp-users", 30, "*.eml"):
        pm = parse_message(strip_provenance(f.read_bytes()))
        assert {k.lower() for k, _ in pm.headers} <= KEPT_HEADERS | {k.lower() for k, _ in PLACEHOLDERS}
        assert "[USRP-users]" not in pm.subject
        assert "mailman/listinfo" not in pm.text, f.name
        assert " via USRP-users" not in pm.get("from"), f.name
    for f in _sample(evaldata("email") / "phishing_pot" / "email", 30, "*.eml"):
        stripped = strip_provenance(f.read_bytes())
        assert b"phishing@pot" not in stripped, f.name
        assert parse_message(stripped).get("received") == ""
