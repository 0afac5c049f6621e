"""`phago email` in-process on hand-written mail: JSON lines, alerts, mbox, training, exit codes."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from phagocyte.alerts import alerts_to_table
from phagocyte.cli.app import app
from phagocyte.email.alerts import verdict_to_alert
from phagocyte.email.mailbox import Skipped, iter_messages
from phagocyte.email.model import EmailModel
from phagocyte.email.verdict import analyse
from tests.email.messages import CREDENTIAL_FORM_HTML, PE_HEADER, message
from tests.email.test_model import HAM, PHISH

runner = CliRunner()


def _write(folder: Path, name: str, raw: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(raw)
    return p


def test_email_command_writes_one_json_object_per_message(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    _write(mail, "ok.eml", message())
    _write(mail, "bad.eml", message(sender="PayPal Security <alert@secure-mail.example.net>",
                                    html=CREDENTIAL_FORM_HTML))
    out, alerts = tmp_path / "v.jsonl", tmp_path / "a.jsonl"
    res = runner.invoke(app, ["email", str(mail), "--out", str(out), "--alerts", str(alerts), "-j", "1",
                              "--home", str(tmp_path / "h")])
    assert res.exit_code == 4, res.output
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"ok.eml", "bad.eml"}
    assert rows["ok.eml"]["label"] == "clean" and rows["bad.eml"]["label"] == "phishing"
    for r in rows.values():
        assert {"path", "label", "score", "reasons", "indicators"} <= set(r)
    assert {x["code"] for x in rows["bad.eml"]["reasons"]} >= {"html_credential_form", "brand_impersonation_sender"}
    (alert,) = map(json.loads, alerts.read_text().splitlines())
    assert alert["event.kind"] == "alert" and alert["rule.id"] == "email-phishing"
    assert "TA0001" in alert["threat.tactic.id"] and alert["log.file.path"].endswith("bad.eml")


def test_clean_mail_exits_zero_and_a_missing_model_is_a_usage_error(tmp_path: Path) -> None:
    p = _write(tmp_path, "ok.eml", message())
    assert runner.invoke(app, ["email", str(p), "-j", "1", "--home", str(tmp_path / "h")]).exit_code == 0
    res = runner.invoke(app, ["email", str(p), "--model", str(tmp_path / "nope"), "--home", str(tmp_path / "h")])
    assert res.exit_code == 2


def test_train_then_judge_with_the_model(tmp_path: Path) -> None:
    for i, t in enumerate(PHISH):
        _write(tmp_path / "phish", f"{i}.eml", message(text=t, subject="Account notice"))
    for i, t in enumerate(HAM):
        _write(tmp_path / "ham", f"{i}.eml", message(text=t))
    model = tmp_path / "model"
    res = runner.invoke(app, ["email", "train", str(tmp_path / "ham"), str(tmp_path / "phish"), "--model", str(model)])
    assert res.exit_code == 0, res.output
    assert (model / "model.json").exists() and json.loads((model / "model.json").read_text())["counts"] == {
        "clean": 4, "phishing": 4}
    card = (model / "MODEL_CARD.md").read_text()
    assert "| phishing | 4 |" in card and "Licence of each training source" in card
    p = _write(tmp_path / "new", "x.eml", message(text="Verify your account now, your mailbox is full."))
    out = tmp_path / "v.jsonl"
    res = runner.invoke(app, ["email", str(p), "--model", str(model), "--out", str(out), "-j", "2"])
    v = json.loads(out.read_text())
    assert "probabilities" in v and any(r["code"] == "model" for r in v["reasons"])
    assert res.exit_code == (4 if v["label"] == "phishing" else 0)


def test_a_model_of_an_older_format_is_a_usage_error_that_says_retrain(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.json").write_text(json.dumps({"format": "phagocyte-email-model/1", "n_features": 2**20}))
    p = _write(tmp_path, "ok.eml", message())
    res = runner.invoke(app, ["email", str(p), "--model", str(old), "-j", "1"])
    assert res.exit_code == 2 and "retrain" in res.output


def test_train_usage_error(tmp_path: Path) -> None:
    assert runner.invoke(app, ["email", "train", str(tmp_path)]).exit_code == 2


def test_mbox_yields_each_message_and_bad_paths_are_skipped(tmp_path: Path) -> None:
    box = mailbox.mbox(str(tmp_path / "inbox.mbox"))
    box.add(message(subject="one"))
    box.add(message(subject="two"))
    box.flush()
    box.close()
    items = list(iter_messages([tmp_path / "inbox.mbox", tmp_path / "missing.eml"]))
    msgs = [i for i in items if not isinstance(i, Skipped)]
    assert [analyse(raw).subject for _, raw in msgs] == ["one", "two"]
    assert [i.path for i in items if isinstance(i, Skipped)] == [str(tmp_path / "missing.eml")]


def test_alert_carries_the_indicators_as_ecs_entities() -> None:
    raw = message(sender="PayPal <alert@paypa1.com>", html='<a href="http://203.0.113.7/x">log in</a>',
                  attachments=[("setup.exe", PE_HEADER, "application/octet-stream")],
                  headers={"Received": "from mx.bad.example.net (mx.bad.example.net [45.33.32.156]) by mx.example.org"})
    v = analyse(raw, path="/mail/x.eml").to_dict()
    alert = verdict_to_alert(v)
    assert alert["url.full"] == "http://203.0.113.7/x"
    assert alert["source.ip"] == "45.33.32.156", "the sending host (first public Received hop)"
    assert set(alert["related.ip"]) == {"203.0.113.7", "45.33.32.156"}
    assert alert["file.name"] == "setup.exe" and len(alert["file.hash.sha256"]) == 64
    assert alert["user.name"] == "anna", "the user at risk is the recipient, named as directory logons name it"
    assert {"alert@paypa1.com", "anna@example.org"} <= set(alert["related.user"])
    assert "T1204.002" in alert["threat.technique.id"] and alert["rule.level"] in ("high", "critical")
    assert alert["@timestamp"].year == 2026
    table = alerts_to_table([alert])
    assert isinstance(table, pa.Table) and table.num_rows == 1
    assert alert == verdict_to_alert(v), "the same verdict is the same alert (deterministic id)"


def test_a_model_of_format_2_is_refused_too(tmp_path: Path) -> None:
    # /2 weights were learnt for structure tokens at 1.0 each; /3 normalises them.
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.json").write_text(json.dumps({"format": "phagocyte-email-model/2", "n_features": 2**20}))
    assert "retrain" in (EmailModel.problem(old) or "")
