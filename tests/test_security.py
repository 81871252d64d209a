"""The service's promises, attacked through real requests (issue: harden the service).

1. No query makes the server, `kd query` or `kb.select` contact another host: the guard
   refuses every crafted bypass; with the guard switched off the sandboxed workers still
   open no connection; errors never echo what a remote port said.
2. No request kills a worker, exhausts memory or stalls the server: bad dataset IRIs, deep
   nesting, engine errors, oversize requests and results, a memory cap, fairness while
   runaway queries run, update snapshots that go missing, and the Linked Data and API
   routes' bad input.

Every test that checks "no connection" first shows that the listener does receive one when
the engine is asked directly, so that a silent listener cannot make it pass.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyoxigraph as ox
import pytest

import kb
from kb.engine import REFUSED_REMOTE, EngineConfig, EngineProcess, _evaluation_error
from kb.sandbox import network_is_closed, seccomp_program

from .guard_oracle import Listener, bypass_attempts, engine
from .server_harness import child_pids, running_server

TOKEN = "s3cret-token"


def remote(listener: Listener) -> str:
    return f"http://127.0.0.1:{listener.port}/"


def quiet(listener: Listener, seconds: float = 0.3) -> int:
    """Connections the listener received, after giving late ones time to arrive."""
    time.sleep(seconds)
    return listener.count


@pytest.fixture(scope="module")
def server(built, paths):
    with running_server(paths.data_dir, KD_QUERY_TIMEOUT="3", KD_WORKERS="2") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def one_worker(built, paths):
    """A pool that never grows or retires: the same process must answer before and after."""
    with running_server(paths.data_dir, KD_QUERY_TIMEOUT="3", KD_WORKERS="1", KD_MAX_WORKERS="1") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def unguarded(built, tmp_path_factory):
    """A server with the guard switched off and updates on: only the sandbox stands."""
    data = _copy_of_build(built, tmp_path_factory.mktemp("unguarded"))
    with running_server(data, KD_UNSAFE_DISABLE_GUARD="1", KD_UPDATE_TOKEN=TOKEN, KD_WORKERS="2",
                        KD_QUERY_TIMEOUT="5") as (url, proc):
        yield url, proc


def _copy_of_build(built: kb.KnowledgeBase, data_dir: Path) -> Path:
    """A data directory of its own serving the same build (servers that update must not share)."""
    import shutil

    builds = data_dir / "builds"
    builds.mkdir(parents=True)
    shutil.copytree(built.build_dir, builds / built.build_dir.name)
    (data_dir / "current").symlink_to(Path("builds") / built.build_dir.name)
    return data_dir


# == 1. no way to reach another host ===========================================================
def test_the_listener_is_live(listener):
    """The control: the engine asked directly does connect (so a count of 0 below means something)."""
    before = listener.count
    outcome = engine(f"SELECT * WHERE {{ SERVICE <{remote(listener)}sparql> {{ ?s ?p ?o }} }}",
                     update=False, listener=listener)
    assert outcome.tried and listener.count == before + 1


def test_every_bypass_attempt_is_refused_over_http(server, listener):
    url, _ = server
    attempts = bypass_attempts(remote(listener))
    before = listener.count

    def send(attempt) -> httpx.Response:
        text, update = attempt
        field = "update" if update else "query"
        return httpx.post(url + "/sparql", data={field: text}, timeout=30)

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(send, attempts))
    assert len(responses) >= 1000
    # Updates are refused as such (read-only); every query is refused by the guard.
    assert all(r.status_code in (400, 403) for r in responses), \
        [(r.status_code, r.text) for r in responses if r.status_code not in (400, 403)][:3]
    assert quiet(listener) == before


def _service_queries(listener: Listener) -> list[str]:
    r = remote(listener)
    return [f"SELECT * WHERE {{ SERVICE <{r}sparql> {{ ?s ?p ?o }} }}",
            f"SELECT * WHERE {{ ?s ?p ?o OPTIONAL {{ SERVICE SILENT <{r}x> {{ ?a ?b ?c }} }} }}",
            f"PREFIX e: <{r}> SELECT * WHERE {{ SERVICEe:x {{ ?s ?p ?o }} }}",
            f"SELECT * WHERE {{ BIND(<{r}q> AS ?x) SERVICE ?x {{ ?s ?p ?o }} }}",
            f"ASK {{ SERVICE <http://[::1]:{listener.port}/> {{}} }}",
            f"ASK {{ SERVICE <http://localhost:{listener.port}/> {{}} }}"]


def test_with_the_guard_off_the_sandbox_holds(unguarded, listener):
    url, proc = unguarded
    before = listener.count
    for query in _service_queries(listener):
        response = httpx.post(url + "/sparql", data={"query": query}, timeout=30)
        # Refused by the sandbox (or answered empty by SERVICE SILENT), never a remote answer.
        assert response.status_code in (200, 400), response.text
        if response.status_code == 400:
            assert response.text.strip() == REFUSED_REMOTE or "syntax error" in response.text
    for update in (f"LOAD <{remote(listener)}doc>", f"LOAD SILENT <{remote(listener)}doc> INTO GRAPH <urn:g>"):
        response = httpx.post(url + "/sparql", data={"update": update},
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert response.status_code in (204, 400), response.text
    assert quiet(listener) == before
    assert proc.poll() is None


def test_engine_processes_report_their_network_closed(tmp_path):
    process = EngineProcess(EngineConfig(source=None))
    try:
        info = process.wait_ready()
        assert "seccomp" in info["network"], info
        status, _, body = process.call({"op": "query", "text": "SELECT * WHERE { SERVICE <http://127.0.0.1:9/> {} }"}, 10)
        assert status == 400
    finally:
        process.kill()


def test_the_sandbox_closes_the_network_in_a_fresh_process(listener):
    """Without the guard and without the pool: the sandbox alone, in a plain child process."""
    before = listener.count
    code = ("import socket, sys, pyoxigraph as ox; from kb.sandbox import deny_network, network_is_closed\n"
            "applied = deny_network(); assert applied, 'no sandbox mechanism applies here'\n"
            "assert network_is_closed()\n"
            f"try: list(ox.Store().query('SELECT * WHERE {{ SERVICE <{remote(listener)}x> {{}} }}'))\n"
            "except OSError as e: print('refused', e)\n"
            "try: socket.create_connection(('127.0.0.1', %d), timeout=1)\n"
            "except OSError as e: print('refused', e)\n" % listener.port)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused") == 2
    assert quiet(listener) == before
    assert not network_is_closed()  # this process, the test's, still has its network


def test_seccomp_filter_denies_sockets_but_unix_ones():
    program = seccomp_program("x86_64")
    assert (0x06, 0, 0, 0x7FFF0000) in program  # allow
    assert any(code == 0x15 and k == 41 for code, _, _, k in program)  # socket()
    assert any(code == 0x15 and k == 1 for code, _, _, k in program)  # AF_UNIX stays allowed


def test_errors_never_echo_a_remote_answer():
    status, _, body = _evaluation_error(OSError("HTTP 200 from 10.0.0.1:6379: +PONG secret"))
    assert status == 400 and body.decode() == REFUSED_REMOTE
    status, _, body = _evaluation_error(RuntimeError("The content media type text/secret is not supported"))
    assert body.decode() == REFUSED_REMOTE
    status, _, body = _evaluation_error(RuntimeError("The custom function <f> is not supported"))
    assert "custom function" in body.decode()


def test_a_missing_sandbox_is_announced_at_start(monkeypatch, caplog, tmp_path):
    from kb.server import service as service_module

    class NoSandboxPool:
        network: list[str] = []

        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(service_module, "WorkerPool", NoSandboxPool)
    from kb.server.settings import Settings

    with caplog.at_level("WARNING", logger="kd.serve"):
        service_module.Service(Settings(data_dir=tmp_path))
    assert "only the query guard" in caplog.text


def test_kd_query_refuses_service_and_load(paths, listener, built):
    before = listener.count
    for query in _service_queries(listener)[:3]:
        done = subprocess.run([sys.executable, "-m", "kb.cli", "query", "--data-dir", str(paths.data_dir), query],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert quiet(listener) == before


def test_kb_select_refuses_service_and_has_a_time_limit(built, listener):
    before = listener.count
    for query in _service_queries(listener):
        with pytest.raises(kb.QueryError):
            built.select(query)
    assert quiet(listener) == before
    base = kb.open(built.build_dir.parent.parent, timeout=1)
    started = time.monotonic()
    with pytest.raises(kb.store.QueryTimeout, match="time limit of 1 s"):
        base.select("SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }")
    assert time.monotonic() - started < 60  # a hang guard only; the budget is measured by a script
    assert base.ask("ASK { ?s ?p ?o }")  # a new engine process takes the stopped one's place
    base.close()


def test_kd_query_timeout_option(paths, built):
    done = subprocess.run([sys.executable, "-m", "kb.cli", "query", "--data-dir", str(paths.data_dir),
                           "--timeout", "1", "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "time limit of 1 s" in done.stderr


# == 2. no request kills a worker, exhausts memory or stalls the server ==========================
def _workers(proc: subprocess.Popen) -> set[int]:
    """The server's engine processes (its other child is multiprocessing's resource tracker)."""
    found = set()
    for pid in child_pids(proc.pid):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:  # it ended meanwhile
            pass
    return found


def _the_worker(url: str, proc: subprocess.Popen) -> set[int]:
    """The one process of a one-worker server, once it answers (a stopped one is replaced)."""
    assert _sparql(url, "ASK { ?s ?p ?o }").status_code == 200
    workers = _workers(proc)
    assert len(workers) == 1, workers
    return workers


def _sparql(url: str, query: str, **params) -> httpx.Response:
    return httpx.get(url + "/sparql", params={"query": query, **params}, timeout=60)


@pytest.mark.parametrize("params, message", [
    ({"default-graph-uri": ""}, "default-graph-uri must be an absolute IRI, got ''"),
    ({"named-graph-uri": "not an iri"}, "named-graph-uri must be an absolute IRI"),
    ({"default-graph-uri": "http://a b/"}, "must be an absolute IRI"),
    ({"named-graph-uri": "http://x/>"}, "must be an absolute IRI"),
])
def test_bad_dataset_iris_are_400_and_no_worker_dies(one_worker, params, message):
    url, proc = one_worker
    before = _the_worker(url, proc)
    response = _sparql(url, "ASK { ?s ?p ?o }", **params)
    assert response.status_code == 400 and message in response.text
    assert _sparql(url, "ASK { ?s ?p ?o }").status_code == 200
    assert _workers(proc) == before


@pytest.mark.parametrize("query", [
    "SELECT * WHERE " + "{" * 10_000 + "}" * 10_000,
    "SELECT * WHERE { FILTER(" + "(" * 10_000 + "1" + ")" * 10_000 + ") }",
    "SELECT * WHERE { ?s ?p " + "[ <http://p> " * 10_000 + "1" + " ]" * 10_000 + " }",
    "SELECT * WHERE " + "{" * 10_000,
])
def test_deep_nesting_is_400_and_no_worker_dies(one_worker, query):
    url, proc = one_worker
    before = _the_worker(url, proc)
    response = httpx.post(url + "/sparql", content=query, headers={"Content-Type": "application/sparql-query"},
                          timeout=60)
    assert response.status_code == 400 and "nested more than" in response.text
    assert _workers(proc) == before


def test_long_operator_chains_do_not_kill_a_worker(one_worker):
    """Deep recursion without brackets (a run of `!`, a chain of `||`) fits the engine's stack."""
    url, proc = one_worker
    before = _the_worker(url, proc)
    for query in ["SELECT * WHERE { FILTER(" + "!" * 200_000 + "true) }",
                  "SELECT * WHERE { FILTER(" + "||".join(["false"] * 50_000) + ") }"]:
        response = httpx.post(url + "/sparql", content=query,
                              headers={"Content-Type": "application/sparql-query"}, timeout=60)
        assert response.status_code in (200, 503), response.text[:200]  # answered, or stopped at the limit
        if response.status_code == 200:
            assert _workers(proc) == before
        else:
            before = _the_worker(url, proc)


