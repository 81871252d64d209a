"""A pool of engine processes: every query under a time limit, and no client starving the rest.

- **Time limit.** A request that runs past the limit is stopped by killing its process; a
  fresh one takes its place in the background. Waiting for a free process is limited by the
  same duration (and then nothing is killed: a request that waited long still gets the full
  limit to run, so that a busy server never stops healthy processes).
- **Fairness.** One client (a peer address) may have at most `per_client` requests running
  at once; more wait their turn. When a request leaves at most one process idle, one more is
  started (up to `max_size`), so that a few runaway queries, which hold their processes until
  the time limit, always leave a process ready for everyone else; the extra processes are
  retired when they come back and two others are idle.
- **Updates.** They run on a process of their own; on success its data is written as a
  snapshot under `updates_dir` (older ones are pruned) and every process is replaced by one
  that loads it. A source that cannot be loaded never empties the pool: processes fall back
  to the last source that loaded, then to the build's own, and the log says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ..engine import EngineConfig, EngineProcess, EngineTimeout, EngineUnavailable

log = logging.getLogger("kd.pool")

KEEP_SNAPSHOTS = 2


class QueryTimeout(Exception):
    """The query ran past the time limit (its process was stopped), or, with `waiting`, no
    process became free within the limit (nothing was stopped)."""

    def __init__(self, *, waiting: bool = False):
        super().__init__("waited too long for a worker" if waiting else "ran past the time limit")
        self.waiting = waiting


class PoolUnavailable(Exception):
    pass


class WorkerPool:
    def __init__(self, config: EngineConfig, *, size: int = 4, max_size: int | None = None,
                 timeout: float = 5.0, per_client: int = 2, updates_dir: Path | None = None):
        self.size, self.max_size = size, max(size, max_size or 2 * size)
        self.timeout, self.per_client = timeout, per_client
        self.config = config
        self.build_source = self.good_source = config.source
        self.updates_dir = updates_dir
        self.generation = 0
        self._idle: list[EngineProcess] = []
        self._total = 0  # processes alive or starting
        self._starting = 0
        self._running: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._update_lock = threading.Lock()
        self._closed = False
        first = self._start(config, 0)  # in the foreground: a build that cannot load fails start-up
        self.network: list[str] = first.info.get("network", [])
        self.memory_cap = first.info.get("memory_cap")
        with self._cond:
            self._idle.append(first)
            self._total = 1
        for _ in range(size - 1):
            self._spawn()

    # -- processes ------------------------------------------------------------------------
    def _start(self, config: EngineConfig, generation: int) -> EngineProcess:
        """A ready process for `config`, or for the last source that loaded if that one fails."""
        sources = list(dict.fromkeys([config.source, self.good_source, self.build_source]))
        for source in sources:
            process = EngineProcess(replace(config, source=source))
            try:
                process.wait_ready()
            except EngineUnavailable as exc:
                if source == sources[-1]:
                    raise
                log.error("%s; serving %s instead (changes made since then are not served)", exc,
                          sources[sources.index(source) + 1])
                continue
            process.generation = generation
            with self._cond:
                self.good_source = source
                if source != config.source and generation == self.generation:
                    self.config = replace(self.config, source=source)
            return process
        raise EngineUnavailable("no source could be loaded")  # pragma: no cover - loop returns or raises

    def _spawn(self) -> None:
        """Start one more process in the background; it joins the idle ones when ready."""
        with self._cond:
            if self._closed:
                return
            self._starting += 1
            self._total += 1
            config, generation = self.config, self.generation
        threading.Thread(target=self._start_in_background, args=(config, generation), daemon=True).start()

    def _start_in_background(self, config: EngineConfig, generation: int) -> None:
        process = None
        for attempt in range(6):
            try:
                process = self._start(config, generation)
                break
            except EngineUnavailable as exc:
                log.error("a query process could not start (attempt %d): %s", attempt + 1, exc)
                time.sleep(min(2 ** attempt, 10))
        with self._cond:
            self._starting -= 1
            keep = process is not None and not self._closed and generation == self.generation
            if keep:
                self._idle.append(process)
            else:
                self._total -= 1
            respawn = not keep and not self._closed and self._total < self.size
            self._cond.notify_all()
        if process is not None and not keep:
            process.kill()
        if respawn:
            self._spawn()

    # -- running --------------------------------------------------------------------------
    def _checkout(self, client: str, deadline: float) -> EngineProcess:
        with self._cond:
            while True:
                if self._closed:
                    raise PoolUnavailable("the server is shutting down")
                over_limit = 0 < self.per_client <= self._running[client]
                if self._idle and not over_limit:
                    process = self._idle.pop()
                    if process.alive():
                        break
                    self._total -= 1  # it died while idle: replace it, try the next one
                    threading.Thread(target=self._spawn, daemon=True).start()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QueryTimeout(waiting=True)
                self._cond.wait(remaining)
            self._running[client] += 1
            # Keep a free process ready for the next client before the last one is taken:
            # starting one takes a few hundred milliseconds, more on a busy machine.
            spare = len(self._idle) + self._starting <= 1 and self._total < self.max_size
        if spare:
            self._spawn()
        return process

    def _checkin(self, process: EngineProcess, client: str, *, healthy: bool) -> None:
        with self._cond:
            self._running[client] -= 1
            if self._running[client] <= 0:
                del self._running[client]
            current = process.generation == self.generation
            extra = self._total > self.size and len(self._idle) >= 2  # one spare stays while busy
            if healthy and current and not extra and not self._closed:
                self._idle.append(process)
                self._cond.notify_all()
                return
            self._total -= 1
            respawn = not self._closed and self._total < self.size
            self._cond.notify_all()
        process.kill()
        if respawn:
            self._spawn()

    def run(self, request: dict, *, client: str = "", timeout: float | None = None):
        """Run a request; QueryTimeout past the limit, or after waiting that long for a process."""
        limit = timeout or self.timeout
        process = self._checkout(client, time.monotonic() + limit)
        try:
            result = process.call(request, limit)
        except EngineTimeout:
            self._checkin(process, client, healthy=False)
            raise QueryTimeout() from None
        except (EngineUnavailable, OSError, EOFError) as exc:
            reason = process.exit_description()
            self._checkin(process, client, healthy=False)
            raise PoolUnavailable(f"query stopped: {reason}") from exc
        self._checkin(process, client, healthy=True)
        return result

    # -- updates --------------------------------------------------------------------------
    def update(self, request: dict, timeout: float | None = None):
        """Apply a SPARQL Update on a process of its own, then serve its data everywhere."""
        if self.updates_dir is None:
            raise PoolUnavailable("updates need a data directory to keep their snapshots in")
        with self._update_lock:
            with self._cond:
                config = self.config
            process = self._start(config, -1)
            try:
                status, ctype, body = process.call({**request, "op": "update"}, timeout or self.timeout)
                if status != 204:
                    return status, ctype, body
                self.updates_dir.mkdir(parents=True, exist_ok=True)
                target = self.updates_dir / f"snapshot-{time.time_ns()}.nq"
                process.call({"op": "dump", "path": str(target)}, timeout or self.timeout)
                self.reload(str(target))
                for old in sorted(self.updates_dir.glob("snapshot-*.nq"))[:-KEEP_SNAPSHOTS]:
                    old.unlink(missing_ok=True)
                return status, ctype, body
            except EngineTimeout:
                raise QueryTimeout() from None
            except EngineUnavailable as exc:
                raise PoolUnavailable(str(exc)) from exc
            finally:
                process.kill()

    def reload(self, source: str | None, *, build: bool = False) -> None:
        """Serve a new source (an update's snapshot, or with `build=True` a new build)."""
        with self._cond:
            self.config = replace(self.config, source=source)
            if build:
                self.build_source = source
            self.good_source = source
            self.generation += 1
            stale, self._idle = self._idle, []
            self._total -= len(stale)
        for process in stale:
            process.kill()
        for _ in range(len(stale)):
            self._spawn()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for process in idle:
            process.kill()

    @property
    def pids(self) -> list[int]:
        with self._cond:
            return [p.pid for p in self._idle]
