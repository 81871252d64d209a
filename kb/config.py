"""Where things live, with environment-variable overrides.

| setting        | environment variable | default in a checkout            | default when installed from the wheel  |
|----------------|----------------------|----------------------------------|----------------------------------------|
| project root   | KD_ROOT              | the checkout that holds `kb/`    | the current working directory          |
| ontology dir   | KD_ONTOLOGY_DIR      | <root>/ontology                  | the copy shipped in the package        |
|                |                      |                                  | (`kb/_ontology`), unless KD_ROOT is set|
| results dir    | KD_RESULTS_DIR       | <root>/results                   | <root>/results                         |
| data dir       | KD_DATA_DIR          | <root>/data                      | <root>/data                            |

"In a checkout" means that `kb/` sits beside `pyproject.toml` and `ontology/` (a clone, or an
editable install of one). Installed from the wheel there is no checkout: the built store and
any results then live under the directory `kd` runs in (`./data`, `./results`), and the
ontology is the one the wheel ships as package data. With KD_ROOT set, the ontology is
<root>/ontology in both cases, as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The directory that holds `kb/`: the checkout, or site-packages when installed from the wheel.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (PACKAGE_ROOT / "pyproject.toml").is_file() and (PACKAGE_ROOT / "ontology").is_dir()


def packaged_ontology_dir() -> Path:
    """The ontology's Turtle files shipped in the wheel as the data package `kb._ontology`.

    A directory of plain files beside this module (pyoxigraph and pyshacl read files by
    path); `importlib.resources` would only hide the same path behind a MultiplexedPath,
    since the data package has no `__init__.py`.
    """
    return Path(__file__).resolve().parent / "_ontology"


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
        installed = not IN_CHECKOUT and not os.environ.get("KD_ROOT")
        root = Path.cwd().resolve() if installed else _path("KD_ROOT", PACKAGE_ROOT)
        values = {
            "root": root,
            "ontology_dir": _path("KD_ONTOLOGY_DIR", packaged_ontology_dir() if installed else root / "ontology"),
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
