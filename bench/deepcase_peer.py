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
takes 12–23 min on 2 cores. DeepCASE's predictions are given twice from the same fit: as shipped
(pip 1.0.1, with the two lookup bugs of `Interpreter.score`/`predict` documented in the note) and
with both lookups fixed (`FixedInterpreter`).

Output: one `.npz` per left-out scenario with the 1-based CSV line and DeepCASE's prediction per
alert, as shipped (`pred`) and fixed (`pred_fixed`): score ≥ 0 matched a cluster, > 0 malicious;
-1/-2/-3 not handled (goes to a human).
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
from deepcase.interpreter.utils import group_by, sp_unique, unique_2d
from deepcase.preprocessing import Preprocessor
from sklearn.neighbors import KDTree


class FixedInterpreter(Interpreter):  # type: ignore[misc]
    """DeepCASE's Interpreter with the two lookup bugs of `score`/`predict` fixed (see the note):
    vectors are looked up by their position among *confident* sequences, and each KD-tree point's
    label is stored and read by its data index. Clustering and the network are unchanged."""

    def attended_context(self, *a, **kw):  # type: ignore[no-untyped-def]
        vectors, mask = super().attended_context(*a, **kw)
        self._mask = mask.cpu().numpy()
        return vectors, mask

    def cluster(self, *a, **kw):  # type: ignore[no-untyped-def]
        clusters = super().cluster(*a, **kw)
        self._cluster_mask = self._mask
        return clusters

    def score(self, scores, verbose=False):  # type: ignore[no-untyped-def]
        clustered = self.clusters != -1
        scores = np.asarray(scores)[clustered]
        conf_pos = (np.cumsum(self._cluster_mask) - 1)[clustered]
        for event, indices in group_by(self.events[clustered]):
            vectors, inverse, _ = sp_unique(self.vectors[conf_pos[indices]])
            self.tree[event] = KDTree(vectors.toarray(), p=1)
            labels = np.full(vectors.shape[0], -np.inf)
            np.maximum.at(labels, np.asarray(inverse).reshape(-1), scores[indices])
            self.labels[event] = labels
        return self

    def predict(self, X, y, iterations=100, batch_size=1024, verbose=False):  # type: ignore[no-untyped-def]
        X, y, inverse_result = unique_2d(X, y)
        vectors, mask = self.attended_context(X=X, y=y, threshold=self.threshold, iterations=iterations,
                                              batch_size=batch_size, verbose=verbose)
        result = np.full(vectors.shape[0], -4, dtype=float)
        for event, indices in group_by(y[mask].squeeze(1).cpu().numpy()):
            if event not in self.tree:
                result[indices] = -2
                continue
            vectors_, inverse, _ = sp_unique(vectors[indices])
            distance, neighbours = self.tree[event].query(X=vectors_.toarray(), return_distance=True,
                                                           dualtree=vectors_.shape[0] >= 1e3)
            scores = self.labels[event][neighbours[:, 0]]
            result[indices] = np.where(distance[:, 0] <= self.eps, scores, -3)[inverse]
        out = np.full(X.shape[0], -1, dtype=float)
        out[mask.cpu().numpy()] = result
        return out[inverse_result.cpu().numpy()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path, help="folder with <scenario>_alerts.txt")
    ap.add_argument("out", type=Path)
    ap.add_argument("--cap", type=int, default=20000, help="training sequences per scenario")
    ap.add_argument("--no-dirb", action="store_true", help="drop the dirb phase from the input")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="left-out scenarios to run (comma-separated; default all)")
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
    summ_path = args.out / "summary.json"
    summary = json.loads(summ_path.read_text()) if summ_path.exists() else {"folds": {}}
    summary["preprocess_s"] = prep_s
    n_events = len(mapping)
    only = set(args.only.split(",")) if args.only else set(scen)
    for test in sorted(set(scen) & only):
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
        it = FixedInterpreter(context_builder=cb, features=n_events, eps=0.1, min_samples=5, threshold=0.2)
        clusters = it.cluster(context[tr], events[tr].reshape(-1, 1), iterations=100, batch_size=1024, verbose=False)
        scores = it.score_clusters(labels[tr].numpy(), strategy="max", NO_SCORE=-1)
        it.score(scores, verbose=False)
        fit_s = time.time() - t0
        t1 = time.time()
        pred_fixed = it.predict(context[te], events[te].reshape(-1, 1), iterations=100, batch_size=1024)
        pred_s = time.time() - t1
        # As shipped: the same clusters, scored and looked up by DeepCASE's own code.
        it.tree, it.labels = {}, {}
        Interpreter.score(it, scores, verbose=False)
        pred = Interpreter.predict(it, context[te], events[te].reshape(-1, 1), iterations=100, batch_size=1024)
        np.savez_compressed(args.out / f"{test}.npz", line=data["line"].to_numpy()[te].astype(np.int64),
                            pred=np.asarray(pred, dtype=np.float64), pred_fixed=np.asarray(pred_fixed, np.float64))
        summary["folds"][test] = {"train": len(tr), "test": len(te), "fit_s": fit_s, "predict_s": pred_s,
                                  "predict_rate": len(te) / pred_s if pred_s else None,
                                  "clusters": len(set(np.asarray(clusters).tolist()) - {-1})}
        print(test, json.dumps(summary["folds"][test]), flush=True)
        if summ_path.exists():  # another process may have added its folds meanwhile
            summary["folds"] = {**json.loads(summ_path.read_text())["folds"], **summary["folds"]}
        summ_path.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
