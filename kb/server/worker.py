"""A query worker: a separate process holding an in-memory copy of one build.

pyoxigraph cannot cancel a running query, so every query runs in a process that the
server can kill when the time limit passes (see `pool.py`). Each worker loads the build's
N-Quads snapshot into an in-memory store at start (a few milliseconds for this ontology);
no two processes ever open the on-disk RocksDB store, so reads never race a writer.

This module imports only the standard library and pyoxigraph: it is what a freshly
spawned process imports, and it must start fast.
"""

from __future__ import annotations

import io
import time
from multiprocessing.connection import Connection

import pyoxigraph as ox

from ..formats import serialize_rdf

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


class ResultTooLarge(Exception):
    pass


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


def _negotiate(accept: list[str], offered: dict) -> str | None:
    for media_type in accept:  # the server ranked the client's preferences already
        if media_type in offered:
            return media_type
    return None


def _serialize(result, request: dict) -> tuple[int, str, bytes]:
    limit = request["max_bytes"]
    sink = CappedWriter(limit)
    try:
        if isinstance(result, (ox.QuerySolutions, ox.QueryBoolean)):
            media_type = _negotiate(request["accept_solutions"], SOLUTION_FORMATS)
            if media_type is None:
                return 406, "text/plain", ("SELECT/ASK results are available as: "
                                           + ", ".join(SOLUTION_FORMATS)).encode()
            result.serialize(sink, format=SOLUTION_FORMATS[media_type])
        else:
            media_type = _negotiate(request["accept_graph"], GRAPH_FORMATS)
            if media_type is None:
                return 406, "text/plain", ("CONSTRUCT/DESCRIBE results are available as: "
                                           + ", ".join(GRAPH_FORMATS)).encode()
            fmt = GRAPH_FORMATS[media_type]
            triples = list(result)
            if fmt.supports_datasets:
                triples = [ox.Quad(t.subject, t.predicate, t.object, ox.DefaultGraph()) for t in triples]
            serialize_rdf(triples, fmt, sink)
    except ResultTooLarge:
        return 413, "text/plain", (
            f"result too large: more than {limit} bytes; narrow the query or add a LIMIT").encode()
    except OSError as exc:  # pyoxigraph wraps Python exceptions raised by the sink
        if isinstance(exc.__cause__ or exc.__context__, ResultTooLarge) or "ResultTooLarge" in repr(exc):
            return 413, "text/plain", (
                f"result too large: more than {limit} bytes; narrow the query or add a LIMIT").encode()
        raise
    charset = "; charset=utf-8" if media_type.startswith("text/") or "json" in media_type or "xml" in media_type else ""
    return 200, media_type + charset, bytes(sink.buffer)


def _graphs(names: list[str]) -> list[ox.NamedNode]:
    return [ox.NamedNode(n) for n in names]


def handle(store: ox.Store, request: dict) -> tuple[int, str, bytes]:
    """Run one request against the store; returns (HTTP status, content type, body)."""
    options: dict = {}
    if request.get("default_graph"):
        options["default_graph"] = _graphs(request["default_graph"])
    else:
        options["use_default_graph_as_union"] = True
    if request.get("named_graphs"):
        options["named_graphs"] = _graphs(request["named_graphs"])
    try:
        if request["op"] == "update":
            store.update(request["text"])
            return 204, "text/plain", b""
        result = store.query(request["text"], **options)
        return _serialize(result, request)
    except SyntaxError as exc:
        return 400, "text/plain", f"SPARQL syntax error: {exc}".encode()
    except (OSError, ValueError, TypeError) as exc:
        return 400, "text/plain", f"SPARQL evaluation error: {exc}".encode()


def load_store(snapshot: str | None) -> ox.Store:
    store = ox.Store()
    if snapshot:
        store.bulk_load(path=snapshot, format=ox.RdfFormat.N_QUADS)
    return store


def main(conn: Connection, snapshot: str | None) -> None:
    """Worker loop: load the snapshot, then answer requests until the pipe closes."""
    store = load_store(snapshot)
    conn.send(("ready", time.time()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request.get("op") == "dump":  # write the current data as a new snapshot
            store.dump(request["path"], format=ox.RdfFormat.N_QUADS)
            conn.send((200, "text/plain", b""))
            continue
        conn.send(handle(store, request))
