"""Phishing e-mail evaluation: Phagocyte vs SpamAssassin vs rspamd on the same messages, same run.

Data (read from the evaluation cache, never copied): phishing_pot (phishing), SpamAssassin easy
ham, hard ham and spam (2002), usrp-users (modern ham, 2019-26). Phagocyte is scored by stratified
5-fold cross-validation (3 classes: clean / phishing / spam; trained on 4 folds, tested on the
fifth, no tuning on the test folds), twice: on the raw messages ("all features") and on the
messages after `strip_provenance` ("provenance stripped", the headline). The peers see exactly
the same bytes in each mode; they are not retrained (their shipped rules, network tests off).

    python bench/email_eval.py                       # Phagocyte only
    python bench/email_eval.py --peers               # + SpamAssassin (spamd/spamc) and rspamd
    python bench/email_eval.py --limit 200 --peers   # a quick look: 200 messages per group
    python bench/email_eval.py --speed-only --modes stripped   # throughput only, no cross-validation

Prints a Markdown report and writes JSON to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from phagocyte.email.model import EmailModel, features, train
from phagocyte.email.parse import parse_message
from phagocyte.email.provenance import strip_provenance
from phagocyte.email.signals import collect
from phagocyte.email.verdict import analyse

CACHE = Path(os.environ.get("PHAGO_EVALDATA", Path.home() / ".cache" / "phagocyte-evaldata"))
GROUPS = {
    "phishing": ("phishing", CACHE / "email/phishing_pot/email"),
    "ham": ("clean", CACHE / "email/spamassassin_public_corpus/easy-ham-1"),
    "hard_ham": ("clean", CACHE / "email/spamassassin_public_corpus/hard-ham-1"),
    "modern_ham": ("clean", CACHE / "email_modern_ham/usrp-users"),
    "spam": ("spam", CACHE / "email/spamassassin_public_corpus/spam-1"),
}
HAM_GROUPS = ("ham", "hard_ham", "modern_ham")


def load(limit: int | None, seed: int = 0) -> list[tuple[str, str, bytes]]:
    """(group, path, raw bytes) for every message, `limit` per group drawn at random."""
    out = []
    rng = random.Random(seed)
    for group, (_, folder) in GROUPS.items():
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "MANIFEST.md")
        if limit and len(files) > limit:
            files = sorted(rng.sample(files, limit))
        out.extend((group, str(p), p.read_bytes()) for p in files)
    return out


def _featurise(raw: bytes) -> tuple[list[tuple[str, float]], list[str]]:
    pm = parse_message(raw)
    reasons, _ = collect(pm)
    return features(pm, reasons), [r.code for r in reasons]


def _signal_score(raw: bytes) -> float:
    return analyse(raw).score


def metrics(groups: list[str], predicted: list[str], seconds: float | None = None) -> dict[str, Any]:
    """Phishing vs ham precision/recall/F1 and the false-positive rate on each ham group."""
    g = np.array(groups)
    p = np.array(predicted)
    is_ham = np.isin(g, HAM_GROUPS)
    pos = g == "phishing"
    tp = int(((p == "phishing") & pos).sum())
    fp = int(((p == "phishing") & is_ham).sum())
    fn = int(((p != "phishing") & pos).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    out: dict[str, Any] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                           "tp": tp, "fp": fp, "fn": fn}
    for h in HAM_GROUPS:
        m = g == h
        out[f"fpr_{h}"] = float((p[m] == "phishing").mean()) if m.any() else None
        out[f"flagged_{h}"] = float((p[m] != "clean").mean()) if m.any() else None
    out["fpr_all_ham"] = float((p[is_ham] == "phishing").mean()) if is_ham.any() else None
    m = g == "spam"
    out["spam_recall"] = float((p[m] == "spam").mean()) if m.any() else None
    out["spam_flagged"] = float((p[m] != "clean").mean()) if m.any() else None
    if seconds:
        out["msgs_per_s"] = len(groups) / seconds
    return out


def cross_validate(rows: list[list[tuple[str, float]]], labels: list[str], groups: list[str], folds: int,
                   seed: int) -> tuple[list[str], list[float]]:
    from sklearn.model_selection import StratifiedKFold

    pred = [""] * len(rows)
    score = [0.0] * len(rows)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in skf.split(np.zeros(len(rows)), groups):
        model = train([rows[i] for i in train_idx], [labels[i] for i in train_idx])
        proba = model.proba([rows[i] for i in test_idx])
        k = model.classes.index("phishing")
        for i, pr in zip(test_idx, proba, strict=True):
            score[i] = float(pr[k])
            if pr[k] >= 0.5:
                pred[i] = "phishing"
            else:
                rest = [(pr[j], c) for j, c in enumerate(model.classes) if c != "phishing"]
                pred[i] = max(rest)[1]
    return pred, score


# ---------------------------------------------------------------- peers


def _children_cpu() -> float:
    """CPU seconds of every waited-for descendant (pool workers after shutdown, spamc calls)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _group_cpu(pgid: int) -> float:
    """CPU seconds so far of the live processes of a process group (a peer daemon and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after ")": state ppid pgrp ... utime(11) stime(12) cutime cstime
            total += sum(int(x) for x in fields[11:15])
    return total / tick


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 60) -> None:
    import socket

    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"peer did not open port {port}")


def _pool_map(fn: Any, items: list[Any], jobs: int) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(jobs) as ex:
        return list(ex.map(fn, items))


class SpamAssassin:
    """spamd with the shipped rules, local tests only (-L: no DNS, no Razor/Pyzor, no network).

    Its pid file goes to a scratch folder: spamd deletes its pid file on exit (never /dev/null)."""

    name = "SpamAssassin"

    def __init__(self, jobs: int) -> None:
        self.port = _free_port()
        self.jobs = jobs
        self.work = Path(tempfile.mkdtemp(prefix="phago-spamd-"))
        self.proc = subprocess.Popen(
            ["spamd", "-L", "--listen", f"127.0.0.1:{self.port}", "-m", str(jobs), "--min-children", str(jobs),
             "--max-conn-per-child", "1000000", "-s", "stderr", "-u", "nobody",
             "--pidfile", str(self.work / "spamd.pid"), "--timeout-child", "60"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, 120)
        self.version = subprocess.run(["spamassassin", "--version"], capture_output=True, text=True).stdout.split(
            "\n")[0]

    def _one(self, raw: bytes) -> bool:
        r = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(self.port), "-c", "-s", "50000000"], input=raw,
                           capture_output=True, timeout=120)
        return r.stdout.strip().split(b"/")[0] != b"" and float(r.stdout.split(b"/")[0] or 0) >= 5.0

    def classify(self, raws: list[bytes]) -> list[bool]:
        return _pool_map(self._one, raws, self.jobs * 2)

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


class Rspamd:
    """rspamd with its shipped rules, network modules off (DNS lists, fuzzy, URIBL, Bayes autolearn...)."""

    name = "rspamd"
    _OFF = ("rbl", "surbl", "fuzzy_check", "dkim", "spf", "dmarc", "arc", "asn", "emails", "phishing", "url_redirector",
            "replies", "ratelimit", "greylist", "neural", "mx_check", "dcc", "antivirus", "external_services",
            "elastic", "clickhouse", "metadata_exporter", "bimi", "reputation", "history_redis", "dynamic_conf",
            "maillist_redis", "known_senders", "p0f", "rspamd_update", "spamtrap", "aws_s3", "fuzzy_collect",
            "mid", "milter_headers", "force_actions", "whitelist", "multimap", "settings")

    def __init__(self, jobs: int, work: Path) -> None:
        self.work = work
        self.port = _free_port()
        conf = work / "local.d"
        conf.mkdir(parents=True, exist_ok=True)
        # keep dkim/spf/dmarc modules off: they need DNS; "phishing" module's feeds need the network.
        for mod in self._OFF:
            (conf / f"{mod}.conf").write_text("enabled = false;\n")
        (conf / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{self.port}";\ncount = {jobs};\n')
        (conf / "worker-controller.inc").write_text(f'bind_socket = "127.0.0.1:{_free_port()}";\n')
        (conf / "worker-proxy.inc").write_text("enabled = false;\n")
        (conf / "worker-fuzzy.inc").write_text("enabled = false;\n")
        (conf / "options.inc").write_text('dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 0; }\n'
                                          "local_addrs = [];\n")
        (conf / "redis.conf").write_text("")
        (conf / "classifier-bayes.conf").write_text("autolearn = false;\n")
        (conf / "logging.inc").write_text(f'type = "file"; filename = "{work}/rspamd.log"; level = "error";\n')
        self.proc = subprocess.Popen(
            ["rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
             "--var", f"LOCAL_CONFDIR={work}", "--var", f"DBDIR={work}", "--var", f"RUNDIR={work}",
             "--var", f"LOGDIR={work}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        shutil.chown(work, "_rspamd", "_rspamd")
        _wait_port(self.port, 60)
        self.jobs = jobs
        self.version = subprocess.run(["rspamd", "--version"], capture_output=True, text=True).stdout.strip()

    def _one(self, raw: bytes) -> bool:
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/checkv2", data=raw, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            result = json.loads(resp.read())
        return result.get("action") in ("reject", "add header", "rewrite subject", "soft reject")

    def classify(self, raws: list[bytes]) -> list[bool]:
        return _pool_map(self._one, raws, self.jobs * 2)

    def close(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def run_peer(peer: Any, groups: list[str], raws: list[bytes]) -> dict[str, Any]:
    cpu0 = _group_cpu(peer.proc.pid) + _children_cpu()
    t = time.perf_counter()
    flagged = peer.classify(raws)
    dt = time.perf_counter() - t
    cpu = _group_cpu(peer.proc.pid) + _children_cpu() - cpu0
    # A peer says spam or not: spam verdicts count as "phishing" for phishing vs ham, "spam" for the spam class.
    pred = ["phishing" if f and g != "spam" else "spam" if f else "clean" for f, g in zip(flagged, groups, strict=True)]
    m = metrics(groups, pred, dt)
    m["cpu_s"] = cpu
    m["msgs_per_cpu_s"] = len(raws) / cpu if cpu else None
    m["spam_recall"] = float(np.mean([f for f, g in zip(flagged, groups, strict=True) if g == "spam"] or [0]))
    return m


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="messages per group (default: all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--peers", action="store_true", help="also run SpamAssassin and rspamd")
    ap.add_argument("--modes", default="all,stripped", help="all (raw messages), stripped (provenance removed)")
    ap.add_argument("--json", type=Path, default=Path("/tmp/phago-email-eval.json"))
    ap.add_argument("--speed-only", action="store_true",
                    help="skip the cross-validation: only the analyser's throughput (model trained on all)")
    args = ap.parse_args()
    data = load(args.limit, args.seed)
    groups = [g for g, _, _ in data]
    labels = [GROUPS[g][0] for g in groups]
    print(f"{len(data)} messages: " + ", ".join(f"{g} {groups.count(g)}" for g in GROUPS), file=sys.stderr)
    results: dict[str, Any] = {"messages": {g: groups.count(g) for g in GROUPS}, "modes": {}}
    with ProcessPoolExecutor(args.jobs) as ex:
        for mode in args.modes.split(","):
            t = time.perf_counter()
            raws = [raw for _, _, raw in data] if mode == "all" else list(
                ex.map(strip_provenance, [raw for _, _, raw in data], chunksize=32))
            t_strip = time.perf_counter() - t
            t = time.perf_counter()
            feats = list(ex.map(_featurise, raws, chunksize=32))
            t_feat = time.perf_counter() - t
            rows = [f for f, _ in feats]
            mres: dict[str, Any] = {"phagocyte": {},
                                     "seconds": {"strip": t_strip, "parse_signals_features": t_feat}}
            if not args.speed_only:
                t = time.perf_counter()
                pred, _ = cross_validate(rows, labels, groups, args.folds, args.seed)
                mres["seconds"]["cv_train_predict"] = time.perf_counter() - t
                sig_scores = list(ex.map(_signal_score, raws, chunksize=32))
                sig_pred = ["phishing" if s >= 0.5 else "spam" if s >= 0.3 else "clean" for s in sig_scores]
                mres["phagocyte"] = metrics(groups, pred)
                mres["phagocyte_signals_only"] = metrics(groups, sig_pred)
            # Throughput of the whole analyser (parse, signals, model, verdict) with a model trained on all.
            model = train(rows, labels)
            rate, cpu = _throughput(model, raws, args.jobs)
            mres["phagocyte"].update(msgs_per_s=rate, cpu_s=cpu, msgs_per_cpu_s=len(raws) / cpu)
            print(f"[{mode}] phagocyte {json.dumps(mres['phagocyte'])}", file=sys.stderr)
            if args.peers:
                for make in (lambda: SpamAssassin(args.jobs), lambda: Rspamd(args.jobs, Path(tempfile.mkdtemp()))):
                    try:
                        peer = make()
                    except Exception as exc:
                        print(f"peer failed to start: {exc}", file=sys.stderr)
                        continue
                    try:
                        mres[peer.name] = run_peer(peer, groups, raws)
                        mres[peer.name]["version"] = peer.version
                        print(f"[{mode}] {peer.name} {json.dumps(mres[peer.name])}", file=sys.stderr)
                    finally:
                        peer.close()
            results["modes"][mode] = mres
    results["machine"] = f"{os.cpu_count()} CPUs; jobs={args.jobs}; load average at the end {os.getloadavg()}"
    args.json.write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


_model_for_workers: EmailModel | None = None


def _init_worker(folder: str) -> None:
    global _model_for_workers
    _model_for_workers = EmailModel.load(Path(folder))


def _analyse_with_model(raw: bytes) -> str:
    return analyse(raw, model=_model_for_workers).label


def _throughput(model: EmailModel, raws: list[bytes], jobs: int) -> tuple[float, float]:
    """(messages per wall second, CPU seconds) of the whole analyser over `raws` on `jobs` workers."""
    folder = Path(tempfile.mkdtemp())
    model.save(folder)
    cpu0 = _children_cpu()
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(str(folder),)) as ex:
        t = time.perf_counter()
        list(ex.map(_analyse_with_model, raws, chunksize=16))
        dt = time.perf_counter() - t
    cpu = _children_cpu() - cpu0  # includes loading the model in each worker
    shutil.rmtree(folder, ignore_errors=True)
    return len(raws) / dt, cpu


def report(results: dict[str, Any]) -> str:
    lines = ["messages: " + ", ".join(f"{g} {n}" for g, n in results["messages"].items()), ""]
    cols = ["precision", "recall", "f1", "fpr_ham", "fpr_hard_ham", "fpr_modern_ham", "spam_recall", "msgs_per_s",
            "msgs_per_cpu_s"]
    for mode, res in results["modes"].items():
        lines.append(f"### {'all features' if mode == 'all' else 'provenance stripped'}")
        lines.append("| system | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for system, m in res.items():
            if system == "seconds":
                continue
            cells = []
            for c in cols:
                v = m.get(c)
                cells.append("" if v is None else f"{v:.1f}" if c.startswith("msgs_") else f"{v:.4f}")
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
