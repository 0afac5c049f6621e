"""DeepCASE (van Ede et al., S&P 2022) on AIT-ADS, leave-one-scenario-out: the triage peer.

Runs in its own venv (never in the lock files), made once by:

    python3.11 -m venv /tmp/peers/deepcase-venv
    /tmp/peers/deepcase-venv/bin/pip install torch==2.13.0
    /tmp/peers/deepcase-venv/bin/pip install deepcase numpy scipy pandas scikit-learn tqdm argformat

`bench/triage_eval.py` calls it (same run, same splits) and scores its predictions with the same
metrics. Mapping (from shared/notes/deepcase-peer.md): event = AIT-ADS `short` code, machine =
scenario + host, label = 1 when `event_label` ≠ `-`. Paper settings: context 10, timeout 1 day,
hidden 128, 10 epochs, batch 128, lr 0.01, DBSCAN eps 0.1, min_samples 5, confidence 0.2, cluster
score `max`. Contexts are built from the full streams; each training scenario is then subsampled
in time order (every k-th sequence) to at most `--cap` sequences, since a fit on 200 k sequences
takes 12–23 min on 2 cores. DeepCASE runs as shipped (pip 1.0.1), including the two indexing bugs
of `Interpreter.predict`/`score` documented in the note; the report says so.

Output: one `.npz` per left-out scenario with the 1-based CSV line and DeepCASE's prediction per
alert (score ≥ 0 matched a cluster, > 0 malicious; -1/-2/-3 not handled: goes to a human).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from deepcase.context_builder import ContextBuilder
from deepcase.interpreter import Interpreter
from deepcase.preprocessing import Preprocessor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path, help="folder with <scenario>_alerts.txt")
    ap.add_argument("out", type=Path)
    ap.add_argument("--cap", type=int, default=20000, help="training sequences per scenario")
    ap.add_argument("--no-dirb", action="store_true", help="drop the dirb phase from the input")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    frames = []
    for f in sorted(args.data.glob("*_alerts.txt")):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        df["line"] = np.arange(len(df)) + 2
        df["scenario"] = f.name.removesuffix("_alerts.txt")
        frames.append(df)
    data = pd.concat(frames, ignore_index=True)
    if args.no_dirb:
        data = data[(data.time_label != "dirb") & (data.event_label != "dirb")].reset_index(drop=True)
    data["timestamp"] = data["time"].astype(float)
    data["machine"] = data["scenario"] + "/" + data["host"]
    data["event"] = data["short"]
    data["label"] = (data["event_label"] != "-").astype(int)
    data = data.sort_values(["timestamp", "scenario", "line"], kind="stable").reset_index(drop=True)
    t = time.time()
    pre = Preprocessor(length=10, timeout=86400)
    context, events, labels, mapping = pre.sequence(data[["timestamp", "machine", "event", "label"]].copy(),
                                                    labels=data["label"].to_numpy())
    prep_s = time.time() - t
    args.out.mkdir(parents=True, exist_ok=True)
    scen = data["scenario"].to_numpy()
    summary = {"preprocess_s": prep_s, "folds": {}}
    n_events = len(mapping)
    for test in sorted(set(scen)):
        train_idx = []
        for s in sorted(set(scen) - {test}):
            idx = np.nonzero(scen == s)[0]
            step = max(1, int(np.ceil(len(idx) / args.cap)))
            train_idx.append(idx[::step])
        tr = np.concatenate(train_idx)
        te = np.nonzero(scen == test)[0]
        t0 = time.time()
        cb = ContextBuilder(input_size=n_events, output_size=n_events, hidden_size=128, max_length=10)
        cb.fit(context[tr], events[tr].reshape(-1, 1), epochs=10, batch_size=128, learning_rate=0.01, verbose=False)
        it = Interpreter(context_builder=cb, features=n_events, eps=0.1, min_samples=5, threshold=0.2)
        clusters = it.cluster(context[tr], events[tr].reshape(-1, 1), iterations=100, batch_size=1024, verbose=False)
        scores = it.score_clusters(labels[tr].numpy(), strategy="max", NO_SCORE=-1)
        it.score(scores, verbose=False)
        fit_s = time.time() - t0
        t1 = time.time()
        pred = it.predict(context[te], events[te].reshape(-1, 1), iterations=100, batch_size=1024, verbose=False)
        pred_s = time.time() - t1
        np.savez_compressed(args.out / f"{test}.npz", line=data["line"].to_numpy()[te].astype(np.int64),
                            pred=np.asarray(pred, dtype=np.float64))
        summary["folds"][test] = {"train": len(tr), "test": len(te), "fit_s": fit_s, "predict_s": pred_s,
                                  "predict_rate": len(te) / pred_s if pred_s else None,
                                  "clusters": len(set(np.asarray(clusters).tolist()) - {-1})}
        print(test, json.dumps(summary["folds"][test]), flush=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
