"""The IRIs of this knowledge base, written down once.

Every other module takes its namespaces from here, so that a change of base IRI is a
one-line change.
"""

from __future__ import annotations

BASE = "https://w3id.org/kdkb/"

KD = BASE + "id/"  # concepts
KDO = BASE + "ontology#"  # vocabulary minted by this project
KDP = BASE + "paper/"  # papers
KDS = BASE + "source/"  # web sources and seed documents
KDF = BASE + "fact/"  # sourced facts
KDI = BASE + "impl/"  # implementations (mls:Implementation)
KDR = BASE + "result/"  # benchmark results
GRAPH = BASE + "graph/"  # named graphs: one per source file, plus "inferred"

INFERRED_GRAPH = GRAPH + "inferred"
ONTOLOGY_IRI = BASE + "ontology"

# Prefixes known to `kd query` and the SPARQL endpoint, and used when serialising.
PREFIXES: dict[str, str] = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dcterms": "http://purl.org/dc/terms/",
    "bibo": "http://purl.org/ontology/bibo/",
    "schema": "https://schema.org/",
    "prov": "http://www.w3.org/ns/prov#",
    "mls": "http://www.w3.org/ns/mls#",
    "sh": "http://www.w3.org/ns/shacl#",
    "kd": KD,
    "kdo": KDO,
    "kdp": KDP,
    "kds": KDS,
    "kdf": KDF,
    "kdi": KDI,
    "kdr": KDR,
}


def sparql_prologue() -> str:
    """PREFIX declarations for every known prefix, for queries shown to people."""
    return "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in PREFIXES.items())


def compact(iri: str) -> str:
    """`https://w3id.org/kdkb/id/FitNets` -> `kd:FitNets`; unknown namespaces stay whole."""
    best = ""
    for prefix, ns in PREFIXES.items():
        if iri.startswith(ns) and len(ns) > len(PREFIXES.get(best, "")):
            best = prefix
    if best:
        local = iri[len(PREFIXES[best]) :]
        if local and all(c.isalnum() or c in "-_." for c in local):
            return f"{best}:{local}"
    return f"<{iri}>"
