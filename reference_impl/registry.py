"""The registry of technique modules: every module in reference_impl.techniques.

There is no second list to keep in step: a module is registered by existing. A test checks
this set against the modules the ontology links with kdo:implementedBy, both ways.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from . import techniques

PACKAGE = techniques.__name__


FAMILIES = ("classification", "language model")


def technique_names(*, family: str | None = None) -> list[str]:
    """Every technique module's short name; with `family`, those of one family: "classification"
    (the image and tabular classifiers; `distill` runs them) or "language model" (token- and
    sequence-level losses on transformers; a module says so with FAMILY = "language model")."""
    names = sorted(m.name for m in pkgutil.iter_modules(techniques.__path__) if not m.name.startswith("_"))
    if family is None:
        return names
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return [n for n in names if family_of(n) == family]


def family_of(name: str) -> str:
    return getattr(load(name), "FAMILY", "classification")


def module_path(name: str) -> str:
    return f"{PACKAGE}.{name}"


def load(name: str) -> ModuleType:
    """Import a technique module by short name (e.g. 'soft_targets'); clear error if unknown."""
    names = technique_names()
    if name not in names:
        raise ValueError(f"unknown technique {name!r}; known: {', '.join(names)}")
    module = importlib.import_module(module_path(name))
    for attribute in ("CONCEPT", "EXPERIMENTS"):
        if not hasattr(module, attribute):
            raise ValueError(f"{module.__name__} does not define {attribute}")
    return module
