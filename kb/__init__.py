"""The knowledge-distillation knowledge base: build, open, query and serve it.

    import kb
    kb.build()                       # ontology/ + results/ -> data/current (atomic)
    base = kb.open()
    base.select("SELECT ?t WHERE { ?t rdfs:subClassOf+ kd:OnlineDistillation }")

This package never imports torch: serving stays light. Implementations live in
`reference_impl` and run in their own processes.
"""

from .build import BuildError, build
from .config import Paths
from .store import KnowledgeBase, QueryError, StoreNotBuilt, open_store

open = open_store  # noqa: A001 - `kb.open()` reads naturally, as `dbm.open` does

__all__ = [
    "BuildError",
    "KnowledgeBase",
    "Paths",
    "QueryError",
    "StoreNotBuilt",
    "build",
    "open",
    "open_store",
]
