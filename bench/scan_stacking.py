"""PowerShell experiment: does a second-level model on the classifier's probability, the heuristics and
structural features move the curve? (issue 6, session 4's experiment; its "probability + heuristics -> lr"
variant became the shipped combined score in session 5, `ScriptClassifier.fit`, with weights kept >= 0;
`bench/scan_eval.py` measures that one)

    nice -n 5 PYTHONPATH=$PWD/src python bench/scan_stacking.py [--jobs 2] [--out /tmp/scan_stacking.json]

Same data, distinct contents and near-duplicate grouping as `bench/scan_eval.py` (5 outer folds, seed 6).
In each outer fold the word model is fitted on the training part and scores the test part; an inner grouped
5-fold split of the training part gives out-of-fold probabilities, on which the second-level model is fitted
(so it never sees a probability from a model that trained on the same file). Its threshold comes from an
inner grouped CV of the second-level model on the training part only (<= 0.5 % false positives). Settings
are library defaults or fixed a priori; none is chosen on the outer folds.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import scan_eval as se

from phagocyte.analysers.classifier import _pipeline, near_duplicate_groups
from phagocyte.analysers.scripts.heuristics import RULES

_RULES = sorted({r.name for r in RULES["powershell"]} | {"obfuscated"})
_LAYERS = ["base64", "char-codes", "iex", "format", "join", "literals", "constants", "replace", "reverse", "xor",
           "gzip", "deflate", "backtick", "encoded-command"]
_CMDLET = re.compile(r"\b[A-Za-z]{2,12}-[A-Za-z]{2,30}\b")
_TYPE = re.compile(r"\[[A-Za-z][\w.]{2,80}\]")
_PARAM = re.compile(r"(?<=\s)-[A-Za-z]{2,30}\b")
_B64 = re.compile(r"[A-Za-z0-9+/]{100,}={0,2}")
N_STRUCT = 21


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(v / n * math.log2(v / n) for v in Counter(s).values()) if n else 0.0


def _analyse(path: str) -> dict[str, Any]:
    from phagocyte.analysers.limits import ScanLimits
    from phagocyte.analysers.scripts import analyse_script
    from phagocyte.analysers.scripts.decoding import decode_text

    data = Path(path).read_bytes()
    v = analyse_script(data, path, language="powershell", limits=ScanLimits(max_seconds=5.0))
    raw = decode_text(data)
    deob = v.deobfuscated if v.deobfuscated is not None else raw
    d, r, low = deob[:200_000], raw[:20_000], deob[:200_000].lower()
    d20 = d[:20_000]
    struct = [math.log1p(len(raw)), math.log1p(len(deob)), len(deob) / max(len(raw), 1), math.log1p(d.count("\n") + 1),
              _entropy(r), _entropy(d20), sum(c.isalnum() for c in d20) / max(len(d20), 1),
              sum(c in "`'\"+{}()[]$" for c in r) / max(len(r), 1),
              max((len(x) for x in d.split("\n")), default=0) / 1000, math.log1p(len(_B64.findall(d[:50_000]))),
              math.log1p(len(_CMDLET.findall(d))), math.log1p(len(_TYPE.findall(d))),
              math.log1p(len(_PARAM.findall(d))), math.log1p(low.count("function ")), float(".synopsis" in low),
              float("cmdletbinding" in low), float("param(" in low.replace(" ", "")), math.log1p(low.count("#")),
              sum(c.isupper() for c in r) / max(len(r), 1), v.score, float(len(v.layers))]
    names = {x.name for x in v.reasons}
    heur = [float(x in names) for x in _RULES] + [float(v.layers.count(x)) for x in _LAYERS]
    return {"deob": d, "struct": struct, "heur": heur}


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)))


def _threshold(p: np.ndarray, y: np.ndarray, fpr: float = 0.005) -> float:
    neg = np.sort(p[y == 0])
    return min(max(float(neg[-(int(np.floor(fpr * len(neg))) + 1)]) + 1e-6, 0.05), 0.95)


def _second(kind: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "lr":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))
    return HistGradientBoostingClassifier(random_state=0, class_weight="balanced")


def main() -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    paths, labels, _ = se.distinct(*se.corpus("powershell"))
    with mp.get_context("fork").Pool(args.jobs) as pool:
        rows = pool.map(_analyse, [str(p) for p in paths], chunksize=8)
    y = np.array(labels)
    texts = np.array([r["deob"] for r in rows], dtype=object)
    struct, heur = np.array([r["struct"] for r in rows]), np.array([r["heur"] for r in rows])
    groups = np.array(near_duplicate_groups(list(texts)))
    folds = []
    p_test = np.zeros(len(y))
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=args.seed).split(texts, y, groups):
        p_test[te] = _pipeline().fit(list(texts[tr]), y[tr]).predict_proba(list(texts[te]))[:, 1]
        oof = np.zeros(len(tr))
        for a, b in StratifiedGroupKFold(5, shuffle=True, random_state=args.seed + 1).split(tr, y[tr], groups[tr]):
            oof[b] = _pipeline().fit(list(texts[tr][a]), y[tr][a]).predict_proba(list(texts[tr][b]))[:, 1]
        folds.append((tr, te, oof))
        print(f"fold {len(folds)} of 5", flush=True)
    results: dict[str, Any] = {"text model at 0.5": se.metrics(y, p_test, 0.5)}
    sets = {"probability": lambda idx: np.zeros((len(idx), 0)),
            "probability + heuristics": lambda idx: heur[idx],
            "probability + heuristics + structural": lambda idx: np.column_stack([heur[idx], struct[idx]])}
    for name, extra in sets.items():
        for kind in ("lr", "hgb"):
            p05, hit = np.zeros(len(y)), np.zeros(len(y))
            for tr, te, oof in folds:
                xtr = np.column_stack([_logit(oof), extra(tr)])
                xte = np.column_stack([_logit(p_test[te]), extra(te)])
                inner = np.zeros(len(tr))
                for a, b in StratifiedGroupKFold(5, shuffle=True, random_state=args.seed + 2).split(xtr, y[tr],
                                                                                                    groups[tr]):
                    inner[b] = _second(kind).fit(xtr[a], y[tr][a]).predict_proba(xtr[b])[:, 1]
                p = _second(kind).fit(xtr, y[tr]).predict_proba(xte)[:, 1]
                p05[te], hit[te] = p, p >= _threshold(inner, y[tr])
            results[f"{name} -> {kind}"] = {"at_0.5": se.metrics(y, p05, 0.5), "fitted": se.metrics(y, hit, 0.5)}
            print(name, kind, json.dumps(results[f"{name} -> {kind}"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
