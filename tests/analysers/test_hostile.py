"""Hostile input: garbage, huge strings, bombs and deep nesting end with a reason, never a crash or a hang."""

from __future__ import annotations

import base64
import time
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phagocyte.analysers.limits import ScanLimits
from phagocyte.analysers.scan import Scanner

SCANNER = Scanner(ScanLimits(max_seconds=2.0))
MAGICS = [b"", b"MZ", b"\x7fELF", b"%PDF-1.7\n", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"PK\x03\x04word/",
          b"#!/bin/sh\n", b"powershell -enc ", b"eval(", b"<hta:application>"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=4096),
       st.sampled_from(["a.ps1", "a.js", "a.vbs", "a.bat", "a.hta", "a.sh", "a.py", "a.exe", "a.pdf", "a.docm", "x"]))
def test_garbage_behind_any_magic_gives_a_verdict(magic: bytes, body: bytes, name: str) -> None:
    v = SCANNER.scan_bytes(magic + body, name)
    assert v.label in ("malicious", "suspicious", "clean")
    assert 0.0 <= v.score <= 1.0
    v.to_json()


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=3000), st.sampled_from(["powershell", "javascript", "vbscript", "batch", "hta"]))
def test_random_script_text_gives_a_verdict(text: str, language: str) -> None:
    v = SCANNER.scan_text(text, language)
    assert v.label in ("malicious", "suspicious", "clean")


def test_gigantic_string_is_cut_with_a_reason() -> None:
    limits = ScanLimits(max_text_bytes=1 << 20)
    big = "$a = '" + "A" * (3 << 20) + "'"
    t0 = time.monotonic()
    v = Scanner(limits).scan_text(big, "powershell")
    assert time.monotonic() - t0 < 20
    assert any("cut to" in e for e in v.errors)


def test_decompression_bomb_stops_at_the_limit() -> None:
    bomb = zlib.compress(b"A" * (64 << 20), 9)  # 64 MiB of 'A' in ~64 KiB
    script = f"$x = [Convert]::FromBase64String('{base64.b64encode(bomb).decode()}')"
    v = Scanner(ScanLimits(max_decompressed_bytes=1 << 20)).scan_text(script, "powershell")
    assert any("decompression stopped" in e for e in v.errors), v.errors


def test_time_limit_ends_a_slow_input() -> None:
    # Thousands of concatenations nested in IEX layers: stopped by the clock, with a reason.
    layer = "Write-Host 1"
    for _ in range(5):  # ~6x longer per layer: about 100 k characters
        layer = "IEX (" + " + ".join(f"'{c}'" for c in layer.replace("'", "")) + ")"
    t0 = time.monotonic()
    v = Scanner(ScanLimits(max_seconds=0.2, max_text_bytes=1 << 22)).scan_text(layer, "powershell")
    assert time.monotonic() - t0 < 10
    assert v.label in ("malicious", "suspicious", "clean")


def test_file_over_the_size_limit_is_not_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "big.js"
    f.write_bytes(b"var a = 1;\n" * 2000)
    v = Scanner(ScanLimits(max_file_bytes=1000)).scan_path(f)
    assert v.errors and "limit" in v.errors[0]
    missing = Scanner().scan_path(tmp_path / "nope.ps1")
    assert missing.errors and "cannot read" in missing.errors[0]


def test_time_budget_counts_cpu_not_waiting() -> None:
    """The budget is CPU time: a busy machine (waiting for a core) must not change a verdict."""
    from phagocyte.analysers.limits import Budget

    budget = Budget(ScanLimits(max_seconds=0.05))
    time.sleep(0.2)  # wall time passes, CPU time does not
    assert budget.ok()
    end = time.thread_time() + 0.2
    while time.thread_time() < end:
        pass
    assert not budget.ok() and "CPU" in (budget.stopped or "")
