"""Throughput of triage (suppression + features + scoring + correlation + dispositions) on AIT-ADS.

    python bench/triage_bench.py [--data DIR] [--deepcase-summary /tmp/peers/dc-eval/dirb/summary.json]

Loading (CSV → alert frame) is timed apart: the target is the triage itself. The model is learned
on the other scenarios (as in the evaluation). Reports alerts/s per scenario and for all four
concatenated, the peak RSS, and DeepCASE's prediction rate from the same evaluation run when its
summary is given.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from phagocyte.triage.learn import learn
from phagocyte.triage.service import triage
from phagocyte.triage.sources import AlertFrame, load_alerts

DATA = Path(os.environ.get("PHAGO_EVALDATA", Path.home() / ".cache" / "phagocyte-evaldata")) / "ait_ads" / "alerts_csv"
SCENARIOS = ("fox", "russellmitchell", "shaw", "wheeler")


def concat(frames: list[AlertFrame]) -> AlertFrame:
    """All scenarios as one stream (their hosts are distinct per scenario, as in one big SOC)."""
    f0 = frames[0]
    out = AlertFrame(
        np.concatenate([f.ts for f in frames]), np.concatenate([f.rule for f in frames]),
        np.concatenate([f.rule_name for f in frames]), np.concatenate([f.level for f in frames]),
        {k: np.concatenate([f.entities[k] for f in frames]) for k in f0.entities},
        np.concatenate([f.tactics for f in frames]), np.concatenate([f.ref for f in frames]),
        np.concatenate([f.event_label for f in frames]), np.concatenate([f.time_label for f in frames]))
    return out.take(np.argsort(out.ts, kind="stable"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--deepcase-summary", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    frames = {}
    for s in SCENARIOS:
        t = time.perf_counter()
        frames[s], _ = load_alerts([args.data / f"{s}_alerts.txt"], "ait-ads")
        print(f"load {s}: {len(frames[s]):,} alerts in {time.perf_counter() - t:.1f} s", flush=True)
    rows = {}
    for test in (*SCENARIOS, "all"):
        frame = concat(list(frames.values())) if test == "all" else frames[test]
        train = [(s, frames[s]) for s in SCENARIOS if s != test] if test != "all" else \
            [(s, frames[s]) for s in SCENARIOS]
        model, _, _ = learn(train)
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            res = triage(frame, model)
            best = min(best, time.perf_counter() - t)
        rows[test] = {"alerts": len(frame), "groups": len(res.groups), "seconds": round(best, 3),
                      "alerts_per_s": round(len(frame) / best)}
        print(test, json.dumps(rows[test]), flush=True)
    rows["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.deepcase_summary and args.deepcase_summary.exists():
        dc = json.loads(args.deepcase_summary.read_text())
        rows["deepcase_predict_rate"] = {k: round(v["predict_rate"]) for k, v in dc["folds"].items()}
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
