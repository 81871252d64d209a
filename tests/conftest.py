"""Shared fixtures: a store built once per session from the repository's own sources."""

from __future__ import annotations

from pathlib import Path

import pytest

import kb
from kb.config import Paths

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def listener():
    """A loopback listener that plays every other host and counts connections (tests/guard_oracle.py)."""
    from .guard_oracle import Listener
    server = Listener()
    yield server
    server.close()


@pytest.fixture(scope="session")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """Paths of the real ontology/results, with a private data directory."""
    return Paths.from_env(root=REPO, ontology_dir=REPO / "ontology", results_dir=REPO / "results",
                          data_dir=tmp_path_factory.mktemp("kd-data"))


@pytest.fixture(scope="session")
def built(paths: Paths) -> kb.KnowledgeBase:
    kb.build(paths)
    return kb.open(paths.data_dir)


@pytest.fixture(scope="session")
def iris(built: kb.KnowledgeBase):
    """Set of subjects typed with a given class, e.g. iris('kdo:Technique')."""
    def _iris(cls: str) -> set[str]:
        return {r["s"] for r in built.select(f"SELECT DISTINCT ?s WHERE {{ ?s a {cls} }}")}
    return _iris
