"""A pool of killable query workers, so that every query runs under a real time limit.

A query that passes the limit -- including one that sorts, groups or counts before its
first row -- is stopped by killing its worker process; a fresh worker takes its place in
the background and the other workers go on answering. The caller gets a `QueryTimeout`,
never a half-written body.

Updates (only when the server was started with an update token) run on a worker of their
own; on success its data is written as a new snapshot and every worker is replaced by one
that loads it, so all later queries see the update. Updates live until the next `kd build`
is put in service: the ontology files remain the source of truth.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import worker as worker_module

_CTX = mp.get_context("spawn")  # never fork a threaded server


class QueryTimeout(Exception):
    pass


class PoolUnavailable(Exception):
    pass


@dataclass
class Worker:
    snapshot: str | None
    generation: int
    process: mp.Process = field(init=False)
    conn: object = field(init=False)

    def __post_init__(self) -> None:
        self.conn, child = _CTX.Pipe()
        self.process = _CTX.Process(target=worker_module.main, args=(child, self.snapshot), daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise PoolUnavailable("a query worker did not start in time")
        self.conn.recv()

    def call(self, request: dict, timeout: float):
        self.conn.send(request)
        if not self.conn.poll(timeout):
            raise QueryTimeout()
        return self.conn.recv()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        try:
            self.conn.close()
        except OSError:
            pass


class WorkerPool:
    def __init__(self, snapshot: str | None, *, size: int = 4, timeout: float = 5.0):
        self.size, self.timeout = size, timeout
        self.snapshot = snapshot
        self.generation = 0
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._update_lock = threading.Lock()
        self._closed = False
        self._updates_dir: Path | None = None
        workers = [Worker(snapshot, 0) for _ in range(size)]
        for w in workers:
            w.wait_ready(timeout=60)
            self._idle.put(w)

    # -- lifecycle ------------------------------------------------------------------
    def _spawn_replacement(self) -> None:
        def start() -> None:
            with self._lock:
                snapshot, generation = self.snapshot, self.generation
            w = Worker(snapshot, generation)
            try:
                w.wait_ready(timeout=60)
            except PoolUnavailable:
                return
            if self._closed:
                w.kill()
            else:
                self._idle.put(w)
        threading.Thread(target=start, daemon=True).start()

    def reload(self, snapshot: str | None) -> None:
        """Serve a new snapshot: workers of the old one are replaced as they come back idle."""
        with self._lock:
            self.snapshot = snapshot
            self.generation += 1

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().kill()
            except queue.Empty:
                break

    # -- running --------------------------------------------------------------------
    def _checkout(self, deadline: float) -> Worker:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueryTimeout()
            try:
                w = self._idle.get(timeout=remaining)
            except queue.Empty:
                raise QueryTimeout() from None
            if w.generation == self.generation and w.process.is_alive():
                return w
            w.kill()  # stale snapshot or dead: replace it and try the next one
            self._spawn_replacement()

    def run(self, request: dict, timeout: float | None = None):
        """Run a request on a worker; raise QueryTimeout past the limit (queueing included)."""
        if self._closed:
            raise PoolUnavailable("the server is shutting down")
        limit = timeout or self.timeout
        deadline = time.monotonic() + limit
        w = self._checkout(deadline)
        try:
            result = w.call(request, max(0.01, deadline - time.monotonic()))
        except QueryTimeout:
            w.kill()
            self._spawn_replacement()
            raise
        except (EOFError, OSError, BrokenPipeError) as exc:
            w.kill()
            self._spawn_replacement()
            raise PoolUnavailable(f"the query worker died: {exc}") from exc
        self._idle.put(w)
        return result

    def update(self, text: str, timeout: float | None = None):
        """Apply a SPARQL Update on a dedicated worker, then serve its data everywhere."""
        limit = timeout or self.timeout
        with self._update_lock:
            with self._lock:
                snapshot, generation = self.snapshot, self.generation
            w = Worker(snapshot, generation)
            try:
                w.wait_ready(timeout=60)
                status, ctype, body = w.call({"op": "update", "text": text}, limit)
                if status != 204:
                    return status, ctype, body
                if self._updates_dir is None:
                    self._updates_dir = Path(tempfile.mkdtemp(prefix="kd-updates-"))
                target = self._updates_dir / f"snapshot-{time.time_ns()}.nq"
                w.call({"op": "dump", "path": str(target)}, limit)
                self.reload(str(target))
                return status, ctype, body
            finally:
                w.kill()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in list(self._idle.queue)]

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"WorkerPool(size={self.size}, snapshot={os.path.basename(self.snapshot or '')})"