def test_engine_runtime_errors_are_400(one_worker):
    url, proc = one_worker
    before = _the_worker(url, proc)
    response = _sparql(url, "SELECT * WHERE { BIND(<http://example.org/f>(1) AS ?x) }")
    assert response.status_code == 400 and "custom function" in response.text
    assert _workers(proc) == before


def test_a_flood_of_bad_requests_does_not_stop_other_clients(server):
    url, proc = server
    bad = ["SELECT * WHERE {", "SELECT * WHERE { SERVICE <http://x/> {} }", "ASK {" * 200,
           "SELECT * WHERE { BIND(<http://example.org/f>(1) AS ?x) }"]
    stop = threading.Event()
    flood_statuses: list[int] = []

    def flood() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                for query in bad:
                    flood_statuses.append(client.get(url + "/sparql", params={"query": query}).status_code)

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        good = [_sparql(url, "ASK { ?s ?p ?o }").status_code for _ in range(20)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert good == [200] * 20
    assert flood_statuses and set(flood_statuses) == {400}  # no worker stopped (that would be 503)
    assert proc.poll() is None


def test_oversize_requests_are_413_before_anything_reads_them(built, paths):
    with running_server(paths.data_dir, KD_MAX_REQUEST_BYTES="4096", KD_WORKERS="1") as (url, proc):
        big = "ASK { ?s ?p ?o } #" + "x" * 5000
        for response in (
            httpx.post(url + "/sparql", content=big, headers={"Content-Type": "application/sparql-query"}),
            httpx.post(url + "/sparql", content=(chunk for chunk in [big[:3000].encode(), big[3000:].encode()]),
                       headers={"Content-Type": "application/sparql-query"}),  # chunked: no Content-Length
            httpx.post(url + "/sparql", data={"query": big}),
        ):
            assert response.status_code == 413 and "too large" in response.text
        # A declared length past the limit is answered before a byte of the body is sent.
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /sparql HTTP/1.1\r\nHost: x\r\nContent-Type: application/sparql-query\r\n"
                         b"Content-Length: 999999999\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 413")
        assert httpx.post(url + "/sparql", content="ASK { ?s ?p ?o }",
                          headers={"Content-Type": "application/sparql-query"}).status_code == 200


