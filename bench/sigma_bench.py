"""Sigma detection beside Zircolite: same EVTX, same SigmaHQ Windows rules, one run, as a ratio.

Peer: Zircolite (Python, Sigma on SQLite), run from its own checkout and venv outside the
repository (never copied here). Set it up once:

    git clone https://github.com/wagga40/Zircolite /tmp/peers/zircolite       # the lead used b3724a0
    python3.11 -m venv /tmp/peers/zircolite-venv
    /tmp/peers/zircolite-venv/bin/pip install -r /tmp/peers/zircolite/requirements.txt

Data: every EVTX file of `evtx_attack_samples` and `deepbluecli_evtx` (symlinked into one scratch
folder, since Zircolite takes one input path), rules: SigmaHQ `rules/windows` as YAML for both
(each tool compiles them itself), Zircolite with its `sysmon` and `windows-logsources` pipelines.
Measured per tool: wall-clock and peak RSS of the whole process tree (polled from /proc every
20 ms), alternating the tools `--repeat` times. Then the (rule, event) matches are compared, per
(rule id, EVTX file content, EventRecordID), and the differences are written out for docs/.

    nice -n 10 python bench/sigma_bench.py --repeat 2 --out /tmp/sigma-bench/result.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

EVALDATA = Path(os.environ.get("PHAGO_EVALDATA", Path.home() / ".cache" / "phagocyte-evaldata"))
ZIRC = Path(os.environ.get("ZIRCOLITE_DIR", "/tmp/peers/zircolite"))
ZIRC_PY = Path(os.environ.get("ZIRCOLITE_PYTHON", "/tmp/peers/zircolite-venv/bin/python"))
PHAGO = Path(sys.executable).with_name("phago")


def evtx_folder(scratch: Path) -> Path:
    folder = scratch / "evtx"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files = sorted(p for s in ("evtx_attack_samples", "deepbluecli_evtx") for p in (EVALDATA / s).rglob("*.evtx"))
    for i, f in enumerate(files):
        (folder / f"{i:04d}_{f.name.replace(' ', '_')}").symlink_to(f)
    return folder


def _tree_rss(pid: int) -> int:
    """RSS (bytes) of a process and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(cmd: list[str], cwd: Path, log: Path) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds (user + system, whole tree), peak tree RSS bytes, exit status).

    CPU time is reported beside wall-clock because the machine is shared: wall-clock carries the
    other users' load, CPU time much less."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.02)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        rc = proc.wait()
        wall = time.perf_counter() - t0
        done.set()
        th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak, rc


def _sha(path: str, cache: dict[str, str]) -> str:
    real = os.path.realpath(path)
    if real not in cache:
        cache[real] = hashlib.sha256(Path(real).read_bytes()).hexdigest()[:16]
    return cache[real]


def zircolite_matches(result: Path, folder: Path) -> set[tuple[str, str, int]]:
    data = json.loads(result.read_text())
    cache: dict[str, str] = {}
    by_name = {p.name: str(p) for p in folder.iterdir()}
    out = set()
    for rule in data:
        for m in rule.get("matches", []):
            f = m.get("OriginalLogfile") or m.get("OriginalLogLinePath") or ""
            name = Path(str(f)).name
            path = by_name.get(name, str(f))
            rec = m.get("EventRecordID")
            if rec is None or not path:
                continue
            out.add((str(rule.get("id")), _sha(path, cache), int(rec)))
    return out


