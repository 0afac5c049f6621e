"""Ingest benchmark: Phagocyte's normalised ingest beside the bare ``evtx`` parser, same files, same run.

Each measurement runs in a fresh child process, so wall time and peak memory (``ru_maxrss`` of
that child alone) are its own. Inputs come from ``../shared/data`` (unpacked into the evaluation
cache) and are never copied into the repository; larger inputs are generated in a temp folder.

    python bench/ingest_bench.py [--quick] [--only NAME...] [--baseline ../main/src [--pairs N]]
                                 [--out bench/results/ingest.json]

Every row has wall time, CPU time (user+sys) and peak RSS; on a shared machine compare CPU
times, and use ``--baseline`` (another checkout's ``src``, run on the same inputs just before)
for a before/after ratio; ``--pairs N`` runs the two alternately N times on the same generated
input (the order swapped every pair) and reports the median CPU ratio, which one run on a busy
machine cannot give (0.75-1.13 for the same two checkouts at load 4).

Workloads:
  evtx-all      every .evtx of evtx_attack_samples + deepbluecli_evtx + evtx_parser_samples
                (~21 k records in ~300 small files spread over ~340 dataset-days)
  evtx-dense    the four largest evtx_parser_samples files, 40 distinct copies each (a byte of
                the unused header padding differs, so content hashes differ; records are the same):
                many records over few days, as in a real collection
  eve-jsonl     Suricata EVE JSON lines: the 548 real alerts of suricata_sample_data, repeated
                with shifted timestamps to 1,000,000 lines
  eve-mixed     Suricata EVE JSON lines of every event type (flow, dns, http, tls, fileinfo,
                anomaly, stats, alert...): the hand-written test fixture, repeated with shifted
                timestamps to 1,000,000 lines (smaller records than the alert-only set)
  zeek-json     all zeek_sample_data JSON logs (gzip)
  ait-ads-csv   the AIT-ADS fox scenario alerts (473 k lines)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import evaldata  # noqa: E402  (the same data lookup as the tests)

_BARE_EVTX = """
import sys, warnings, evtx
warnings.simplefilter("ignore")
n = 0
for f in sys.argv[1:]:
    for _ in evtx.PyEvtxParser(f, skip_errors=True).records_json():
        n += 1
print(n)
"""

_PHAGO = """
import sys, json
from phagocyte.config import load_settings
from phagocyte.store.parquet import ParquetStore
from phagocyte.ingest.pipeline import ingest
settings = load_settings(sys.argv[1])
with ParquetStore(settings.store_dir, writable=True) as store:
    report = ingest(sys.argv[2:], store, settings)
print(json.dumps({"events": report.events, "quarantined": report.quarantined,
                  "failed": report.count("failed") + report.count("unrecognised")}))
"""


def _child_rss(code: str, args: list[str], src: str | None = None) -> tuple[float, int, str, float]:
    """Run `code` in a child; its wall time, own peak RSS and CPU time (user+sys) via wait4.

    `src`: import ``phagocyte`` from this folder (another checkout's ``src``) instead."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout and proc.stderr
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"child failed: {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out.strip(), usage.ru_utime + usage.ru_stime


def _measure(home: Path, files: list[str], src: str | None) -> dict:
    """One ingest of `files` into a fresh `home` in a child process (`src`: another checkout's)."""
    wall, rss, out, cpu = _child_rss(_PHAGO, [str(home), *files], src)
    shutil.rmtree(home, ignore_errors=True)
    rep = json.loads(out)
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), **rep, "peak_rss_mb": rss // 2**20,
            "rate": round(rep["events"] / wall)}


def _evtx_all() -> list[str]:
    files: list[str] = []
    for name in ("evtx_attack_samples", "deepbluecli_evtx", "evtx_parser_samples"):
        files += [str(p) for p in sorted(evaldata(name).rglob("*.evtx"))]
    return files


def _evtx_dense(tmp: Path, copies: int) -> list[str]:
    src = evaldata("evtx_parser_samples") / "samples"
    big = ["security.evtx", "post-Security.evtx", "system.evtx", "sysmon.evtx"]
    out = []
    for name in big:
        data = bytearray((src / name).read_bytes())
        for i in range(copies):
            data[4000:4004] = i.to_bytes(4, "little")  # unused header padding, outside its CRC
            p = tmp / f"{i:03d}-{name}"
            p.write_bytes(data)
            out.append(str(p))
    return out


def _eve_jsonl(tmp: Path, lines: int) -> list[str]:
    from datetime import datetime, timedelta

    alerts: list[dict] = []
    for f in sorted((evaldata("suricata_sample_data") / "samples").rglob("alerts-only.json")):
        alerts += json.loads(f.read_text())
    out = tmp / "eve.json"
    base = datetime(2024, 3, 1)
    with out.open("w") as f:
        for i in range(lines):
            rec = dict(alerts[i % len(alerts)])
            rec["timestamp"] = (base + timedelta(seconds=i * 0.25)).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
            rec["flow_id"] = 10**14 + i
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return [str(out)]


