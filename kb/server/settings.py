"""Server settings: each has a default, an environment variable and (for some) a `kd serve` option.

| variable | default | meaning |
| --- | --- | --- |
| KD_HOST | 127.0.0.1 | interface to listen on |
| KD_PORT | 8000 | port |
| KD_PUBLIC_URL | http://KD_HOST:KD_PORT | the address clients use; redirects and the service description name it, never the request's Host header |
| KD_DATA_DIR | ./data | builds (data/current is served) and update snapshots |
| KD_SITE_DIR | ./build-site/html | the documentation site, served at / |
| KD_QUERY_TIMEOUT | 5 | seconds a query may run (and may wait for a free worker) |
| KD_WORKERS | 4 | query worker processes |
| KD_MAX_WORKERS | 2 × KD_WORKERS | workers the pool may grow to while runaway queries hold the others |
| KD_CLIENT_CONCURRENCY | 2 | queries one client address may have running at once (0: no limit) |
| KD_MAX_REQUEST_BYTES | 1048576 | largest request body or query text; larger is refused with 413 |
| KD_MAX_RESULT_BYTES | 16777216 | largest result; a query producing more is stopped with 413 |
| KD_WORKER_MEMORY | 1024 | MiB of memory a worker may allocate beyond what it holds at start |
| KD_UPDATE_TOKEN | (unset) | enables SPARQL Update for requests with `Authorization: Bearer <token>` |
| KD_UNSAFE_DISABLE_GUARD | (unset) | tests only: `1` turns the query guard off (the sandbox still holds) |
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Paths


class SettingError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _number(name: str, default: str, kind=int):
    raw = os.environ.get(name, default)
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SettingError(f"{name} must be {what}, got {raw!r}") from None


# Field name -> how a person sets it (for messages): the option of `kd serve`, the variable.
ENV_NAMES = {
    "host": "--host / KD_HOST", "port": "--port / KD_PORT", "public_url": "KD_PUBLIC_URL",
    "data_dir": "--data-dir / KD_DATA_DIR", "site_dir": "KD_SITE_DIR",
    "query_timeout": "--timeout / KD_QUERY_TIMEOUT", "workers": "--workers / KD_WORKERS",
    "max_workers": "KD_MAX_WORKERS", "client_concurrency": "KD_CLIENT_CONCURRENCY",
    "max_request_bytes": "KD_MAX_REQUEST_BYTES", "max_result_bytes": "KD_MAX_RESULT_BYTES",
    "worker_memory_mib": "KD_WORKER_MEMORY", "update_token": "KD_UPDATE_TOKEN",
    "disable_guard": "KD_UNSAFE_DISABLE_GUARD",
}


@dataclass(frozen=True)
class Settings:
    host: str = field(default_factory=lambda: _env("KD_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _number("KD_PORT", "8000"))
    public_url: str | None = field(default_factory=lambda: os.environ.get("KD_PUBLIC_URL") or None)
    data_dir: Path = field(default_factory=lambda: Paths.from_env().data_dir)
    site_dir: Path = field(default_factory=lambda: Path(_env("KD_SITE_DIR", str(Paths.from_env().root / "build-site" / "html"))))
    query_timeout: float = field(default_factory=lambda: _number("KD_QUERY_TIMEOUT", "5", float))
    workers: int = field(default_factory=lambda: _number("KD_WORKERS", "4"))
    max_workers: int | None = field(default_factory=lambda: _number("KD_MAX_WORKERS", "0") or None)
    client_concurrency: int = field(default_factory=lambda: _number("KD_CLIENT_CONCURRENCY", "2"))
    max_request_bytes: int = field(default_factory=lambda: _number("KD_MAX_REQUEST_BYTES", str(2**20)))
    max_result_bytes: int = field(default_factory=lambda: _number("KD_MAX_RESULT_BYTES", str(16 * 2**20)))
    worker_memory_mib: int = field(default_factory=lambda: _number("KD_WORKER_MEMORY", "1024"))
    # SPARQL Update is refused unless a token is set; then it needs `Authorization: Bearer <token>`.
    update_token: str | None = field(default_factory=lambda: os.environ.get("KD_UPDATE_TOKEN") or None)
    disable_guard: bool = field(default_factory=lambda: os.environ.get("KD_UNSAFE_DISABLE_GUARD") == "1")

    def __post_init__(self) -> None:
        checks = [
            ("port", 1 <= self.port <= 65535, "between 1 and 65535"),
            ("query_timeout", self.query_timeout > 0, "a number of seconds > 0"),
            ("workers", self.workers >= 1, ">= 1"),
            ("max_workers", self.max_workers is None or self.max_workers >= self.workers,
             f">= the number of workers ({self.workers})"),
            ("client_concurrency", self.client_concurrency >= 0, ">= 0 (0: no limit)"),
            ("max_request_bytes", 1024 <= self.max_request_bytes <= 64 * 2**20, "between 1024 and 67108864"),
            ("max_result_bytes", self.max_result_bytes >= 1024, ">= 1024"),
            ("worker_memory_mib", self.worker_memory_mib >= 64, ">= 64 (MiB)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise SettingError(f"{ENV_NAMES[name]} must be {expected}, got {getattr(self, name)!r}")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise SettingError(f"KD_PUBLIC_URL must start with http:// or https://, got {self.public_url!r}")

    @property
    def base_url(self) -> str:
        """Where clients reach this server: KD_PUBLIC_URL, or the address it listens on."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def with_options(self, **options) -> "Settings":
        """These settings with the command line's options (None: not given) applied."""
        return dataclasses.replace(self, **{k: v for k, v in options.items() if v is not None})
