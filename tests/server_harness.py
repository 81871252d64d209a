"""Start a real `kd serve` in a subprocess for tests, and stop it afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(data_dir: Path, **env: str):
    port = free_port()
    environment = {**os.environ, "KD_DATA_DIR": str(data_dir), "KD_PORT": str(port),
                   "KD_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **env}
    if "KD_UPDATE_TOKEN" not in env:  # a token in the caller's environment must not leak in
        environment.pop("KD_UPDATE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "kb.cli", "serve"], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stdout.read()}")
            try:
                if httpx.get(url + "/sparql", headers={"Accept": "text/turtle"}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 60:
                raise RuntimeError("server did not start within 60 s")
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def child_pids(pid: int) -> set[int]:
    """Direct children of a process, from /proc (Linux)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found
