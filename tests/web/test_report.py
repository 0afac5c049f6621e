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
