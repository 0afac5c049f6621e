"""Sigma detection beside Zircolite: same EVTX, same SigmaHQ Windows rules, one run, as a ratio.

Peer: Zircolite (Python, Sigma on SQLite), run from its own checkout and venv outside the
repository (never copied here). Set it up once:

    git clone https://github.com/wagga40/Zircolite /tmp/peers/zircolite       # the lead used b3724a0
    python3.11 -m venv /tmp/peers/zircolite-venv
    /tmp/peers/zircolite-venv/bin/pip install -r /tmp/peers/zircolite/requirements.txt

Data: every EVTX file of `evtx_attack_samples` and `deepbluecli_evtx` (symlinked into one scratch
folder, since Zircolite takes one input path), rules: SigmaHQ `rules/windows` as YAML for both
(each tool compiles them itself), Zircolite with its `sysmon` and `windows-logsources` pipelines.
Runs, alternated `--repeat` times:
- `phago hunt DIR --rules R --out F` cold (an empty compiled-rule cache, `PHAGO_CACHE_DIR`) and
  warm (the cache the cold run left), neither keeping a store (no `--home`);
- the same warm with `--home NEW` (events written to Parquet, alerts to the store);
- Zircolite on the YAML rules (it converts them with pySigma at each start), and on the JSON
  ruleset it converted once before the runs (`--save-ruleset`; its "warm" mode).
Measured per run: wall-clock, CPU time (user + system of the process tree) and peak RSS: the
larger of the kernel's own high-water mark of the biggest process (`wait4`'s `ru_maxrss`, exact)
and the whole process tree's RSS polled from /proc every 20 ms (what forked workers add). Until
session 8 only the poll counted: it missed Zircolite's short peak (polled 205 MB, kernel 216.5 MB).
Then the (rule, event) matches are compared, per (rule id, EVTX file content, EventRecordID), and
the differences are written out for docs/.

    nice -n 5 python bench/sigma_bench.py --repeat 2 --out /tmp/sigma-bench/result.json
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


def measure(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds (user + system, whole tree), peak RSS bytes, exit status).

    Peak RSS: the larger of the kernel's high-water mark of the command's biggest process (exact:
    a poll misses short peaks) and the most the polled process tree held at once (several
    processes). CPU time is reported beside wall-clock because the machine is shared: wall-clock
    carries the other users' load, CPU time much less."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        done = threading.Event()

        def poll() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.02)

        th = threading.Thread(target=poll, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, with the child's own rusage
        wall = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        done.set()
        th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss: KiB on Linux; the largest of the child and the descendants it waited for.
    return wall, cpu, max(peak, usage.ru_maxrss * 1024), rc


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


def _zircolite_ruleset(rules: Path, folder: Path, scratch: Path) -> Path | None:
    """Zircolite's own pre-converted form of the same rules (its `--save-ruleset`), for the
    warm-vs-warm comparison; None if the conversion fails (the bench goes on without it)."""
    out = scratch / "zircolite-ruleset.json"
    before = set(ZIRC.glob("ruleset-*.json"))
    cmd = [str(ZIRC_PY), "zircolite.py", "--evtx", str(next(folder.iterdir())), "--ruleset", str(rules),
           "--pipeline", "sysmon", "windows-logsources", "-c", "config/config.yaml", "--save-ruleset",
           "-o", str(scratch / "zircolite-convert.json"), "-l", str(scratch / "zircolite-convert-own.log"), "-q"]
    with (scratch / "zircolite-convert.log").open("w") as log:
        subprocess.run(cmd, cwd=ZIRC, stdout=log, stderr=subprocess.STDOUT, check=False)
    made = sorted(set(ZIRC.glob("ruleset-*.json")) - before)
    if not made:
        return None
    shutil.move(str(made[0]), out)
    for extra in made[1:]:
        extra.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/sigma-bench"))
    ap.add_argument("--rules", type=Path, default=EVALDATA / "sigma" / "rules" / "windows")
    ap.add_argument("--out", type=Path, default=None, help="write figures and differences as JSON")
    ap.add_argument("--no-home-run", action="store_true", help="skip the run that also stores (--home)")
    args = ap.parse_args()
    scratch: Path = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    folder = evtx_folder(scratch)
    zirc_json = _zircolite_ruleset(args.rules, folder, scratch)
    names = ["phagocyte", "phagocyte (rules cached)", "phagocyte (rules cached, --home store)", "zircolite",
             "zircolite (JSON ruleset)"]
    runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in names}
    zirc_out, phago_out = scratch / "zircolite.json", scratch / "phagocyte.jsonl"
    zirc_json_out = scratch / "zircolite-json.json"
    # Both tools as a user runs them: bytecode cached. (A sandbox may set PYTHONDONTWRITEBYTECODE:
    # every module then compiled from source at each start, ~0.07 s of a warm hunt's ~2.5 s.) Each
    # tool's own modules are compiled once before the timed runs, with its own interpreter.
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    import phagocyte

    for py, where in ((sys.executable, Path(phagocyte.__file__).parent), (str(ZIRC_PY), ZIRC / "zircolite")):
        if where.is_dir():
            subprocess.run([py, "-m", "compileall", "-q", str(where)], env=base_env, check=False)
    for i in range(args.repeat):
        # Cold: no compiled-rule cache (each rule parsed and compiled), no store (`phago hunt`
        # without --home keeps nothing, like Zircolite's in-memory database).
        cache = Path(tempfile.mkdtemp(prefix="phago-bench-cache-"))
        env = {**base_env, "PHAGO_CACHE_DIR": str(cache)}
        cmd = [str(PHAGO), "hunt", str(folder), "--rules", str(args.rules), "--out", str(phago_out)]
        wall, cpu, rss, rc = measure(cmd, scratch, scratch / f"phago-{i}.log", env)
        assert rc in (0, 4), f"phago failed, see {scratch}/phago-{i}.log"
        runs["phagocyte"].append((wall, cpu, rss))
        # Warm: the compiled rules cached by the run before (a second hunt with unchanged rules).
        wall, cpu, rss, rc = measure(cmd, scratch, scratch / f"phago-cached-{i}.log", env)
        assert rc in (0, 4), f"phago failed, see {scratch}/phago-cached-{i}.log"
        runs["phagocyte (rules cached)"].append((wall, cpu, rss))
        if not args.no_home_run:
            # Warm, also storing events (Parquet) and alerts in a fresh --home.
            home = Path(tempfile.mkdtemp(prefix="phago-bench-"))
            hcmd = [*cmd[:-1], str(scratch / "phagocyte-home.jsonl"), "--home", str(home)]
            wall, cpu, rss, rc = measure(hcmd, scratch, scratch / f"phago-home-{i}.log", env)
            assert rc in (0, 4), f"phago failed, see {scratch}/phago-home-{i}.log"
            runs["phagocyte (rules cached, --home store)"].append((wall, cpu, rss))
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        zcmd = [str(ZIRC_PY), "zircolite.py", "--evtx", str(folder), "--ruleset", str(args.rules),
                "--pipeline", "sysmon", "windows-logsources", "-c", "config/config.yaml", "-o", str(zirc_out),
                "-l", str(scratch / f"zircolite-own-{i}.log"), "-q"]
        wall, cpu, rss, rc = measure(zcmd, ZIRC, scratch / f"zircolite-{i}.log", base_env)
        assert rc == 0, f"zircolite failed, see {scratch}/zircolite-{i}.log"
        runs["zircolite"].append((wall, cpu, rss))
        if zirc_json is not None:
            # Zircolite's warm mode: the ruleset it converted before, given as JSON (no pySigma at start).
            jcmd = [str(ZIRC_PY), "zircolite.py", "--evtx", str(folder), "--ruleset", str(zirc_json),
                    "-c", "config/config.yaml", "-o", str(zirc_json_out),
                    "-l", str(scratch / f"zircolite-json-own-{i}.log"), "-q"]
            wall, cpu, rss, rc = measure(jcmd, ZIRC, scratch / f"zircolite-json-{i}.log", base_env)
            assert rc == 0, f"zircolite failed, see {scratch}/zircolite-json-{i}.log"
            runs["zircolite (JSON ruleset)"].append((wall, cpu, rss))
    files = sum(1 for _ in folder.iterdir())
    figures = {k: {"wall_s": statistics.median(w for w, _, _ in v), "cpu_s": statistics.median(c for _, c, _ in v),
                   "peak_rss_mb": max(r for _, _, r in v) / 1e6, "runs": len(v),
                   "each": [{"wall_s": round(w, 2), "cpu_s": round(c, 2), "peak_rss_mb": round(r / 1e6)}
                            for w, c, r in v]}
               for k, v in runs.items() if v}
    z, p = zircolite_matches(zirc_out, folder), phago_matches(phago_out)
    only_z, only_p = z - p, p - z
    zf, pf = figures["zircolite"], figures["phagocyte"]
    result: dict[str, object] = {
        "evtx_files": files, "rules": str(args.rules), "figures": figures,
        "cold": {"speed_ratio": zf["wall_s"] / pf["wall_s"], "cpu_ratio": zf["cpu_s"] / pf["cpu_s"],
                 "memory_ratio": pf["peak_rss_mb"] / zf["peak_rss_mb"]},
        "matches": {"both": len(z & p), "zircolite_only": len(only_z), "phagocyte_only": len(only_p)},
        "zircolite_only_by_rule": Counter(r for r, _, _ in only_z).most_common(),
        "phagocyte_only_by_rule": Counter(r for r, _, _ in only_p).most_common(),
    }
    for label, key in (("warm (Phagocyte rules cached) vs Zircolite YAML", "phagocyte (rules cached)"),
                       ("Phagocyte cached + --home store vs Zircolite YAML", "phagocyte (rules cached, --home store)")):
        if key in figures:
            w = figures[key]
            result[label] = {"speed_ratio": zf["wall_s"] / w["wall_s"], "cpu_ratio": zf["cpu_s"] / w["cpu_s"],
                             "memory_ratio": w["peak_rss_mb"] / zf["peak_rss_mb"]}
    if "zircolite (JSON ruleset)" in figures and "phagocyte (rules cached)" in figures:
        zj, w = figures["zircolite (JSON ruleset)"], figures["phagocyte (rules cached)"]
        result["warm vs warm (Phagocyte rules cached vs Zircolite JSON ruleset)"] = {
            "speed_ratio": zj["wall_s"] / w["wall_s"], "cpu_ratio": zj["cpu_s"] / w["cpu_s"],
            "memory_ratio": w["peak_rss_mb"] / zj["peak_rss_mb"]}
        zj_matches = zircolite_matches(zirc_json_out, folder)
        result["zircolite_json_vs_yaml_matches"] = {"same": zj_matches == z, "json": len(zj_matches),
                                                    "yaml": len(z)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