def test_result_size_is_enforced_while_results_are_produced(built, paths):
    with running_server(paths.data_dir, KD_WORKERS="1", KD_QUERY_TIMEOUT="60") as (url, proc):
        response = httpx.get(url + "/sparql", params={
            "query": "CONSTRUCT { ?a ?b ?f } WHERE { ?a ?b ?c . ?d ?e ?f }"},
            headers={"Accept": "application/n-triples"}, timeout=120)
        assert response.status_code == 413 and "too large" in response.text
        for pid in _workers(proc):  # the worker answered, so it lived: how much did it hold at most?
            peak = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) * 1024
            assert peak < 1024 * 2**20, f"a worker grew to {peak / 2**20:.0f} MiB"


def test_a_query_past_the_memory_cap_is_stopped_and_others_go_on(built, paths):
    with running_server(paths.data_dir, KD_WORKERS="2", KD_WORKER_MEMORY="128",
                        KD_QUERY_TIMEOUT="60", KD_MAX_RESULT_BYTES=str(64 * 2**20)) as (url, proc):
        # Sorting 39 million rows needs gigabytes: past the cap, the worker is stopped.
        hog = "SELECT ?x WHERE { ?a ?b ?c . ?d ?e ?f BIND(CONCAT(STR(?c), STR(?f)) AS ?x) } ORDER BY ?x LIMIT 1"
        response = httpx.get(url + "/sparql", params={"query": hog}, timeout=120)
        assert response.status_code == 503 and "memory" in response.text, response.text[:200]
        assert _sparql(url, "ASK { ?s ?p ?o }").status_code == 200
        assert proc.poll() is None


