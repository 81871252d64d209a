"""The state behind every route: the build in service and the worker pool that queries it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from ..config import Paths
from ..namespaces import sparql_prologue
from .negotiation import DEFAULT_GRAPH, DEFAULT_SOLUTIONS, GRAPH_TYPES, SOLUTION_TYPES, rank
from .pool import WorkerPool
from .settings import Settings


class SparqlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.paths = Paths.from_env(data_dir=settings.data_dir)
        self._build = self._current_build()
        self.pool = WorkerPool(self.snapshot, size=settings.workers, timeout=settings.query_timeout)
        self._lock = threading.Lock()

    # -- the build in service -----------------------------------------------------
    def _current_build(self) -> Path | None:
        link = self.paths.current_build
        return link.resolve() if link.exists() else None

    @property
    def build_dir(self) -> Path | None:
        return self._build

    @property
    def snapshot(self) -> str | None:
        if self._build is None:
            return None
        path = self._build / "exports" / "kdkb.nq"
        return str(path) if path.exists() else None

    def refresh(self) -> None:
        """Follow `kd build`: when `data/current` points elsewhere, serve the new build."""
        current = self._current_build()
        if current != self._build:
            with self._lock:
                if current != self._build:
                    self._build = current
                    self.pool.reload(self.snapshot)

    def export_file(self, ext: str) -> Path | None:
        if self._build is None:
            return None
        path = self._build / "exports" / f"kdkb.{ext}"
        return path if path.exists() else None

    # -- querying -------------------------------------------------------------------
    def request(self, text: str, *, accept: str | None = None, default_graph=(), named_graphs=()) -> dict:
        return {
            "op": "query",
            "text": text,
            "accept_solutions": rank(accept, list(SOLUTION_TYPES), DEFAULT_SOLUTIONS),
            "accept_graph": rank(accept, list(GRAPH_TYPES), DEFAULT_GRAPH),
            "default_graph": list(default_graph),
            "named_graphs": list(named_graphs),
            "max_bytes": self.settings.max_result_bytes,
        }

    async def run(self, request: dict) -> tuple[int, str, bytes]:
        self.refresh()
        return await run_in_threadpool(self.pool.run, request)

    async def select(self, query: str) -> list[dict[str, str]]:
        """SELECT for the API: the project's prefixes prepended, rows as {var: value}."""
        status, _, body = await self.run(self.request(sparql_prologue() + query,
                                                      accept="application/sparql-results+json"))
        if status != 200:
            raise SparqlError(status, body.decode(errors="replace"))
        data = json.loads(body)
        return [{k: v["value"] for k, v in b.items()} for b in data["results"]["bindings"]]

    async def ask(self, query: str) -> bool:
        status, _, body = await self.run(self.request(sparql_prologue() + query,
                                                      accept="application/sparql-results+json"))
        if status != 200:
            raise SparqlError(status, body.decode(errors="replace"))
        return bool(json.loads(body)["boolean"])

    def close(self) -> None:
        self.pool.close()
