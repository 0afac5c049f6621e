"""What is not a log, judged inside `phago run`: e-mails, scripts, documents and executables.

Ingest leaves a source it cannot read as log records `unrecognised`. `phago run` hands those files
to the analysers by content (an RFC 822 / mbox / Outlook message goes to the e-mail analyser,
anything else to the file scanner), and the script analysers also read the PowerShell script
blocks and process command lines already in the store. A file that is neither mail nor code stays
`unrecognised`; one that cannot be read says why. Verdicts that reach `phishing` (mail) or
`suspicious` (code) become alerts in the store, beside Sigma's, so triage correlates a phishing
mail, the script it dropped and the process that ran it into one incident. Nothing is executed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phagocyte.analysers.events import EventScanStats, scan_store
from phagocyte.analysers.scan import Scanner
from phagocyte.errors import ConfigError, PhagocyteError

__all__ = ["ArtefactReport", "ArtefactVerdict", "analyse_artefacts", "looks_like_email", "team_models"]

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HEADER = re.compile(rb"^([A-Za-z][A-Za-z0-9-]{0,60}):[ \t]")
_MAIL_HEADERS = {b"from", b"to", b"subject", b"date", b"message-id", b"received", b"return-path",
                 b"mime-version", b"reply-to", b"delivered-to", b"content-type", b"x-mailer", b"cc"}
_FILE_RANK = {"clean": 0, "suspicious": 1, "malicious": 2}


def looks_like_email(head: bytes, name: str = "") -> bool:
    """An RFC 822 message (two or more header lines up front, one of them a mail header), an mbox,
    or an Outlook `.msg` (an OLE2 file named so; other OLE2 files are Office documents)."""
    if head.startswith(_OLE):
        return name.lower().endswith(".msg")
    if head.startswith(b"From ") and b"\n" in head[:1024]:
        head = head.split(b"\n", 1)[1]
    names: list[bytes] = []
    for line in head[:8192].splitlines():
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            continue  # folded header continuation
        m = _HEADER.match(line)
        if m is None:
            return False
        names.append(m.group(1).lower())
    return len(names) >= 2 and bool(_MAIL_HEADERS & set(names)) and b"from" in names


@dataclass(frozen=True, slots=True)
class ArtefactVerdict:
    """One verdict of `phago run`'s artefact stage, whatever analyser gave it."""

    path: str
    analyser: str
    """`email` or `scan`."""
    kind: str
    """`email`, or what the scanner took the file for (`powershell`, `office`, `pe`, `data`...)."""
    label: str
    score: float
    reasons: list[str]
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "analyser": self.analyser, "kind": self.kind, "label": self.label,
                "score": round(self.score, 4), "reasons": self.reasons, "errors": self.errors}


@dataclass
class ArtefactReport:
    verdicts: list[ArtefactVerdict] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    unrecognised: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of files that are neither mail nor code the scanner knows."""
    events: EventScanStats | None = None

    def by_label(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v.label] = out.get(v.label, 0) + 1
        return out


def _team_model_folders(home: Path) -> tuple[Path | None, Path | None]:
    """(e-mail model folder, script model folder) a team trained into `home/models`; None where absent."""
    email, scan = home / "models" / "email", home / "models" / "scan"
    return (email if (email / "model.json").exists() else None, scan if (scan / "model.joblib").exists() else None)


def team_model_problems(home: Path) -> list[str]:
    """Why a model trained into `home/models/{email,scan}` cannot be used by this version (an older format,
    an unreadable file), read from the models' metadata only: a run checks this before ingesting."""
    email, scan = _team_model_folders(home)
    problems = []
    if email is not None:
        from phagocyte.email.model import EmailModel

        problems.append(EmailModel.problem(email))
    if scan is not None:
        from phagocyte.analysers.classifier import ScriptClassifier

        problems.append(ScriptClassifier.problem(scan))
    return [p for p in problems if p]


