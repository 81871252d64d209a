"""Server settings, each with an environment-variable override."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Paths


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    host: str = field(default_factory=lambda: _env("KD_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("KD_PORT", "8000")))
    data_dir: Path = field(default_factory=lambda: Paths.from_env().data_dir)
    # The HTML that `kd site build` writes; served at / when it holds an index.html.
    site_dir: Path = field(default_factory=lambda: Path(_env("KD_SITE_DIR", str(Paths.from_env().root / "build-site" / "html"))))
    query_timeout: float = field(default_factory=lambda: float(_env("KD_QUERY_TIMEOUT", "5")))
    max_result_bytes: int = field(default_factory=lambda: int(_env("KD_MAX_RESULT_BYTES", str(16 * 2**20))))
    workers: int = field(default_factory=lambda: int(_env("KD_WORKERS", "4")))
    # SPARQL Update is refused unless a token is set; then it needs `Authorization: Bearer <token>`.
    update_token: str | None = field(default_factory=lambda: os.environ.get("KD_UPDATE_TOKEN") or None)

    def __post_init__(self) -> None:
        if self.query_timeout <= 0:
            raise ValueError(f"query timeout must be > 0 seconds, got {self.query_timeout}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_result_bytes < 1024:
            raise ValueError(f"max result bytes must be >= 1024, got {self.max_result_bytes}")
