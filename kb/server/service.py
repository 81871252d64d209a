"""The state behind every route: the build in service and the pool of engine processes."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from ..config import Paths
from ..engine import EngineConfig
from ..namespaces import PREFIXES
from .negotiation import DEFAULT_GRAPH, DEFAULT_SOLUTIONS, GRAPH_TYPES, SOLUTION_TYPES, rank
from .pool import WorkerPool
from .settings import Settings

log = logging.getLogger("kd.serve")


class SparqlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.paths = Paths.from_env(data_dir=settings.data_dir)
        self._build = self._current_build()
        config = EngineConfig(
            source=self.snapshot, max_request_bytes=settings.max_request_bytes,
            memory_bytes=settings.worker_memory_mib * 2**20, base_iri=self.endpoint,
            prefixes=dict(PREFIXES), guard=not settings.disable_guard)
        self.pool = WorkerPool(config, size=settings.workers, max_size=settings.max_workers,
                               timeout=settings.query_timeout, per_client=settings.client_concurrency,
                               updates_dir=self.paths.data_dir / "updates")
        self._lock = threading.Lock()
        if not self.pool.network:
            log.warning("WARNING: query workers can open network connections here (no seccomp and "
                        "no network namespace): only the query guard keeps queries from other hosts")
        if settings.disable_guard:
            log.warning("WARNING: KD_UNSAFE_DISABLE_GUARD=1: the query guard is off (for tests only)")

    @property
    def endpoint(self) -> str:
        """The endpoint's public address: the base IRI of every query and update."""
        return self.settings.base_url + "/sparql"

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
                    self.pool.reload(self.snapshot, build=True)

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

    async def run(self, request: dict, *, client: str = "") -> tuple[int, str, bytes]:
        self.refresh()
        return await run_in_threadpool(self.pool.run, request, client=client)

    async def update(self, text: str, *, using_graphs=(), using_named_graphs=()) -> tuple[int, str, bytes]:
        self.refresh()
        request = {"text": text, "using_graphs": list(using_graphs), "using_named_graphs": list(using_named_graphs)}
        return await run_in_threadpool(self.pool.update, request)

    async def select(self, query: str, *, client: str = "") -> list[dict[str, str]]:
        """SELECT for the API (the project's prefixes are predeclared): rows as {var: value}."""
        status, _, body = await self.run(self.request(query, accept=DEFAULT_SOLUTIONS), client=client)
        if status != 200:
            raise SparqlError(status, body.decode(errors="replace"))
        data = json.loads(body)
        return [{k: v["value"] for k, v in b.items()} for b in data["results"]["bindings"]]

    async def ask(self, query: str, *, client: str = "") -> bool:
        status, _, body = await self.run(self.request(query, accept=DEFAULT_SOLUTIONS), client=client)
        if status != 200:
            raise SparqlError(status, body.decode(errors="replace"))
        return bool(json.loads(body)["boolean"])

    def close(self) -> None:
        self.pool.close()
