"""Load benchmark of the API on loopback: NDJSON ingest rate, and incident-list latency with 100,000 incidents.

Targets (issue 7): ingest >= 5,000 events/s through `POST /api/ingest`; `GET /api/incidents` p99 < 200 ms
with 100,000 incidents stored. The server is `phago serve` (uvicorn, one process) in a subprocess; the
client is this process (httpx, keep-alive), so both share the machine's cores, as in a small deployment.

    python bench/api_bench.py [--events 200000] [--batch 10000] [--incidents 100000] [--requests 500]
                              [--cases-url postgresql+psycopg://...]

Events are generated ECS JSON lines (authentication, process and network events with varied hosts,
users and addresses); incidents are generated triage documents. Nothing is read from ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from phagocyte.cases.service import CaseStore

TACTICS = ["Discovery", "Credential Access", "Lateral Movement", "Execution", "Exfiltration", "Persistence"]


def events(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    lines = []
    for i in range(n):
        kind = rnd.choice(("auth", "proc", "net"))
        ts = f"2026-11-{1 + i % 27:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z"
        ev: dict[str, object] = {"@timestamp": ts, "host": {"name": f"ws-{rnd.randrange(500):03d}"},
                                 "seq": seed * 10_000_000 + i}
        if kind == "auth":
            ev |= {"event": {"category": ["authentication"], "outcome": rnd.choice(["success", "failure"])},
                   "user": {"name": f"user{rnd.randrange(2000)}"}, "source": {"ip": f"10.{rnd.randrange(256)}.0.7"}}
        elif kind == "proc":
            ev |= {"event": {"category": ["process"], "type": ["start"]},
                   "process": {"name": "powershell.exe", "command_line": f"powershell -nop -c Get-Item {i}",
                               "pid": rnd.randrange(65535)}}
        else:
            ev |= {"event": {"category": ["network"]},
                   "source": {"ip": f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}"},
                   "destination": {"ip": f"45.33.{rnd.randrange(256)}.{rnd.randrange(256)}", "port": 443}}
        lines.append(json.dumps(ev))
    return ("\n".join(lines) + "\n").encode()


def incidents(n: int) -> list[dict[str, object]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        out.append({"id": f"inc-{i:07d}", "score": round(rnd.random(), 4),
                    "disposition": rnd.choices(["escalate", "monitor", "auto_close"], [1, 5, 20])[0],
                    "alert_refs": [f"eve-{i % 97}.json:{rnd.randrange(1, 10**6)}"
                                   for _ in range(rnd.randrange(1, 6))],
                    "entities": {"host.name": [f"ws-{rnd.randrange(500):03d}"], "source.ip": [f"45.33.{i % 256}.9"]},
                    "tactics": rnd.sample(TACTICS, rnd.randrange(1, 4)), "summary": f"generated incident {i}",
                    "first_seen": "2026-11-20T10:00:00Z", "last_seen": f"2026-11-{1 + i % 27:02d}T11:00:00Z"})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--cases-url", default=None)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="phago-apibench-"))
    env = dict(os.environ, PHAGO_HOME=str(home), PHAGO_API_RATE="100000")
    if args.cases_url:
        env["PHAGO_CASES_URL"] = args.cases_url
    cases = CaseStore(args.cases_url or f"sqlite:///{home / 'cases.db'}")
    token = cases.create_token("analyst", "bench")

    t0 = time.perf_counter()
    docs = incidents(args.incidents)
    for i in range(0, len(docs), 5000):
        cases.import_incidents(docs[i:i + 5000], "bench")
    load_s = time.perf_counter() - t0
    cases.close()

    port = free_port()
    cmd = [sys.executable, "-c", "from phagocyte.cli.app import main; main()", "serve", "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
            for _ in range(200):
                try:
                    if c.get("/api/me").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            batches = [events(args.batch, seed) for seed in range(args.events // args.batch)]
            t0 = time.perf_counter()
            stored = 0
            for body in batches:
                r = c.post("/api/ingest", content=body, headers={"content-type": "application/x-ndjson"})
                r.raise_for_status()
                stored += r.json()["events"]
            ingest_s = time.perf_counter() - t0

            rnd = random.Random(1)
            lat = []
            for _ in range(args.requests):
                params = rnd.choice([{}, {"status": "new"}, {"disposition": "escalate"},
                                     {"offset": rnd.randrange(0, 5000)}, {"limit": 200}])
                t = time.perf_counter()
                c.get("/api/incidents", params=params).raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)
    finally:
        server.terminate()
        server.wait(10)
    lat.sort()
    p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
    rate = stored / ingest_s
    db = "PostgreSQL" if args.cases_url else "SQLite"
    print(f"| case store | {db} |\n|---|---|")
    print(f"| ingest through the API | {stored:,} events in {ingest_s:.1f} s = **{rate:,.0f} events/s** "
          f"(batches of {args.batch:,}; target ≥ 5,000) |")
    print(f"| incidents stored | {args.incidents:,} (loaded in {load_s:.1f} s) |")
    print(f"| `GET /api/incidents` | p50 {p50:.1f} ms, **p99 {p99:.1f} ms** over {len(lat)} requests "
          "(target < 200 ms) |")


if __name__ == "__main__":
    main()
