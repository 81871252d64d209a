"""Open the built store and ask it questions, with the server's safety and time limit.

    >>> import kb
    >>> base = kb.open()
    >>> rows = base.select("SELECT ?c WHERE { ?c rdfs:subClassOf kd:RelationBasedDistillation }")
    >>> [r["c"] for r in rows]           # plain Python values: IRIs and literals as str

Every query is checked by `kb.guard` (SERVICE and LOAD are refused, as by the endpoint) and
runs in an engine process of this knowledge base's own (`kb.engine`: no network, bounded
memory), which is stopped when the time limit passes (`timeout=`, by default
$KD_QUERY_TIMEOUT or 5 s; `timeout=None` waits for as long as the query runs).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .config import Paths
from .engine import EngineConfig, EngineProcess, EngineTimeout, EngineUnavailable
from .namespaces import PREFIXES


class StoreNotBuilt(Exception):
    """There is no built store yet: run `kd build`."""


class QueryError(ValueError):
    """The SPARQL text was refused, could not be parsed or evaluated; the message says why."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was stopped."""


def default_timeout() -> float:
    raw = os.environ.get("KD_QUERY_TIMEOUT", "5")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"KD_QUERY_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"KD_QUERY_TIMEOUT must be > 0, got {raw!r}")
    return value


class Triples(list):
    """The triples of a CONSTRUCT or DESCRIBE result (pyoxigraph `Triple`s)."""


def to_python(term: Any) -> Any:
    """A pyoxigraph term as a plain value: IRIs and strings as str, numbers and booleans native."""
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return term.value
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    if isinstance(term, ox.Literal):
        dt = term.datatype.value.rsplit("#", 1)[-1]
        try:
            if dt in {"integer", "int", "long", "short", "nonNegativeInteger", "positiveInteger"}:
                return int(term.value)
            if dt in {"decimal", "double", "float"}:
                return float(term.value)
            if dt == "boolean":
                return term.value in {"true", "1"}
        except ValueError:
            pass
        return term.value
    return str(term)


_UNSET: Any = object()
MAX_RESULT_BYTES = 256 * 2**20


class KnowledgeBase:
    """A read-only view of one build of the knowledge base."""

    def __init__(self, build_dir: Path, *, timeout: float | None = _UNSET):
        self.build_dir = build_dir
        self.store = ox.Store.read_only(str(build_dir / "store"))
        self.timeout = default_timeout() if timeout is _UNSET else timeout
        self._engine: EngineProcess | None = None
        self._lock = threading.Lock()

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.build_dir / "manifest.json").read_text())

    def _process(self) -> EngineProcess:
        if self._engine is None or not self._engine.alive():
            engine = EngineProcess(EngineConfig(source=str(self.build_dir / "store"), read_only_store=True,
                                                prefixes=dict(PREFIXES)))
            try:
                engine.wait_ready()
            except EngineUnavailable as exc:
                raise QueryError(str(exc)) from exc
            weakref.finalize(self, engine.kill)
            self._engine = engine
        return self._engine

    def query(self, sparql: str, *, prefixes: bool = True, timeout: float | None = _UNSET,
              default_graph: list[str] | None = None, named_graphs: list[str] | None = None):
        """Run a SPARQL query; returns pyoxigraph's QuerySolutions or QueryBoolean, or `Triples`.

        `prefixes=True` lets the query use the project's prefixes (kd:, skos:, ...) without
        declaring them. The default graph holds every triple; `default_graph` and
        `named_graphs` (IRIs) select graphs by name instead. Raises QueryError with the
        reason (the guard's or the parser's message), QueryTimeout past the time limit.
        """
        limit = self.timeout if timeout is _UNSET else timeout
        request = {"op": "query", "text": sparql, "predeclare": prefixes,
                   "accept_solutions": ["application/sparql-results+json"],
                   "accept_graph": ["application/n-triples"], "max_bytes": MAX_RESULT_BYTES,
                   "default_graph": list(default_graph or []), "named_graphs": list(named_graphs or [])}
        with self._lock:
            engine = self._process()
            try:
                status, ctype, body = engine.call(request, limit)
            except EngineTimeout:
                engine.kill()
                self._engine = None
                raise QueryTimeout(f"query stopped: it ran past the time limit of {limit:g} s") from None
            except EngineUnavailable as exc:
                self._engine = None
                raise QueryError(f"query stopped: {exc}") from exc
        if status != 200:
            raise QueryError(body.decode("utf-8", "replace").strip())
        if ctype.startswith("application/sparql-results+json"):
            return ox.parse_query_results(body, ox.QueryResultsFormat.JSON)
        return Triples(ox.parse(body, ox.RdfFormat.N_TRIPLES))

    def select(self, sparql: str, **options: Any) -> list[dict[str, Any]]:
        """SELECT as a list of dicts of plain Python values (unbound variables omitted)."""
        result = self.query(sparql, **options)
        if not isinstance(result, ox.QuerySolutions):
            raise QueryError("select() needs a SELECT query")
        names = [v.value for v in result.variables]
        return [
            {n: to_python(sol[n]) for n in names if sol[n] is not None} for sol in result
        ]

    def ask(self, sparql: str, **options: Any) -> bool:
        result = self.query(sparql, **options)
        if not isinstance(result, ox.QueryBoolean):
            raise QueryError("ask() needs an ASK query")
        return bool(result)

    def close(self) -> None:
        """Stop this knowledge base's engine process (a later query starts a new one)."""
        with self._lock:
            if self._engine is not None:
                self._engine.kill()
                self._engine = None

    def __len__(self) -> int:
        """Triples in the default graph (each triple once, whichever files state it)."""
        return sum(1 for _ in self.store.quads_for_pattern(None, None, None, ox.DefaultGraph()))


def open_store(data_dir: str | Path | None = None, *, timeout: float | None = _UNSET) -> KnowledgeBase:
    """Open the build currently in service (the `current` symlink of the data directory)."""
    paths = Paths.from_env(data_dir=data_dir)
    current = paths.current_build
    if not current.exists():
        raise StoreNotBuilt(f"no store built in {paths.data_dir}: run `kd build` first")
    return KnowledgeBase(current.resolve(), timeout=timeout)
