"""Open the built store and ask it questions.

    >>> import kb
    >>> base = kb.open()
    >>> rows = base.select("SELECT ?c WHERE { ?c rdfs:subClassOf kd:RelationBasedDistillation }")
    >>> [r["c"] for r in rows]           # plain Python values: IRIs and literals as str
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .config import Paths
from .namespaces import PREFIXES


class StoreNotBuilt(Exception):
    """There is no built store yet: run `kd build`."""


class QueryError(ValueError):
    """The SPARQL text could not be parsed or evaluated; the message is the parser's."""


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


class KnowledgeBase:
    """A read-only view of one build of the knowledge base."""

    def __init__(self, build_dir: Path):
        self.build_dir = build_dir
        self.store = ox.Store.read_only(str(build_dir / "store"))

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.build_dir / "manifest.json").read_text())

    def query(self, sparql: str, *, prefixes: bool = True, **options: Any):
        """Run a SPARQL query over the union of all graphs; returns pyoxigraph's result.

        `prefixes=True` lets the query use the project's prefixes (kd:, skos:, ...) without
        declaring them. Raises QueryError with the parser's message on a bad query.
        """
        options.setdefault("use_default_graph_as_union", True)
        if prefixes:
            options["prefixes"] = PREFIXES
        try:
            return self.store.query(sparql, **options)
        except SyntaxError as exc:
            raise QueryError(str(exc)) from exc
        except OSError as exc:  # evaluation errors (e.g. a SERVICE call) surface as OSError
            raise QueryError(str(exc)) from exc

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

    def __len__(self) -> int:
        return len(self.store)


def open_store(data_dir: str | Path | None = None) -> KnowledgeBase:
    """Open the build currently in service (the `current` symlink of the data directory)."""
    paths = Paths.from_env(data_dir=data_dir)
    current = paths.current_build
    if not current.exists():
        raise StoreNotBuilt(f"no store built in {paths.data_dir}: run `kd build` first")
    return KnowledgeBase(current.resolve())