def phago_matches(result: Path) -> set[tuple[str, str, int]]:
    cache: dict[str, str] = {}
    out = set()
    for line in result.read_text().splitlines():
        a = json.loads(line)
        if "winlog.record_id" in a and a.get("rule.ruleset") == "sigma":
            out.add((a["rule.id"], _sha(a["log.file.path"], cache), int(a["winlog.record_id"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/sigma-bench"))
    ap.add_argument("--rules", type=Path, default=EVALDATA / "sigma" / "rules" / "windows")
    ap.add_argument("--out", type=Path, default=None, help="write figures and differences as JSON")
    args = ap.parse_args()
    scratch: Path = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    folder = evtx_folder(scratch)
    runs: dict[str, list[tuple[float, float, int]]] = {"phagocyte": [], "phagocyte (rules cached)": [], "zircolite": []}
    zirc_out, phago_out = scratch / "zircolite.json", scratch / "phagocyte.jsonl"
    cache_home = Path(tempfile.mkdtemp(prefix="phago-bench-cache-"))
    for i in range(args.repeat):
        # Cold: a fresh store and no compiled-rule cache (each rule parsed and compiled).
        home = Path(tempfile.mkdtemp(prefix="phago-bench-"))
        cmd = [str(PHAGO), "hunt", str(folder), "--rules", str(args.rules), "--out", str(phago_out), "--home",
               str(home)]
        wall, cpu, rss, rc = measure(cmd, scratch, scratch / f"phago-{i}.log")
        assert rc in (0, 4), f"phago failed, see {scratch}/phago-{i}.log"
        runs["phagocyte"].append((wall, cpu, rss))
        shutil.copytree(home / "cache", cache_home, dirs_exist_ok=True)
        shutil.rmtree(home, ignore_errors=True)
        # Warm: a fresh store, the compiled rules cached (a second hunt with unchanged rules).
        home = Path(tempfile.mkdtemp(prefix="phago-bench-"))
        shutil.copytree(cache_home, home / "cache")
        cmd[-1] = str(home)
        wall, cpu, rss, rc = measure(cmd, scratch, scratch / f"phago-cached-{i}.log")
        assert rc in (0, 4), f"phago failed, see {scratch}/phago-cached-{i}.log"
        runs["phagocyte (rules cached)"].append((wall, cpu, rss))
        shutil.rmtree(home, ignore_errors=True)
        zcmd = [str(ZIRC_PY), "zircolite.py", "--evtx", str(folder), "--ruleset", str(args.rules),
                "--pipeline", "sysmon", "windows-logsources", "-c", "config/config.yaml", "-o", str(zirc_out),
                "-l", str(scratch / f"zircolite-own-{i}.log"), "-q"]
        wall, cpu, rss, rc = measure(zcmd, ZIRC, scratch / f"zircolite-{i}.log")
        assert rc == 0, f"zircolite failed, see {scratch}/zircolite-{i}.log"
        runs["zircolite"].append((wall, cpu, rss))
    files = sum(1 for _ in folder.iterdir())
    figures = {k: {"wall_s": statistics.median(w for w, _, _ in v), "cpu_s": statistics.median(c for _, c, _ in v),
                   "peak_rss_mb": max(r for _, _, r in v) / 1e6, "runs": len(v)} for k, v in runs.items() if v}
    z, p = zircolite_matches(zirc_out, folder), phago_matches(phago_out)
    only_z, only_p = z - p, p - z
    result = {
        "evtx_files": files, "rules": str(args.rules), "figures": figures,
        "speed_ratio": figures["zircolite"]["wall_s"] / figures["phagocyte"]["wall_s"],
        "cpu_ratio": figures["zircolite"]["cpu_s"] / figures["phagocyte"]["cpu_s"],
        "memory_ratio": figures["phagocyte"]["peak_rss_mb"] / figures["zircolite"]["peak_rss_mb"],
        "matches": {"both": len(z & p), "zircolite_only": len(only_z), "phagocyte_only": len(only_p)},
        "zircolite_only_by_rule": Counter(r for r, _, _ in only_z).most_common(),
        "phagocyte_only_by_rule": Counter(r for r, _, _ in only_p).most_common(),
    }
    if "phagocyte (rules cached)" in figures:
        cached = figures["phagocyte (rules cached)"]
        result["speed_ratio_cached"] = figures["zircolite"]["wall_s"] / cached["wall_s"]
        result["cpu_ratio_cached"] = figures["zircolite"]["cpu_s"] / cached["cpu_s"]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    shutil.rmtree(cache_home, ignore_errors=True)


if __name__ == "__main__":
    main()