def test_runaway_queries_do_not_starve_other_clients(built, paths):
    """Four runaway queries from four other addresses; a fifth client's ASK is answered while
    they still run (each holds its worker until the time limit)."""
    with running_server(paths.data_dir, KD_WORKERS="4", KD_QUERY_TIMEOUT="20") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
        finished: list[float] = []

        def run(address: str) -> None:
            transport = httpx.HTTPTransport(local_address=address)
            with httpx.Client(transport=transport, timeout=60) as client:
                client.get(f"http://127.0.0.1:{port}/sparql", params={"query": runaway})
            finished.append(time.monotonic())

        threads = [threading.Thread(target=run, args=(f"127.0.0.{i}",)) for i in range(2, 6)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=60) as client:
            answer = client.get(f"http://127.0.0.1:{port}/sparql", params={"query": "ASK { ?s ?p ?o }"})
        answered = time.monotonic()
        for t in threads:
            t.join()
        assert answer.status_code == 200
        assert len(finished) == 4 and answered < min(finished)  # before any runaway was stopped


def test_one_client_cannot_hold_every_worker(built, paths):
    with running_server(paths.data_dir, KD_WORKERS="2", KD_MAX_WORKERS="2", KD_CLIENT_CONCURRENCY="1",
                        KD_QUERY_TIMEOUT="20") as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
        done: list[float] = []

        def greedy() -> None:
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60) as client:
                client.get(f"http://127.0.0.1:{port}/sparql", params={"query": runaway})
            done.append(time.monotonic())

        threads = [threading.Thread(target=greedy) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=60) as client:
            answer = client.get(f"http://127.0.0.1:{port}/sparql", params={"query": "ASK { ?s ?p ?o }"})
        answered = time.monotonic()
        for t in threads:
            t.join()
        assert answer.status_code == 200 and answered < min(done)


