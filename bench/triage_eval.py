"""Leave-one-scenario-out evaluation of triage on AIT-ADS, with DeepCASE side by side.

    python bench/triage_eval.py [--data DIR] [--deepcase] [--json OUT]

For each of the 4 scenarios: learn on the other 3 (their labels as past analyst verdicts), triage
the left-out one, score with the issue's metrics (phagocyte.triage.evaluate), with and without the
`dirb` phase. With `--deepcase`, DeepCASE (bench/deepcase_peer.py, its own venv) is fitted on the
same splits in the same run and its per-alert predictions scored with the same metrics. The
throughput of suppression + correlation + scoring is measured on each left-out scenario.

DeepCASE has no incidents; to compare item counts kindly, its escalated alerts (score > 0) are
counted as one item per (host, event code), and so are the alerts it cannot handle (-1/-2/-3,
deferred to a human).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from phagocyte.triage.evaluate import metrics
from phagocyte.triage.learn import alert_truth, learn
from phagocyte.triage.service import triage
from phagocyte.triage.sources import AlertFrame, load_alerts

DATA = Path(os.environ.get("PHAGO_EVALDATA", Path.home() / ".cache" / "phagocyte-evaldata")) / "ait_ads" / "alerts_csv"
PEER_PY = Path("/tmp/peers/deepcase-venv/bin/python")
SCENARIOS = ("fox", "russellmitchell", "shaw", "wheeler")


def without_dirb(frame: AlertFrame) -> AlertFrame:
    keep = (frame.time_label != "dirb") & (frame.event_label != "dirb")
    return frame.take(np.nonzero(keep)[0])


def deepcase_metrics(frame: AlertFrame, npz: Path, key: str = "pred") -> dict[str, object]:
    """The issue's metrics for DeepCASE's per-alert predictions on one left-out scenario
    (`pred`: as shipped; `pred_fixed`: with its two lookup bugs fixed)."""
    z = np.load(npz)
    by_line = dict(zip(z["line"].tolist(), z[key].tolist(), strict=True))
    lines = np.asarray([int(r.rsplit(":", 1)[1]) for r in frame.ref])
    pred = np.asarray([by_line.get(int(x), -9.0) for x in lines])
    truth = alert_truth(frame)
    attack, noise = truth == 1, truth == 0
    esc, deferred = pred > 0, pred < 0
    host = frame.entities["host.name"].astype(str)
    key = np.char.add(np.char.add(host, "|"), frame.rule.astype(str))
    esc_items = {k: (attack[key == k] & esc[key == k]).any() for k in np.unique(key[esc])}
    def_items = np.unique(key[deferred])
    order = sorted(esc_items, key=lambda k: frame.ts[(key == k) & esc].min())
    first = next((i + 1 for i, k in enumerate(order) if esc_items[k]), None)
    items = esc | deferred
    return {
        "raw_alerts": len(frame), "analyst_items": len(esc_items) + len(def_items),
        "escalated_incidents": len(esc_items), "deferred_items": len(def_items),
        "attack_recall": float(esc[attack].mean()), "attack_recall_items": float(items[attack].mean()),
        "steps": sorted({str(s) for s in frame.event_label[attack]}),
        "steps_surfaced": sorted({str(s) for s in frame.event_label[attack & esc]}),
        "steps_surfaced_items": sorted({str(s) for s in frame.event_label[attack & items]}),
        "noise_suppression": float(1 - esc[noise].mean()), "noise_suppression_items": float(1 - items[noise].mean()),
        "incident_precision": (sum(esc_items.values()) / len(esc_items)) if esc_items else None,
        "first_attack_position": first, "unmatched_lines": int((pred == -9.0).sum()),
    }


def run_fold(frames: dict[str, AlertFrame], test: str, budget: int | None = None) -> tuple[dict[str, object], float]:
    model, _, _ = learn([(s, frames[s]) for s in SCENARIOS if s != test], budget=budget)
    t = time.perf_counter()
    res = triage(frames[test], model)
    dt = time.perf_counter() - t
    m = metrics(res)
    m["alerts_per_s"] = len(frames[test]) / dt
    return m, dt


ABLATIONS: dict[str, tuple[str, ...]] = {
    "none": (), "corroboration": ("_corroborated",), "corroboration + sweeps": ("_corroborated", "_waves"),
    "corroboration + concurrent": ("_corroborated", "_concurrent"),
    "sweeps + concurrent (no corroboration)": ("_waves", "_concurrent"),
    "all three (shipped)": ("_corroborated", "_waves", "_concurrent"),
}
"""Which incident-assembly steps of `service.build_incidents` are on; the others become the identity."""


def ablation(fr: dict[str, AlertFrame], variant: str) -> list[str]:
    """Markdown rows: each combination of the three incident steps, same models per fold."""
    import phagocyte.triage.service as svc

    steps = ("_corroborated", "_waves", "_concurrent")
    orig = {k: getattr(svc, k) for k in steps}
    models = {t: learn([(s, fr[s]) for s in SCENARIOS if s != t])[0] for t in SCENARIOS}
    rows = []
    try:
        for name, on in ABLATIONS.items():
            for k in steps:
                setattr(svc, k, orig[k] if k in on else (lambda inc, *a, **kw: inc))
            ms = [metrics(svc.triage(fr[t], models[t])) for t in SCENARIOS]
            miss = sorted({s for m in ms for s in set(m["steps"]) - set(m["steps_surfaced"])})
            prec = ", ".join("–" if m["incident_precision"] is None else f"{100 * m['incident_precision']:.0f}"
                             for m in ms)
            rows.append(f"| {'with' if variant == 'dirb' else 'without'} dirb | {name} | "
                        f"{', '.join(str(m['escalated_incidents']) for m in ms)} | "
                        f"{prec} % | "
                        f"{100 * min(m['noise_suppression'] for m in ms):.2f} % | "
                        f"{', '.join(f'`{s}`' for s in miss) or '–'} |")
            print(rows[-1], flush=True)
    finally:
        for k in steps:
            setattr(svc, k, orig[k])
    return rows


def overall(rows: list[dict[str, object]]) -> dict[str, object]:
    """Pooled over the folds: sums of items; recall and suppression weighted by alerts."""
    def s(k: str) -> float:
        return float(sum(float(r[k] or 0) for r in rows))  # type: ignore[arg-type]
    att = [r.get("attack_alerts") for r in rows]
    out: dict[str, object] = {"analyst_items": s("analyst_items"), "max_items_per_scenario":
                              max(float(r["analyst_items"]) for r in rows)}  # type: ignore[arg-type]
    for k in ("attack_recall", "attack_recall_items", "noise_suppression", "noise_suppression_items",
              "incident_precision"):
        vals = [float(r[k]) for r in rows if r.get(k) is not None]  # type: ignore[arg-type]
        out[f"min_{k}"] = min(vals) if vals else None
        out[f"mean_{k}"] = sum(vals) / len(vals) if vals else None
    out["all_steps_surfaced"] = all(set(r["steps"]) <= set(r["steps_surfaced"]) for r in rows)  # type: ignore[arg-type]
    del att
    return out


def markdown(results: dict[str, dict[str, dict[str, object]]]) -> str:
    """The tables of docs/benchmarks.md."""
    out = []
    for variant, rows in results.items():
        out.append(f"\n**{'with' if variant == 'dirb' else 'without'} dirb**\n")
        out.append("| left out | system | raw alerts | analyst items (esc + deferred) | attack recall (esc / items) | "
                   "steps surfaced (esc / items) | noise suppression (esc / items) | incident precision | "
                   "1st attack | verdicts |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for test in SCENARIOS:
            for system, m in rows[test].items():
                def pct(k: str, m: dict[str, object] = m) -> str:
                    v = m.get(k)
                    return "–" if v is None or v != v else f"{100 * float(v):.2f} %"  # type: ignore[arg-type]
                steps = m["steps"]
                out.append(
                    f"| {test} | {system} | {m['raw_alerts']:,} | {m['analyst_items']} "
                    f"({m['escalated_incidents']} + {m['deferred_items']}) | {pct('attack_recall')} / "
                    f"{pct('attack_recall_items')} | {len(m['steps_surfaced'])}/{len(steps)} / "  # type: ignore[arg-type]
                    f"{len(m['steps_surfaced_items'])}/{len(steps)} | {pct('noise_suppression')} / "  # type: ignore[arg-type]
                    f"{pct('noise_suppression_items')} | {pct('incident_precision')} | "
                    f"{m['first_attack_position'] or '–'} | {m.get('verdicts', '–')} |")
        missed = {t: sorted(set(rows[t]["phagocyte"]["steps"]) - set(rows[t]["phagocyte"]["steps_surfaced"]))  # type: ignore[arg-type]
                  for t in SCENARIOS}
        out.append(f"\nPhagocyte steps not escalated: {missed}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--deepcase", action="store_true", help="fit DeepCASE on the same splits (slow)")
    ap.add_argument("--deepcase-out", type=Path, default=Path("/tmp/peers/dc-eval"),
                    help="DeepCASE outputs: <dir>/dirb/<scenario>.npz, <dir>/nodirb/...")
    ap.add_argument("--deepcase-cap", type=int, default=2000,
                    help="training sequences per scenario (2 000 here: 2 cores shared by 5 engineers)")
    ap.add_argument("--deepcase-nodirb", action="store_true",
                    help="also refit DeepCASE without dirb (else its full run is scored without dirb)")
    ap.add_argument("--reuse-deepcase", action="store_true", help="score existing DeepCASE outputs")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--budget", type=int, help="learn from only this many verdicts (random groups)")
    ap.add_argument("--variants", default="dirb,nodirb")
    ap.add_argument("--markdown", type=Path, help="write the result tables (Markdown) here")
    ap.add_argument("--ablate", action="store_true",
                    help="only the table of the incident steps (corroboration, sweeps, concurrent) switched on and off")
    args = ap.parse_args()
    peer: dict[str, subprocess.Popen[bytes]] = {}
    if args.deepcase and not args.reuse_deepcase:
        if not PEER_PY.exists():
            sys.exit(f"DeepCASE venv missing ({PEER_PY}): see bench/deepcase_peer.py")
        for variant, extra in (("dirb", []), ("nodirb", ["--no-dirb"]))[: 2 if args.deepcase_nodirb else 1]:
            cmd = ["nice", "-n", "10", str(PEER_PY), str(Path(__file__).with_name("deepcase_peer.py")),
                   str(args.data), str(args.deepcase_out / variant), "--cap", str(args.deepcase_cap), *extra]
            peer[variant] = subprocess.Popen(cmd)
            peer[variant].wait()  # one at a time: 2 cores
    frames = {}
    for s in SCENARIOS:
        frames[s], _ = load_alerts([args.data / f"{s}_alerts.txt"], "ait-ads")
    if args.ablate:
        table = ["| variant | steps in assembly | escalated incidents | incident precision | "
                 "noise suppression, escalated (min) | steps never escalated |", "|---|---|---|---|---:|---|"]
        for variant in args.variants.split(","):
            fr = frames if variant == "dirb" else {s: without_dirb(f) for s, f in frames.items()}
            table += ablation(fr, variant)
        if args.markdown:
            args.markdown.write_text("\n".join(table) + "\n")
        return
    results: dict[str, dict[str, dict[str, object]]] = {}
    for variant in args.variants.split(","):
        fr = frames if variant == "dirb" else {s: without_dirb(f) for s, f in frames.items()}
        rows = {}
        for test in SCENARIOS:
            m, _ = run_fold(fr, test, args.budget)
            rows[test] = {"phagocyte": m}
            npz = args.deepcase_out / variant / f"{test}.npz"
            if not npz.exists():  # without dirb: DeepCASE's full run, scored on the alerts outside dirb
                npz = args.deepcase_out / "dirb" / f"{test}.npz"
            if (args.deepcase or args.reuse_deepcase) and npz.exists():
                for name, key in (("deepcase", "pred"), ("deepcase_fixed", "pred_fixed")):
                    rows[test][name] = deepcase_metrics(fr[test], npz, key)
                    rows[test][name]["predictions_from"] = npz.parent.name
            print(variant, test, json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                             for k, v in m.items()}), flush=True)
            for name in ("deepcase", "deepcase_fixed"):
                if name in rows[test]:
                    print(variant, test, name, json.dumps(rows[test][name]), flush=True)
        rows["overall"] = {"phagocyte": overall([rows[t]["phagocyte"] for t in SCENARIOS])}
        if all("deepcase" in rows[t] for t in SCENARIOS):
            for name in ("deepcase", "deepcase_fixed"):
                rows["overall"][name] = overall([rows[t][name] for t in SCENARIOS])
            summ = args.deepcase_out / variant / "summary.json"
            if summ.exists():
                rows["overall"]["deepcase_run"] = json.loads(summ.read_text())
        print(variant, "overall", json.dumps(rows["overall"]), flush=True)
        results[variant] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(markdown(results))


if __name__ == "__main__":
    main()