def team_models(home: Path) -> tuple[Any, Any]:
    """(e-mail model, script model) that a team trained into `home/models/{email,scan}`; None where absent
    (the analysers then judge by their signals and heuristics alone). A model this version cannot use
    raises `ConfigError` saying which and how to retrain it."""
    email, scan = _team_model_folders(home)
    email_model = script_model = None
    try:
        if email is not None:
            from phagocyte.email.model import EmailModel

            email_model = EmailModel.load(email)
        if scan is not None:
            from phagocyte.analysers.classifier import ScriptClassifier

            script_model = ScriptClassifier.load(scan)
    except (ValueError, OSError, KeyError, EOFError, PhagocyteError) as exc:
        raise ConfigError(f"team model unusable: {exc}") from exc
    return email_model, script_model


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def _email_verdicts(path: Path, model: Any, report: ArtefactReport) -> None:
    from phagocyte.email.alerts import verdict_to_alert
    from phagocyte.email.mailbox import Skipped, iter_messages
    from phagocyte.email.verdict import analyse

    starts: list[int] | None = None
    for item in iter_messages([path]):
        if isinstance(item, Skipped):
            report.verdicts.append(ArtefactVerdict(item.path, "email", "email", "unreadable", 0.0, [], [item.reason]))
            continue
        label, raw = item
        v = analyse(raw, label, model=model).to_dict()
        report.verdicts.append(ArtefactVerdict(
            label, "email", "email", v["label"], float(v["score"]),
            [f"{r['code']}: {', '.join(map(str, r['evidence'][:1]))}"[:200] for r in v["reasons"][:5]],
            list(v.get("problems") or [])))
        if v["label"] == "phishing":
            alert = verdict_to_alert(v)
            alert.setdefault("@timestamp", _mtime(path))
            # the reference an analyst checks: the file and the 1-based line where the message starts
            alert["log.file.path"], line = str(path), 1
            if label != str(path):  # message `i` of an mbox
                starts = starts if starts is not None else _mbox_starts(path)
                i = int(label.rsplit(":", 1)[1])
                line = starts[i - 1] if i <= len(starts) else 1
            alert["log.file.line"] = line
            report.alerts.append(alert)


def _mbox_starts(path: Path) -> list[int]:
    """1-based line numbers of an mbox's `From ` separator lines (the start of each message, as
    Python's mailbox module splits it)."""
    starts: list[int] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.startswith(b"From "):
                starts.append(n)
    return starts


def _scan_verdict(path: Path, scanner: Scanner, report: ArtefactReport, min_label: str) -> None:
    v = scanner.scan_path(path)
    if v.kind == "data" and not v.errors:
        report.unrecognised.append((str(path), "not a log, an e-mail or code the scanner reads"))
        return
    top = sorted(v.reasons, key=lambda r: -r.weight)
    report.verdicts.append(ArtefactVerdict(str(path), "scan", v.kind, v.label, v.score,
                                           [str(r)[:200] for r in top[:5]], list(v.errors)))
    if _FILE_RANK[v.label] >= _FILE_RANK[min_label]:
        alert = v.to_alert(timestamp=_mtime(path))
        alert["rule.category"] = "file"
        report.alerts.append(alert)


def analyse_artefacts(paths: Iterable[str | Path], *, scanner: Scanner, email_model: Any = None,
                      store: Any = None, min_label: str = "suspicious") -> ArtefactReport:
    """Judge each file of `paths` (mail or code, by content) and, when a store is given, the script
    blocks and command lines in it. Never raises on a bad file: its verdict carries the reason."""
    report = ArtefactReport()
    for p in map(Path, paths):
        try:
            with p.open("rb") as fh:
                head = fh.read(8192)
        except OSError as exc:
            report.unrecognised.append((str(p), f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            if looks_like_email(head, p.name):
                _email_verdicts(p, email_model, report)
            else:
                _scan_verdict(p, scanner, report, min_label)
        except Exception as exc:  # process edge: one analyser bug never ends the run
            report.verdicts.append(ArtefactVerdict(str(p), "scan", "data", "unreadable", 0.0, [],
                                                   [f"analysis failed: {type(exc).__name__}: {str(exc)[:200]}"]))
    if store is not None:
        alerts, report.events = scan_store(store, scanner, min_label=min_label)
        report.alerts.extend(alerts)
    return report