def test_update_snapshots_live_under_the_data_dir_and_a_lost_one_is_survived(built, tmp_path):
    data = _copy_of_build(built, tmp_path / "data")
    with running_server(data, KD_UPDATE_TOKEN=TOKEN, KD_WORKERS="2", KD_QUERY_TIMEOUT="2") as (url, proc):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for i in range(4):
            response = httpx.post(url + "/sparql", data={"update": f"INSERT DATA {{ <urn:x> <urn:p> {i} }}"},
                                  headers=auth, timeout=60)
            assert response.status_code == 204, response.text
        snapshots = sorted((data / "updates").glob("snapshot-*.nq"))
        assert 1 <= len(snapshots) <= 2  # pruned
        assert _sparql(url, "SELECT (COUNT(*) AS ?n) WHERE { <urn:x> <urn:p> ?o }").json()[
            "results"]["bindings"][0]["n"]["value"] == "4"
        for snapshot in snapshots:
            snapshot.unlink()
        # Stop every worker (runaway queries past the limit); their replacements cannot load
        # the snapshot and must fall back to the build, not leave the pool empty.
        runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: _sparql(url, runaway), range(4)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            response = _sparql(url, "ASK { <urn:x> <urn:p> ?o }")
            if response.status_code == 200:
                break
            time.sleep(0.5)
        assert response.status_code == 200 and response.json()["boolean"] is False  # the build's state
        assert _sparql(url, "ASK { ?s ?p ?o }").json()["boolean"] is True
    log = proc.stdout.read()
    assert "serving" in log and "instead" in log


@pytest.mark.parametrize("path, status", [
    ("/id/FitNets%0A", 404), ("/id/FitNets%0D%0A", 404), ("/id/%20FitNets", 404), ("/id/Fit%00Nets", 404),
    ("/paper/..%2F..%2Fetc%2Fpasswd", 404), ("/id/NoSuchConcept", 404),
])
def test_linked_data_bad_names_are_404(server, path, status):
    url, _ = server
    assert httpx.get(url + path, headers={"Accept": "text/turtle"}).status_code == status


