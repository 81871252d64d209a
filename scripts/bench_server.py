"""Benchmark the SPARQL endpoint: cold start, memory, and concept-lookup throughput.

    python scripts/bench_server.py [--clients 8] [--seconds 10]

Starts `kd serve` on a free port against the built store (run `kd build` first), measures
the time until the first answered query (cold start), the resident memory of the server
and its query workers, then runs concept-lookup queries from N concurrent clients for a
fixed time and reports requests/s and latency percentiles. Loopback traffic only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.server_harness import child_pids, free_port  # noqa: E402

from kb.config import Paths  # noqa: E402
from kb.store import open_store  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4, help="server query workers (KD_WORKERS)")
    args = parser.parse_args()

    paths = Paths.from_env()
    concepts = [r["c"] for r in open_store(paths.data_dir).select("SELECT ?c WHERE { ?c a skos:Concept }")]
    port = free_port()
    url = f"http://127.0.0.1:{port}/sparql"
    # Every client here is 127.0.0.1: without this, the per-client limit would measure itself.
    env = {"KD_PORT": str(port), "KD_WORKERS": str(args.workers), "KD_CLIENT_CONCURRENCY": "0"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kb.cli", "serve"], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(url, params={"query": "ASK {}"}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.02)
        cold_start = time.perf_counter() - started

        latencies: list[float] = []
        errors = 0
        lock = threading.Lock()
        deadline = time.perf_counter() + args.seconds

        def client(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            with httpx.Client(timeout=30) as session:
                while time.perf_counter() < deadline:
                    concept = rng.choice(concepts)
                    query = f"SELECT ?p ?o WHERE {{ <{concept}> ?p ?o }}"
                    t0 = time.perf_counter()
                    r = session.get(url, params={"query": query},
                                    headers={"Accept": "application/sparql-results+json"})
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        errors += r.status_code != 200

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server_rss = rss_kib(proc.pid)
        worker_rss = [rss_kib(p) for p in child_pids(proc.pid)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    latencies.sort()
    report = {
        "clients": args.clients, "workers": args.workers, "seconds": round(elapsed, 2),
        "requests": len(latencies), "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
        "cold_start_s": round(cold_start, 2),
        "server_rss_mib": round(server_rss / 1024, 1),
        "workers_rss_mib": round(sum(worker_rss) / 1024, 1),
        "child_processes": len(worker_rss),
        "concepts_in_lookup": len(concepts),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
