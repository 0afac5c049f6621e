"""Throughput of triage (suppression + features + scoring + correlation + dispositions) on AIT-ADS.

    python bench/triage_bench.py [--data DIR] [--deepcase-summary /tmp/peers/dc-eval/dirb/summary.json]
    python bench/triage_bench.py --stream [--replay 4] [--chunk 50000]

`--stream` compares, each in a fresh process (so peak RSS is the triage's own), the batch over all
alerts with the streaming triage (`phagocyte.triage.stream`) fed chunks of `--chunk` alerts, once
and over `--replay` time-shifted copies of the whole stream: bounded memory means the stream's
peak does not grow with the copies. Peak RSS is measured after loading (the kernel's high-water
mark is reset through /proc/self/clear_refs), so it is what triage adds on top of its input.

Loading (CSV → alert frame) is timed apart: the target is the triage itself. The model is learned
on the other scenarios (as in the evaluation). Reports alerts/s per scenario and for all four
concatenated, the peak RSS, and DeepCASE's prediction rate from the same evaluation run when its
summary is given.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from phagocyte.triage.learn import learn
from phagocyte.triage.score import RiskModel
from phagocyte.triage.service import triage
from phagocyte.triage.sources import AlertFrame, load_alerts
from phagocyte.triage.stream import StreamTriage, chunks, concat_frames

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


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(prepared: Path, mode: str, copies: int, chunk: int) -> dict[str, object]:
    """One measurement in this process, on the prepared frame (all four scenarios as one stream) and model."""
    with open(prepared / "frame.pickle", "rb") as fh:  # written by this script just before, not foreign data
        frame: AlertFrame = pickle.load(fh)
    model = RiskModel.load(prepared)
    span = float(frame.ts[-1] - frame.ts[0]) + 86400.0
    if mode == "batch" and copies > 1:  # the batch needs the whole replay at once (part of its input here)
        parts = []
        for k in range(copies):
            c = frame.take(np.arange(len(frame)))
            c.ts = c.ts + k * span
            parts.append(c)
        frame = concat_frames(parts)
    gc.collect()
    base = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    row: dict[str, object] = {"mode": mode, "copies": copies,
                              "alerts": len(frame) * (copies if mode == "stream" else 1)}
    t = time.perf_counter()
    if mode == "compare":  # the stream against the batch, alert by alert and analyst item by analyst item
        st = StreamTriage(model)
        stream = [d for c in chunks(frame, chunk) for d in st.push(c)] + st.close()
        return compare(list(triage(frame, model).incident_dicts()), stream)
    if mode == "batch":  # triage and the incidents' JSON objects, as the stream makes them
        res = triage(frame, model)
        incs = list(res.incident_dicts())
        row["incidents"] = len(incs)
        row["analyst_items"] = res.analyst_items
    else:
        st = StreamTriage(model)
        n_inc = items = 0
        for k in range(copies):
            for c in chunks(frame, chunk):
                c.ts = c.ts + k * span
                for inc in st.push(c):
                    n_inc += 1
                    items += inc["disposition"] == "escalate"
        for inc in st.close():
            n_inc += 1
            items += inc["disposition"] == "escalate"
        row["incidents"], row["analyst_items"] = n_inc, items
        row["state"] = st.stats.__dict__
    secs = time.perf_counter() - t
    row.update(seconds=round(secs, 2), alerts_per_s=round(int(row["alerts"]) / secs),  # type: ignore[call-overload]
               input_rss_mb=round(base / 1024), peak_rss_above_input_mb=round((_rss_kb("VmHWM") - base) / 1024))
    return row


def compare(batch: list[dict[str, object]], stream: list[dict[str, object]]) -> dict[str, object]:
    def per_alert(incs: list[dict[str, object]]) -> dict[str, str]:
        return {r: f"{i['disposition']}{'/deferred' if i['deferred'] else ''}"
                for i in incs for r in i["alert_refs"]}  # type: ignore[attr-defined]

    def items(incs: list[dict[str, object]]) -> set[tuple[object, ...]]:
        return {(i["deferred"], *sorted(i["alert_refs"])) for i in incs  # type: ignore[call-overload]
                if i["disposition"] == "escalate"}

    a, b = per_alert(batch), per_alert(stream)
    ia, ib = items(batch), items(stream)
    return {"mode": "compare", "alerts": len(a), "alerts_in_stream_output": len(b),
            "different_disposition": sum(a[r] != b.get(r) for r in a),
            "analyst_items_batch": len(ia), "analyst_items_stream": len(ib), "identical_analyst_items": len(ia & ib),
            "incidents_batch": len(batch), "incidents_stream": len(stream)}


def stream_main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        prepared = Path(tmp)
        frames = [load_alerts([args.data / f"{s}_alerts.txt"], "ait-ads")[0] for s in SCENARIOS]
        model, _, _ = learn(list(zip(SCENARIOS, frames, strict=True)))
        model.save(prepared)
        with open(prepared / "frame.pickle", "wb") as fh:
            pickle.dump(concat(frames), fh, protocol=pickle.HIGHEST_PROTOCOL)
        del frames
        rows = []
        for mode, copies in (("compare", 1), ("batch", 1), ("stream", 1), ("batch", args.replay),
                             ("stream", args.replay)):
            cmd = [sys.executable, __file__, "--measure", mode, "--prepared", str(prepared), "--copies", str(copies),
                   "--chunk", str(args.chunk)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    if args.deepcase_summary and args.deepcase_summary.exists():
        dc = json.loads(args.deepcase_summary.read_text())
        print(json.dumps({"deepcase_predict_rate": {k: round(v["predict_rate"]) for k, v in dc["folds"].items()}}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--deepcase-summary", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stream", action="store_true", help="batch vs streaming: throughput and peak RSS")
    ap.add_argument("--replay", type=int, default=4, help="time-shifted copies of the stream (with --stream)")
    ap.add_argument("--chunk", type=int, default=50_000, help="alerts per chunk (with --stream)")
    ap.add_argument("--measure", choices=("batch", "stream", "compare"), help=argparse.SUPPRESS)
    ap.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.prepared, args.measure, args.copies, args.chunk)))
        return
    if args.stream:
        stream_main(args)
        return
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
