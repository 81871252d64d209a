"""The process that runs SPARQL, behind both safety layers, under a time and memory limit.

pyoxigraph cannot cancel a running query, so every query runs in a separate process that its
owner can kill: the server's pool (`kb.server.pool`), `kd query` and `kb.select` all use an
`EngineProcess`. Inside it, in this order:

1. `kb.sandbox.deny_network()` closes the network to the process for good;
2. the store is loaded (an N-Quads snapshot into memory, or a build opened read-only);
3. a thread with a large stack is started to run requests: the engine's parser and
   optimiser recurse once per nested construct, so a stack of `STACK_PER_QUERY_BYTE` bytes
   per byte of the largest accepted request means no accepted request can overflow it
   (10,000 `{` are refused by the guard before that);
4. the address space is capped at what is mapped then plus `memory_bytes`;
5. each request is checked by `kb.guard` and only then given to the engine; results are
   serialised as they are produced and stopped at `max_bytes`.

Every error a request can cause is an answer (status, media type, body); the process
survives all of them except running out of memory or time, where its owner replaces it.
This module imports only the standard library, pyoxigraph and kb's light modules: it is what
a freshly spawned process imports, and it must start fast.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import re
import signal
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import pyoxigraph as ox

from . import sandbox
from .formats import serialize_rdf
from .guard import QueryRefused, check

SOLUTION_FORMATS = {
    "application/sparql-results+json": ox.QueryResultsFormat.JSON,
    "application/json": ox.QueryResultsFormat.JSON,
    "application/sparql-results+xml": ox.QueryResultsFormat.XML,
    "text/csv": ox.QueryResultsFormat.CSV,
    "text/tab-separated-values": ox.QueryResultsFormat.TSV,
}
GRAPH_FORMATS = {
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "application/ld+json": ox.RdfFormat.JSON_LD,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/n-quads": ox.RdfFormat.N_QUADS,
}
# Measured on pyoxigraph 0.5: the deepest recursion per byte of query is a run of `!`
# (about 900 bytes of stack each); 2 KiB per byte leaves a margin.
STACK_PER_QUERY_BYTE = 2048
REFUSED_REMOTE = ("refused: evaluating this request tried to reach another host or a document, "
                  "which this service never does")
_CTX = mp.get_context("spawn")  # never fork a threaded server


class ResultTooLarge(Exception):
    pass


class EngineTimeout(Exception):
    """The request ran past its time limit; the process running it was stopped."""


class EngineUnavailable(Exception):
    """No process could run the request (it could not start, or it stopped)."""


@dataclass(frozen=True)
class EngineConfig:
    """What a process loads and how it runs requests (sent to the process when it starts)."""

    source: str | None  # an N-Quads snapshot, or a store directory when `read_only_store`
    read_only_store: bool = False
    max_request_bytes: int = 2**20
    memory_bytes: int = 1024 * 2**20
    base_iri: str | None = None
    prefixes: dict[str, str] = field(default_factory=dict)  # predeclared for every request
    guard: bool = True  # only tests turn it off, to show the sandbox holds on its own


class CappedWriter(io.RawIOBase):
    """A byte sink that stops the serializer as soon as the result passes the size limit."""

    def __init__(self, limit: int):
        self.limit, self.buffer = limit, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(self.buffer) + len(data) > self.limit:
            raise ResultTooLarge()
        self.buffer += data
        return len(data)


def _first_offered(accept: list[str], offered: dict) -> str | None:
    return next((media_type for media_type in accept if media_type in offered), None)


def _serialize(result, request: dict) -> tuple[int, str, bytes]:
    limit = request.get("max_bytes", 16 * 2**20)
    sink = CappedWriter(limit)
    try:
        if isinstance(result, (ox.QuerySolutions, ox.QueryBoolean)):
            media_type = _first_offered(request.get("accept_solutions", ["application/sparql-results+json"]),
                                        SOLUTION_FORMATS)
            if media_type is None:
                return 406, "text/plain", ("SELECT/ASK results are available as: "
                                           + ", ".join(SOLUTION_FORMATS)).encode()
            result.serialize(sink, format=SOLUTION_FORMATS[media_type])
        else:
            media_type = _first_offered(request.get("accept_graph", ["text/turtle"]), GRAPH_FORMATS)
            if media_type is None:
                return 406, "text/plain", ("CONSTRUCT/DESCRIBE results are available as: "
                                           + ", ".join(GRAPH_FORMATS)).encode()
            fmt = GRAPH_FORMATS[media_type]
            # A generator, so the serializer pulls triples as it writes and stops at the cap.
            triples = ((ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in result)
                       if fmt.supports_datasets else result)
            serialize_rdf(triples, fmt, sink)
    except Exception as exc:  # pyoxigraph may hand back the sink's exception wrapped
        if isinstance(exc, ResultTooLarge) or isinstance(exc.__cause__ or exc.__context__, ResultTooLarge) \
                or "ResultTooLarge" in repr(exc):
            return 413, "text/plain", (f"result too large: more than {limit} bytes; narrow the query "
                                       "or add a LIMIT").encode()
        raise
    charset = "; charset=utf-8" if media_type.startswith("text/") or "json" in media_type or "xml" in media_type else ""
    return 200, media_type + charset, bytes(sink.buffer)


def _graphs(names: list[str]) -> list[ox.NamedNode]:
    return [ox.NamedNode(n) for n in names]


def _evaluation_error(exc: BaseException) -> tuple[int, str, bytes]:
    """An error the engine raised while running a request, as an answer."""
    message = str(exc)
    # The store is in memory (or read-only on disk): an OSError can only be the network or a
    # file, which both layers refuse, and the engine's messages about SERVICE or a fetched
    # document may quote what another host sent: never echo them.
    if isinstance(exc, OSError) or re.search(r"(?i)\bservice\b|media type|\bload\b|content type", message):
        return 400, "text/plain", REFUSED_REMOTE.encode()
    return 400, "text/plain", f"SPARQL evaluation error: {message}".encode()


def handle(store: ox.Store, request: dict, config: EngineConfig) -> tuple[int, str, bytes]:
    """Run one request against the store; returns (HTTP status, media type, body)."""
    op = request.get("op")
    text = request.get("text", "")
    update = op == "update"
    try:
        if len(text.encode("utf-8", "surrogatepass")) > config.max_request_bytes:
            return 413, "text/plain", f"request too large: more than {config.max_request_bytes} bytes".encode()
        predeclared = config.prefixes if request.get("predeclare", True) else {}
        if config.guard:
            checked = check(text, update=update, prefixes=predeclared,
                            using_graphs=tuple(request.get("using_graphs", ())),
                            using_named_graphs=tuple(request.get("using_named_graphs", ())))
            text, prefixes = checked.text, checked.prefixes
        else:
            prefixes = predeclared
        options: dict = {"base_iri": config.base_iri, "prefixes": prefixes or None}
        if update:
            store.update(text, **options)
            return 204, "text/plain", b""
        if request.get("default_graph") or request.get("named_graphs"):
            # A dataset given by the protocol replaces the query's own FROM / FROM NAMED.
            options["default_graph"] = _graphs(request.get("default_graph", []))
            options["named_graphs"] = _graphs(request.get("named_graphs", []))
        return _serialize(store.query(text, **options), request)
    except QueryRefused as exc:
        return 400, "text/plain", str(exc).encode()
    except SyntaxError as exc:
        return 400, "text/plain", f"SPARQL syntax error: {exc}".encode()
    except MemoryError:
        return 503, "text/plain", b"query stopped: it needed more memory than a query may use"
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        return _evaluation_error(exc)


def load_store(config: EngineConfig) -> ox.Store:
    if config.read_only_store:
        return ox.Store.read_only(config.source)
    store = ox.Store()
    if config.source:
        store.bulk_load(path=config.source, format=ox.RdfFormat.N_QUADS)
    return store


def _serve(conn: Connection, store: ox.Store, config: EngineConfig, start: threading.Event) -> None:
    start.wait()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request.get("op") == "dump":  # write the current data as a new snapshot
            store.dump(request["path"], format=ox.RdfFormat.N_QUADS)
            conn.send((200, "text/plain", b""))
            continue
        try:
            answer = handle(store, request, config)
        except Exception as exc:  # noqa: BLE001 - a bug here must not cost the process
            answer = (500, "text/plain", f"internal error: {type(exc).__name__}".encode())
        conn.send(answer)


def main(conn: Connection, config: EngineConfig) -> None:
    """Process entry: close the network, load, start the big-stack thread, cap memory, serve."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner, which stops us
    network = sandbox.deny_network()
    try:
        store = load_store(config)
    except Exception as exc:  # noqa: BLE001 - reported to the owner, which decides
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    start = threading.Event()
    threading.stack_size(min(STACK_PER_QUERY_BYTE * config.max_request_bytes + 64 * 2**20, 2**32 - 2**20))
    runner = threading.Thread(target=_serve, args=(conn, store, config, start), name="engine", daemon=True)
    runner.start()
    threading.stack_size(0)
    cap = sandbox.limit_memory(config.memory_bytes)
    conn.send(("ready", {"network": network, "memory_cap": cap}))
    start.set()
    runner.join()


