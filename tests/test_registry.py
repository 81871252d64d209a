"""One registry of techniques, checked against the ontology both ways."""

from __future__ import annotations

import importlib

from reference_impl import registry


def ontology_modules(built) -> dict[str, set[str]]:
    rows = built.select("SELECT ?c ?m WHERE { ?c kdo:implementedBy ?i . ?i kdo:pythonModule ?m }")
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["m"], set()).add(r["c"])
    return found


def test_every_module_is_linked_from_a_concept_and_every_link_imports(built):
    linked = ontology_modules(built)
    modules = {registry.module_path(n) for n in registry.technique_names()}
    assert modules == set(linked), "modules and kdo:implementedBy links differ"
    for path in linked:
        importlib.import_module(path)


def test_each_module_names_its_concept_which_links_back(built):
    linked = ontology_modules(built)
    for name in registry.technique_names():
        module = registry.load(name)
        iri = "https://w3id.org/kdkb/id/" + module.CONCEPT
        assert iri in linked[registry.module_path(name)], f"{name}: {module.CONCEPT} does not link to it"
        assert built.ask(f"ASK {{ <{iri}> a kdo:Technique }}")
        doc = module.__doc__ or ""
        assert "arXiv" in doc or "doi" in doc.lower(), f"{name}: the docstring must cite its paper"
        assert module.EXPERIMENTS and all(e.max_seeds >= 3 and 0 < e.sesoi for e in module.EXPERIMENTS)


def test_unknown_technique_is_a_clear_error():
    import pytest
    with pytest.raises(ValueError, match="unknown technique"):
        registry.load("nope")
