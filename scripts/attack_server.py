"""Attack a running `kd serve` the way the hardening issue asks, and report what happened.

    .venv/bin/python scripts/attack_server.py [--fuzz 10000] [--rounds 5] [--json]

It builds the project's store into a temporary data directory, starts a loopback listener
that plays every other host, and starts real servers (`python -m kb.cli serve`):

1. **bypass attempts**: every crafted attempt of `tests/guard_oracle.py` plus the generated and
   mutated requests that make the bare engine connect to the listener, sent over HTTP to
   a default server; then the same to a server with the guard switched off (the sandbox
   alone) and an update token (so LOAD is tried too). Counts: attempts, connections received.
2. **fuzz**: garbled and hostile requests (mutated SPARQL, bad parameters, encodings, media
   types, sizes, methods, Linked-Data and API paths, headers, raw bytes that are not HTTP).
   Counts every status; any 5xx is listed with its request.
   The fuzz runs against a store of a few triples, so that any 5xx is the request's fault
   and not the cost of a valid query; a quarter as many go to the project's store too, where
   a mutated query can also be merely expensive and stopped at the time limit (503).
3. **fairness**: four runaway queries from four client addresses, and a fifth client's ASK
   every 100 ms while they run; its latency (median, 90th percentile, max) over `--rounds`.

Nothing here asserts a time: it measures and prints (tests/test_security.py asserts the
properties themselves).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kb  # noqa: E402
from kb.config import Paths  # noqa: E402
from tests.guard_oracle import Generator, Listener, bypass_attempts, engine  # noqa: E402
from tests.server_harness import running_server  # noqa: E402

TOKEN = "attack-token"
RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"


def live_attempts(listener: Listener, generated: int) -> list[tuple[str, bool]]:
    """Crafted attempts, and generated ones the bare engine really sends to the listener."""
    attempts = bypass_attempts(f"http://127.0.0.1:{listener.port}/")
    for text, update in Generator(listener.port, seed=1234).cases(generated):
        if engine(text, update=update, listener=listener).tried:
            attempts.append((text, update))
    return attempts


def send_attempts(url: str, attempts, *, token: str | None = None) -> Counter:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def one(attempt) -> int:
        text, update = attempt
        response = httpx.post(url + "/sparql", data={"update" if update else "query": text},
                              headers=headers, timeout=60)
        return response.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        return Counter(pool.map(one, attempts))


# -- fuzz ---------------------------------------------------------------------------------------
class Fuzzer:
    def __init__(self, port: int, listener_port: int, seed: int):
        self.rng = random.Random(seed)
        self.generator = Generator(listener_port, seed)
        self.cases = self.generator.cases(10**9)
        self.port = port

    def junk(self, n: int = 20) -> str:
        alphabet = "ab{}()<>\"'#\\%?$:_.;,@^|!*&=\n\t \u00e9\u2028\x00\ufffd"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, n)))

    def request(self) -> dict:
        """One hostile request, as httpx.request keyword arguments (or raw bytes)."""
        rng = self.rng
        kind = rng.random()
        text, update = next(self.cases)
        if kind < 0.35:  # a mutated or hostile query, by GET or POST in every encoding
            how = rng.choice(["get", "form", "direct", "update-form", "update-direct"])
            if how == "get":
                return {"method": "GET", "url": "/sparql", "params": {"query": text}}
            if how == "form":
                return {"method": "POST", "url": "/sparql", "data": {"query": text}}
            if how == "direct":
                return {"method": "POST", "url": "/sparql", "content": text.encode("utf-8", "surrogatepass"),
                        "headers": {"Content-Type": "application/sparql-query"}}
            return {"method": "POST", "url": "/sparql", "data": {"update": text}} if how == "update-form" else \
                {"method": "POST", "url": "/sparql", "content": text.encode(),
                 "headers": {"Content-Type": "application/sparql-update", "Authorization": "Bearer wrong"}}
        if kind < 0.45:  # protocol parameters
            params = {rng.choice(["query", "update", "default-graph-uri", "named-graph-uri", "using-graph-uri",
                                  "x", ""]): self.junk() for _ in range(rng.randint(1, 4))}
            params.setdefault("query", rng.choice(["ASK {}", text, self.junk()]))
            return {"method": rng.choice(["GET", "POST"]), "url": "/sparql", "params": params}
        if kind < 0.55:  # bodies: media types, charsets, bytes that are not UTF-8, sizes
            body = rng.choice([b"ASK {}", b"\xff\xfe\x00A", text.encode("utf-16"), os.urandom(rng.randint(0, 64)),
                               b"query=" + os.urandom(8), b"{" * rng.randint(1, 30000),
                               b"!" * rng.randint(1, 300000), b"ASK {" + b"(" * 200 + b"}"])
            ctype = rng.choice(["application/sparql-query", "application/sparql-update", "text/plain", "",
                                "application/x-www-form-urlencoded", "application/sparql-query; charset=latin-1",
                                "multipart/form-data; boundary=x", self.junk(10)])
            headers = {"Content-Type": ctype} if ctype else {}
            return {"method": "POST", "url": "/sparql", "content": body, "headers": headers}
        if kind < 0.75:  # Linked Data, downloads and the API, with bad names
            name = rng.choice([self.junk(12), "FitNets", "FitNets%0A", "%00", "..%2F..", "a" * 300, "%FF", "%E2%80"])
            path = rng.choice(["/id/", "/paper/", "/source/", "/fact/", "/impl/", "/result/", "/api/concepts/",
                               "/api/papers/", "/ontology.", "/api/", "/static/", "/"]) + name
            params = {}
            if path.startswith("/api/concepts") and rng.random() < 0.5:
                path = "/api/concepts"
                params = {rng.choice(["axis", "under", "role"]): rng.choice([self.junk(8), "Nope", "SchemeAxis"])}
            if rng.random() < 0.2:
                path, params = "/api/results", {"technique": self.junk(8), "verdict": self.junk(5)}
            return {"method": rng.choice(["GET", "HEAD", "GET", "OPTIONS", "DELETE"]), "url": path, "params": params,
                    "headers": {"Accept": rng.choice(["text/html", "text/turtle", "*/*", self.junk(10),
                                                      "application/ld+json;q=abc"])}}
        if kind < 0.85:  # headers
            headers = {"Host": self.junk(10) or "x", "Accept": self.junk(30),
                       rng.choice(["X-Forwarded-For", "Authorization", "Content-Length", "Range"]): self.junk(10)}
            headers = {k: v.encode("ascii", "ignore").decode().replace("\n", "") for k, v in headers.items()}
            return {"method": rng.choice(["GET", "POST"]), "url": "/sparql", "params": {"query": "ASK {}"},
                    "headers": {k: v for k, v in headers.items() if k != "Content-Length"}}
        # raw bytes that are barely, or not at all, HTTP
        return {"raw": rng.choice([b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: x\r\n\r\n",
                                   b"GET /" + os.urandom(20) + b" HTTP/1.1\r\n\r\n", os.urandom(64),
                                   b"POST /sparql HTTP/1.1\r\nContent-Length: 5\r\n\r\nASK {",
                                   b"GET /sparql?query=" + b"%7B" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"])}

    def send(self, client: httpx.Client, request: dict) -> int | str:
        if "raw" in request:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(request["raw"])
                try:
                    head = sock.recv(64)
                except OSError:
                    return "closed"
            parts = head.split(b" ")
            return int(parts[1]) if head.startswith(b"HTTP/") and len(parts) > 1 and parts[1].isdigit() else "closed"
        headers = {k: "".join(c for c in v if " " <= c <= "~") for k, v in request.get("headers", {}).items()}
        try:
            return client.request(**{**request, "headers": headers}).status_code
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # refused by the client itself
            return f"client refused: {type(exc).__name__}"


def fuzz(url: str, listener: Listener, count: int) -> tuple[Counter, list]:
    port = int(url.rsplit(":", 1)[1])
    statuses: Counter = Counter()
    failures = []
    lock = threading.Lock()

    def worker(seed: int, n: int) -> None:
        fuzzer = Fuzzer(port, listener.port, seed)
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(n):
                request = fuzzer.request()
                status = fuzzer.send(client, request)
                with lock:
                    statuses[status] += 1
                    if isinstance(status, int) and status >= 500:
                        failures.append((status, repr(request)[:300]))

    threads = [threading.Thread(target=worker, args=(seed, count // 4)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses, failures


# -- fairness -----------------------------------------------------------------------------------
def fairness(url: str, rounds: int) -> dict:
    port = int(url.rsplit(":", 1)[1])
    latencies: list[float] = []
    stopped_after: list[float] = []
    for _ in range(rounds):
        finished: list[float] = []

        def runaway(address: str) -> None:
            started = time.monotonic()
            with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=120) as client:
                client.get(f"http://127.0.0.1:{port}/sparql", params={"query": RUNAWAY})
            finished.append(time.monotonic() - started)

        threads = [threading.Thread(target=runaway, args=(f"127.0.0.{i}",)) for i in range(2, 6)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=60) as client:
            while len(finished) < len(threads):
                started = time.perf_counter()
                response = client.get(f"http://127.0.0.1:{port}/sparql", params={"query": "ASK { ?s ?p ?o }"})
                if len(finished) == 0:  # only while all four runaways still run
                    latencies.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                time.sleep(0.1)
        for t in threads:
            t.join()
        stopped_after += finished
    latencies.sort()
    return {"asks": len(latencies), "median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))], "max_ms": 1000 * latencies[-1],
            "runaway_stopped_after_s": [round(x, 2) for x in sorted(stopped_after)]}


SMALL_STORE = """@prefix kd: <https://w3id.org/kdkb/id/> .
@prefix kdo: <https://w3id.org/kdkb/ontology#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix skos: <http://www.w3.org/2004/02/skos/core#> .
kd:KnowledgeDistillation kdo:termId "AI-0279" ; rdfs:subClassOf kd:TrainingMethod ;
    skos:prefLabel "Knowledge distillation"@en .