@pytest.mark.parametrize("path, message", [
    ("/api/concepts?axis=Nope", "no axis 'Nope'"),
    ("/api/concepts?under=Nope", "no concept 'Nope'"),
    ("/api/results?technique=Nope", "no technique 'Nope'"),
    ("/api/concepts?axis=Bad%20Name", "no axis"),
    ("/api/concepts/Foo%7D%20UNION%20%7B", "no concept"),
    ("/api/papers/x%3E", "no paper"),
    ("/api/no-such-route", "no API route"),
])
def test_api_unknown_values_are_404_json(server, path, message):
    url, _ = server
    response = httpx.get(url + path)
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")
    assert message in response.json()["detail"]
    assert "syntax" not in response.text.lower()


def test_api_bad_parameter_is_422_json(server):
    url, _ = server
    response = httpx.get(url + "/api/results?verdict=maybe")
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/json")


def test_host_header_is_not_reflected(server):
    url, _ = server
    evil = {"Host": "evil.example"}
    description = httpx.get(url + "/sparql", headers={**evil, "Accept": "text/turtle"}).text
    assert "evil.example" not in description and url + "/sparql" in description
    for path in ("/concepts", "/id/FitNets", "/ontology"):
        response = httpx.get(url + path, headers={**evil, "Accept": "text/html"})
        assert "evil.example" not in response.headers.get("location", ""), (path, response.headers)


@pytest.mark.parametrize("path, accept", [
    ("/sparql?query=ASK%7B%7D", "application/sparql-results+json"), ("/sparql", "text/turtle"),
    ("/api/axes", "application/json"), ("/id/FitNets", "text/turtle"), ("/ontology.ttl", "text/turtle"),
    ("/api/docs", "text/html"), ("/api/no-such-route", "application/json"),
])
def test_head_works_where_get_does(server, path, accept):
    url, _ = server
    get = httpx.get(url + path, headers={"Accept": accept})
    head = httpx.head(url + path, headers={"Accept": accept})
    assert head.status_code == get.status_code and head.content == b""
    assert head.headers.get("content-type") == get.headers.get("content-type")


@pytest.mark.parametrize("request_kwargs", [
    {"content": b"ASK { ?s ?p \xff }", "headers": {"Content-Type": "application/sparql-query"}},
    {"content": b"query=ASK%20%7B%7D%FF", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"content": b"query=ASK%20%7B\xfe%7D", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
])
def test_invalid_utf8_is_400(server, request_kwargs):
    url, _ = server
    response = httpx.post(url + "/sparql", **request_kwargs)
    assert response.status_code == 400 and "UTF-8" in response.text


def test_invalid_utf8_in_the_query_string_is_400(server):
    url, _ = server
    response = httpx.get(url + "/sparql?query=ASK%20%7B%7D%FF")
    assert response.status_code == 400 and "UTF-8" in response.text


def test_a_costly_check_does_not_hold_up_other_requests(server):
    """A request near the size limit takes the guard a while to read; it is read in a worker,
    so other clients' requests (to the API and the endpoint) are answered meanwhile."""
    url, _ = server
    heavy = "ASK { ?s ?p ?o " + ";" * 900_000 + " }"
    finished: list[float] = []

    def send_heavy() -> None:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=120) as client:
            client.post(url + "/sparql", content=heavy, headers={"Content-Type": "application/sparql-query"})
        finished.append(time.monotonic())

    thread = threading.Thread(target=send_heavy)
    thread.start()
    time.sleep(0.3)
    answered = []
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=60) as client:
        for path in ("/api/axes", "/sparql?query=ASK%7B%7D", "/id/FitNets"):
            assert client.get(url + path, headers={"Accept": "text/turtle, application/json"}).status_code == 200
            answered.append(time.monotonic())
    thread.join()
    assert finished and max(answered) < finished[0]


def test_guard_runs_in_the_workers_not_in_the_server():
    """The server process imports the guard only for its IRI check: requests are checked in the
    worker processes, under the time limit, so a costly one never holds the event loop."""
    code = ("import sys, kb.server.routes_sparql as r, kb.server.app\n"
            "import inspect; src = inspect.getsource(r)\n"
            "sys.exit('check(' in src or 'tokenize(' in src)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_environment_is_clean():
    assert "KD_UNSAFE_DISABLE_GUARD" not in os.environ
