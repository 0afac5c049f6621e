"""The static HTML report: self-contained, escaped, in queue order."""

from __future__ import annotations

from pathlib import Path

from phagocyte.web.report import write_html_report


def test_report_is_self_contained_ordered_and_escaped(tmp_path: Path) -> None:
    incs = [
        {"id": "low", "score": 0.9, "disposition": "monitor", "summary": "monitor me", "alert_refs": ["a.log:1"]},
        {"id": "top", "score": 0.5, "disposition": "escalate", "summary": "<script>alert(1)</script> brute force",
         "tactics": ["Exfiltration", "Discovery"], "entities": {"host.name": ["web1"]},
         "evidence": [{"ref": "auth.log:42", "@timestamp": "2024-01-01T00:00:00Z", "rule.name": "SSH failures"}]},
    ]
    html = write_html_report(tmp_path / "r.html", incs, title="demo").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert html.index('href="#top"') < html.index('href="#low"')
    assert html.index(">Discovery<") < html.index(">Exfiltration<")  # kill-chain order
    assert "auth.log:42" in html and "a.log:1" in html and "<link" not in html and "src=" not in html


def test_console_merge_and_split_forms(tmp_path: Path) -> None:
    from phagocyte.web.console import _csrf
    from tests.api.conftest import make_api

    api = make_api(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "h")
    api.app.state.cases.import_incidents([
        {"id": "a", "score": 0.9, "alert_refs": ["x.log:1", "x.log:2"]},
        {"id": "b", "score": 0.5, "alert_refs": ["y.log:1"]}], "t")
    c, tok = api.client, api.tokens["analyst"]
    c.cookies.set("phago_token", tok)
    page = c.get("/").text
    assert 'name="ids" value="a"' in page and 'id="merge"' in page
    r = c.post("/incidents/merge", data={"csrf": _csrf(tok), "ids": ["a", "b"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/incidents/a"
    assert api.app.state.cases.get("a")["alert_refs"] == ["x.log:1", "x.log:2", "y.log:1"]
    assert 'id="split"' in c.get("/incidents/a").text
    r = c.post("/incidents/a/split", data={"csrf": _csrf(tok), "refs": ["y.log:1"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/incidents/a-s")
    assert api.app.state.cases.get("a")["alert_refs"] == ["x.log:1", "x.log:2"]
    assert c.post("/incidents/merge", data={"csrf": _csrf(tok), "ids": ["a"]}).status_code == 409