kd:TrainingMethod skos:prefLabel "Training method"@en .
"""


def small_store() -> Path:
    """A data directory serving a store of a few triples: a request against it is cheap unless
    the request itself is the problem (runaway queries are measured by `fairness`)."""
    root = Path(tempfile.mkdtemp(prefix="kd-attack-small-"))
    (root / "ontology").mkdir()
    (root / "results").mkdir()
    (root / "ontology" / "core.ttl").write_text(SMALL_STORE)
    kb.build(Paths.from_env(root=ROOT, ontology_dir=root / "ontology", results_dir=root / "results",
                            data_dir=root / "data"))
    return root / "data"


def summarize_fuzz(statuses: Counter, failures: list) -> dict:
    return {"requests": sum(statuses.values()), "statuses": {str(k): v for k, v in statuses.items()},
            "5xx": sum(v for k, v in statuses.items() if isinstance(k, int) and k >= 500),
            "5xx_samples": failures[:10]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", type=int, default=10_000, help="garbled or hostile requests to send")
    parser.add_argument("--generated", type=int, default=6000, help="generated requests to screen for live attempts")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the fairness measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="kd-attack-"))
    paths = Paths.from_env(root=ROOT, data_dir=data)
    kb.build(paths)
    listener = Listener()
    report: dict = {}

    attempts = live_attempts(listener, args.generated)
    before = listener.count
    with running_server(data, KD_QUERY_TIMEOUT="5") as (url, _):
        statuses = send_attempts(url, attempts)
        report["bypass"] = {"attempts": len(attempts), "statuses": dict(statuses),
                            "connections": listener.count - before}
        # Against the project's store some mutated queries are merely expensive (a variable
        # joined with nothing makes a cross product): they run to the time limit, 503 by design.
        report["fuzz_project_store"] = summarize_fuzz(*fuzz(url, listener, args.fuzz // 4))
    with running_server(small_store(), KD_QUERY_TIMEOUT="5") as (url, _):
        report["fuzz"] = summarize_fuzz(*fuzz(url, listener, args.fuzz))
    with running_server(data, KD_QUERY_TIMEOUT="5", KD_WORKERS="4") as (url, _):
        report["fairness"] = fairness(url, args.rounds)
    before = listener.count
    with running_server(data, KD_UNSAFE_DISABLE_GUARD="1", KD_UPDATE_TOKEN=TOKEN) as (url, _):
        statuses = send_attempts(url, attempts, token=TOKEN)  # 503s here: runaways the guard would refuse
        time.sleep(0.5)
        report["sandbox_only"] = {"attempts": len(attempts), "statuses": dict(statuses),
                                  "connections": listener.count - before}
    listener.close()

    if args.json:
        print(json.dumps(report, indent=2))
        return
    b, s, f, fair = report["bypass"], report["sandbox_only"], report["fuzz"], report["fairness"]
    fp = report["fuzz_project_store"]
    print(f"bypass attempts (guard and sandbox): {b['attempts']}, statuses {b['statuses']}, "
          f"connections received: {b['connections']}")
    print(f"bypass attempts (guard off, sandbox only, updates on): {s['attempts']}, statuses {s['statuses']}, "
          f"connections received: {s['connections']}")
    print(f"fuzz (small store): {f['requests']} requests, statuses {f['statuses']}, 5xx: {f['5xx']}")
    for sample in f["5xx_samples"]:
        print("   ", sample)
    print(f"fuzz (project store): {fp['requests']} requests, statuses {fp['statuses']}, 5xx: {fp['5xx']}")
    for sample in fp["5xx_samples"]:
        print("   ", sample)
    print(f"ASK while 4 runaway queries run: {fair['asks']} asks over {args.rounds} rounds, median "
          f"{fair['median_ms']:.1f} ms, p90 {fair['p90_ms']:.1f} ms, max {fair['max_ms']:.1f} ms; runaways "
          f"stopped after {fair['runaway_stopped_after_s'][0]}-{fair['runaway_stopped_after_s'][-1]} s (limit 5 s)")


if __name__ == "__main__":
    main()
