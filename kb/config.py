"""Where things live, with environment-variable overrides.

| setting        | environment variable | default                          |
|----------------|----------------------|----------------------------------|
| project root   | KD_ROOT              | the checkout that holds `kb/`    |
| ontology dir   | KD_ONTOLOGY_DIR      | <root>/ontology                  |
| results dir    | KD_RESULTS_DIR       | <root>/results                   |
| data dir       | KD_DATA_DIR          | <root>/data                      |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _path(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Paths:
    root: Path
    ontology_dir: Path
    results_dir: Path
    data_dir: Path

    @classmethod
    def from_env(cls, **overrides: Path | str | None) -> "Paths":
        root = _path("KD_ROOT", PACKAGE_ROOT)
        values = {
            "root": root,
            "ontology_dir": _path("KD_ONTOLOGY_DIR", root / "ontology"),
            "results_dir": _path("KD_RESULTS_DIR", root / "results"),
            "data_dir": _path("KD_DATA_DIR", root / "data"),
        }
        for key, value in overrides.items():
            if value is not None:
                values[key] = Path(value).expanduser().resolve()
        return cls(**values)

    @property
    def current_build(self) -> Path:
        """Symlink to the build in service; replaced atomically by `kd build`."""
        return self.data_dir / "current"

    @property
    def shapes_file(self) -> Path:
        return self.ontology_dir / "shapes.ttl"