class EngineProcess:
    """One engine process and the pipe to it; kill it to stop whatever it is running."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.conn, child = _CTX.Pipe()
        self.process = _CTX.Process(target=main, args=(child, config), daemon=True, name="kd-engine")
        self.process.start()
        child.close()
        self.info: dict = {}
        self.generation = 0  # the owner's label for the data this process loaded (see kb.server.pool)

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Block until the process has loaded its store; its report (network layers, memory cap)."""
        if not self.conn.poll(timeout):
            self.kill()
            raise EngineUnavailable("a query process did not start in time")
        try:
            status, info = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise EngineUnavailable(f"a query process stopped while starting ({self.exit_description()})")
        if status != "ready":
            self.kill()
            raise EngineUnavailable(f"a query process could not load {self.config.source}: {info}")
        self.info = info
        return info

    def call(self, request: dict, timeout: float | None):
        """Send a request and wait for its answer; EngineTimeout past `timeout` seconds."""
        self.conn.send(request)
        if not self.conn.poll(timeout):
            raise EngineTimeout()
        try:
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            raise EngineUnavailable(self.exit_description()) from exc

    def alive(self) -> bool:
        return self.process.is_alive()

    def exit_description(self) -> str:
        self.process.join(timeout=2)
        code = self.process.exitcode
        if code is not None and code < 0 and -code in (signal.SIGABRT, signal.SIGKILL):
            return "it needed more memory than a query may use, and was stopped"
        if code is not None and code < 0:
            return f"the query process stopped with signal {signal.Signals(-code).name}"
        return f"the query process stopped (exit code {code})"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        try:
            self.conn.close()
        except OSError:
            pass

    @property
    def pid(self) -> int | None:
        return self.process.pid