def _eve_mixed(tmp: Path, lines: int) -> list[str]:
    from datetime import datetime, timedelta

    fixture = REPO / "tests" / "fixtures" / "suricata_eve" / "eve.json"
    records = [json.loads(x) for x in fixture.read_text().splitlines() if x.strip()]
    out = tmp / "eve-mixed.json"
    base = datetime(2024, 3, 1)
    with out.open("w") as f:
        for i in range(lines):
            rec = dict(records[i % len(records)])
            rec["timestamp"] = (base + timedelta(seconds=i * 0.25)).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return [str(out)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller generated inputs")
    ap.add_argument("--only", nargs="*", help="workload names to run")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "ingest.json"))
    ap.add_argument("--baseline", metavar="SRC",
                    help="also run the ingest of another checkout's src folder (e.g. ../main/src) on the "
                         "same inputs, right before this one: a before/after ratio on a shared, noisy machine")
    ap.add_argument("--pairs", type=int, default=1,
                    help="with --baseline: run the baseline and this checkout alternately this many times "
                         "(order swapped every pair); report the median CPU ratio")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="phago-bench-"))
    results = []
    try:
        workloads = {
            "evtx-all": lambda: _evtx_all(),
            "evtx-dense": lambda: _evtx_dense(tmp, 10 if args.quick else 40),
            "eve-jsonl": lambda: _eve_jsonl(tmp, 100_000 if args.quick else 1_000_000),
            "eve-mixed": lambda: _eve_mixed(tmp, 100_000 if args.quick else 1_000_000),
            "zeek-json": lambda: [str(p) for p in sorted((evaldata("zeek_sample_data") / "zeek-json").glob("*.gz"))],
            "ait-ads-csv": lambda: [str(evaldata("ait_ads") / "alerts_csv" / "fox_alerts.txt")],
        }
        for name, make in workloads.items():
            if args.only and name not in args.only:
                continue
            files = make()
            # Generated inputs are on disk before the clock starts: otherwise the store's commit-time
            # `sync` also writes back the freshly generated input (hundreds of MB), charged to ingest.
            os.sync()
            row: dict = {"workload": name, "files": len(files),
                         "bytes": sum(os.path.getsize(f) for f in files)}
            if name.startswith("evtx"):
                wall, rss, out, cpu = _child_rss(_BARE_EVTX, files)
                row["bare_evtx"] = {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "records": int(out),
                                    "peak_rss_mb": rss // 2**20, "rate": round(int(out) / wall)}
            pairs = []
            for i in range(max(1, args.pairs) if args.baseline else 1):
                sides = ["baseline", "phagocyte"] if args.baseline else ["phagocyte"]
                got = {side: _measure(tmp / f"home-{name}-{side}", files, args.baseline if side == "baseline" else None)
                       for side in (sides if i % 2 == 0 else sides[::-1])}
                if args.baseline:
                    got["baseline"] = {"src": args.baseline, **got["baseline"]}
                    got["cpu_vs_baseline"] = round(got["phagocyte"]["cpu_seconds"] / got["baseline"]["cpu_seconds"], 3)
                pairs.append(got)
            row.update(pairs[0])
            if len(pairs) > 1:
                row["pairs"] = pairs
                row["cpu_vs_baseline_median"] = statistics.median(p["cpu_vs_baseline"] for p in pairs)
            if "bare_evtx" in row:
                row["ratio_vs_bare"] = round(row["phagocyte"]["rate"] / row["bare_evtx"]["rate"], 3)
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print("\n| workload | files | events | Phagocyte s (CPU s) | events/s | peak MB | bare evtx records/s "
          "(s, CPU s) | ratio | baseline s (CPU s), peak MB | CPU vs baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        p, b, base = r["phagocyte"], r.get("bare_evtx"), r.get("baseline")
        bare = f"{b['rate']:,} ({b['seconds']}, {b['cpu_seconds']})" if b else "-"
        was = f"{base['seconds']} ({base['cpu_seconds']}), {base['peak_rss_mb']}" if base else "-"
        print(f"| {r['workload']} | {r['files']} | {p['events']:,} | {p['seconds']} ({p['cpu_seconds']}) | "
              f"{p['rate']:,} | {p['peak_rss_mb']} | {bare} | {r.get('ratio_vs_bare', '-')} | {was} | "
              f"{r.get('cpu_vs_baseline', '-')} |")
    for r in results:
        if "pairs" in r:
            pairs = r["pairs"]
            print(f"{r['workload']}: {len(pairs)} alternated pairs, CPU ratio median {r['cpu_vs_baseline_median']} "
                  f"({', '.join(str(p['cpu_vs_baseline']) for p in pairs)}); CPU s this checkout "
                  f"{statistics.median(p['phagocyte']['cpu_seconds'] for p in pairs):.2f} vs baseline "
                  f"{statistics.median(p['baseline']['cpu_seconds'] for p in pairs):.2f} (medians); best wall "
                  f"{min(p['phagocyte']['seconds'] for p in pairs)} vs "
                  f"{min(p['baseline']['seconds'] for p in pairs)} s")

if __name__ == "__main__":
    main()
