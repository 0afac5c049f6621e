"""`phago hunt`, `phago detect`, `phago rules check|sync` and streaming in `phago run`, in-process."""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from phagocyte.cli.app import app
from phagocyte.detect.rules import load_rules
from phagocyte.detect.sync import SyncError, unpack_release
from phagocyte.store.parquet import ParquetStore
from tests.conftest import DEMO, evaldata

runner = CliRunner()


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`phago hunt` without --home caches compiled rules in the user's cache: not in tests."""
    monkeypatch.setenv("PHAGO_CACHE_DIR", str(tmp_path / "user-cache"))


def _alerts(home: Path) -> list[dict[str, object]]:
    """Sigma's alerts (`phago run` also stores the e-mail and script analysers' alerts)."""
    with ParquetStore(home / "store") as store:
        return store.query("SELECT * FROM alerts WHERE coalesce(\"rule.ruleset\", '') NOT IN "
                           "('phagocyte-email', 'phagocyte-scan') ORDER BY \"event.id\"").to_pylist()


def test_hunt_writes_alerts_as_json_lines_and_csv(tmp_path: Path) -> None:
    res = runner.invoke(app, ["hunt", str(DEMO), "--out", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 4, res.output  # alerts raised
    assert "Sigma:" in res.output and "Hidden PowerShell" in res.output
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(lines) >= 10
    for a in lines:
        assert a["event.kind"] == "alert" and a["rule.id"] and a["rule.name"] and a["rule.level"]
        assert a["log.file.path"] and a["alert_ref"]
    ps = next(a for a in lines if a["rule.name"] == "Hidden PowerShell With an Encoded Command")
    assert ps["threat.technique.id"] == ["T1059.001", "T1027"] and "Execution" in ps["threat.tactic.name"]
    assert ps["host.name"].lower() == "ws-042.corp.example"
    res = runner.invoke(app, ["hunt", str(DEMO), "--out", str(tmp_path / "a.csv")])
    rows = list(csv.DictReader((tmp_path / "a.csv").open()))
    assert len(rows) == len(lines) and {"rule.id", "rule.level", "log.file.path", "winlog.record_id"} <= set(rows[0])


def test_hunt_without_home_keeps_nothing_but_the_compiled_rules_and_with_home_stores_the_same_alerts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["hunt", str(DEMO), "--out", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 4, res.output
    assert "not stored: no --home" in res.output.replace("\n", " ")
    assert not (tmp_path / ".phago").exists()  # no store, no alerts table
    assert list((tmp_path / "user-cache").glob("rules-*.json"))  # the second hunt is warm
    res = runner.invoke(app, ["hunt", str(DEMO), "--home", str(tmp_path / "h"), "--out", str(tmp_path / "b.jsonl")])
    assert res.exit_code == 4, res.output
    a = (tmp_path / "a.jsonl").read_text().splitlines()
    assert a == (tmp_path / "b.jsonl").read_text().splitlines()
    assert sorted(x["event.id"] for x in _alerts(tmp_path / "h")) == sorted(json.loads(x)["event.id"] for x in a)


def test_stream_in_run_and_batch_detect_give_the_same_alerts_and_detect_twice_adds_nothing(tmp_path: Path) -> None:
    streamed, batch = tmp_path / "s", tmp_path / "b"
    assert runner.invoke(app, ["run", "--home", str(streamed), str(DEMO)]).exit_code == 0
    res = runner.invoke(app, ["ingest", "--home", str(batch), str(DEMO)])
    assert res.exit_code == 3 and "unrecognised" in res.output, "the demo's e-mail is not a log"
    res = runner.invoke(app, ["detect", "--home", str(batch)])
    assert res.exit_code == 0, res.output
    a, b = _alerts(streamed), _alerts(batch)
    assert a and [x["event.id"] for x in a] == [x["event.id"] for x in b]
    assert [(x["rule.id"], x["event.reference"]) for x in a] == [(x["rule.id"], x["event.reference"]) for x in b]
    res = runner.invoke(app, ["detect", "--home", str(batch)])
    assert "(0 new in the store)" in res.output.replace("\n", " ").replace("  ", " ") or "0 new" in res.output
    assert len(_alerts(batch)) == len(b)
    q = runner.invoke(app, ["query", "--home", str(batch), "--format", "json",
                            "select count(*) AS n from alerts where \"event.kind\" = 'alert'"])
    assert json.loads(q.output)["n"] == len(b)


def test_hunt_on_evtx_with_a_sigmahq_rule_reports_the_record_number(tmp_path: Path) -> None:
    sigma = evaldata("sigma")
    rule = sigma / "rules/windows/process_creation/proc_creation_win_certutil_encode.yml"
    evtx = next((sigma / "regression_data/rules/windows/process_creation/proc_creation_win_certutil_encode").glob(
        "*.evtx"))
    res = runner.invoke(app, ["hunt", str(evtx), "--rules", str(rule), "--out", str(tmp_path / "a.jsonl")])
    assert res.exit_code == 4, res.output
    (alert,) = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert alert["rule.id"] == "e62a9f0c-ca1e-46b2-85d5-a6da77f86d1a"
    assert alert["winlog.record_id"] == 11570013 and alert["log.file.path"] == str(evtx)
    assert alert["alert_ref"] == f"{evtx.name}:11570013"


BAD = {
    "broken.yml": "title: x\ndetection: [unclosed\n",
    "nocondition.yml": "title: No condition\nlogsource:\n  product: windows\ndetection:\n  sel:\n    a: 1\n",
    "badmod.yml": "title: Bad modifier\nlogsource:\n  product: windows\n  category: process_creation\n"
                  "detection:\n  sel:\n    Image|nosuchmodifier: x\n  condition: sel\n",
    "undefined.yml": "title: Undefined\nlogsource:\n  product: windows\ndetection:\n  sel:\n    a: 1\n"
                     "  condition: sel and other\n",
}
GOOD = ("title: Good\nid: 6b7c3f1e-9d2a-4a57-9b0f-2d4c8e1a0b11\nlogsource:\n  product: windows\n"
        "  category: process_creation\ndetection:\n  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel\n")


def test_rules_check_names_each_bad_rule_and_the_good_ones_still_run(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    for name, text in BAD.items():
        (d / name).write_text(text)
    (d / "good.yml").write_text(GOOD)
    rs = load_rules([d])
    assert [r.title for r in rs.primary] == ["Good"]
    assert sorted(Path(e.path).name for e in rs.errors) == sorted(BAD)
    res = runner.invoke(app, ["rules", "check", str(d), "--json"])
    assert res.exit_code == 3
    report = json.loads(res.output)
    assert report["rules"] == 1 and report["failed"] == 4 and all(e["reason"] for e in report["errors"])
    (d / "broken.yml").unlink()
    for name in BAD:
        (d / name).unlink(missing_ok=True)
    assert runner.invoke(app, ["rules", "check", str(d)]).exit_code == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=2000), st.text(max_size=2000),
                 st.builds(lambda s: GOOD[: len(GOOD) * s // 100], st.integers(0, 100))))
def test_garbage_rule_files_are_errors_never_crashes(tmp_path: Path, content: bytes | str) -> None:
    f = tmp_path / "fuzz.yml"
    f.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    rs = load_rules([f])
    assert len(rs.rules) + len(rs.errors) >= 0 and all(e.reason for e in rs.errors)


def test_rules_sync_offline_gives_a_clear_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["rules", "sync", "--home", str(tmp_path), "--api", "http://127.0.0.1:9/latest"])
    assert res.exit_code == 1
    assert "cannot reach" in res.output and "--archive" in res.output


def test_rules_sync_unpacks_a_release_archive_and_the_rules_join_the_default_path(tmp_path: Path) -> None:
    archive = tmp_path / "sigma_all_rules.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("rules/windows/good.yml", GOOD)
        z.writestr("README.md", "not a rule")
    home = tmp_path / "home"
    res = runner.invoke(app, ["rules", "sync", "--home", str(home), "--archive", str(archive)])
    assert res.exit_code == 0, res.output
    assert (home / "rules/sigmahq/rules/windows/good.yml").read_text() == GOOD
    assert not (home / "rules/sigmahq/README.md").exists()
    res = runner.invoke(app, ["rules", "check", "--home", str(home), "--json"])
    assert json.loads(res.output)["rules"] > 10  # the built-in pack plus the synced rule


def test_rules_sync_refuses_paths_outside_the_target(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escape.yml", GOOD)
    try:
        unpack_release(archive, tmp_path / "target")
    except SyncError as exc:
        assert "unsafe path" in str(exc)
    else:
        raise AssertionError("zip slip accepted")
    assert not (tmp_path.parent / "escape.yml").exists() and not (tmp_path / "target").exists()



_BLOCKS = """
import ctypes, sys
import phagocyte.cli.app
from phagocyte.cli.detect import _hand_back_big_blocks
set_ = sys.argv[1] == "1" and _hand_back_big_blocks()
libc = ctypes.CDLL(None)
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(4 << 20))  # a mapped block freed: glibc's own rule raises its threshold to 4 MiB
before = libc.mallinfo2().hblks
p = libc.malloc(1 << 20)
print(int(set_), libc.mallinfo2().hblks - before)
"""


def test_hunt_keeps_big_freed_blocks_out_of_the_heap() -> None:
    """With `phago hunt`'s glibc setting, a 1 MiB block is mapped on its own (and handed back when
    freed) even after a 4 MiB block was freed; without it glibc raises its threshold and serves the
    block from the heap, which keeps it. Fresh processes: the test process's own heap may hold a
    free block that size."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _BLOCKS, flag], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.split()
            for flag in ("1", "0")]
    if runs[0][0] == "0":
        pytest.skip("not glibc")
    assert runs == [["1", "1"], ["0", "0"]]


def test_hunt_as_a_process_ends_without_teardown_and_loses_nothing(tmp_path: Path) -> None:
    """The console entry point ends a finished hunt with `os._exit` (no interpreter teardown): the
    exit status, the summary on stdout and every alert line must still be there, through a pipe."""
    import subprocess
    import sys

    env = {**os.environ, "PHAGO_CACHE_DIR": str(tmp_path / "cache")}
    code = "from phagocyte.cli.app import main; main()"
    out = tmp_path / "a.jsonl"
    fast = subprocess.run([sys.executable, "-c", code, "hunt", str(DEMO), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert fast.returncode == 4, fast.stderr
    assert "Sigma:" in fast.stdout and fast.stdout.rstrip().endswith("┘")  # the whole table, flushed
    fast_lines = out.read_text().splitlines()
    res = runner.invoke(app, ["hunt", str(DEMO), "--out", str(tmp_path / "b.jsonl")])
    assert res.exit_code == 4
    assert sorted(fast_lines) == sorted((tmp_path / "b.jsonl").read_text().splitlines()) and len(fast_lines) >= 10
