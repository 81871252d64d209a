"""SHACL validation of a build against ontology/shapes.ttl (pyshacl).

The data graph is the whole built store (asserted plus derived triples, without the
shapes themselves), so a rule such as "every concept has a parent" sees the skos:broader
links that the build derives from rdfs:subClassOf.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from .namespaces import GRAPH


@dataclass
class ValidationReport:
    conforms: bool
    violations: list[dict[str, str]]
    text: str


def store_as_ntriples(store: ox.Store, *, exclude_graphs: tuple[str, ...] = ()) -> bytes:
    # The named graphs (the default graph repeats them all, shapes included).
    triples = {
        ox.Triple(q.subject, q.predicate, q.object)
        for q in store
        if isinstance(q.graph_name, ox.NamedNode) and q.graph_name.value not in exclude_graphs
    }
    return ox.serialize(list(triples), format=ox.RdfFormat.N_TRIPLES) or b""


def validate_ntriples(data: bytes, shapes_file: Path) -> ValidationReport:
    """Validate N-Triples data against a SHACL shapes file."""
    import pyshacl  # slow to import: only when validating
    import rdflib

    data_graph = rdflib.Graph().parse(data=data.decode(), format="nt")
    shapes = rdflib.Graph().parse(shapes_file, format="turtle")
    conforms, report_graph, text = pyshacl.validate(
        data_graph, shacl_graph=shapes, inference="none", advanced=True, allow_warnings=True
    )
    sh = rdflib.Namespace("http://www.w3.org/ns/shacl#")
    violations = []
    for result in report_graph.subjects(rdflib.RDF.type, sh.ValidationResult):
        get = lambda p: report_graph.value(result, p)  # noqa: E731
        violations.append({
            "focus": str(get(sh.focusNode)),
            "path": str(get(sh.resultPath) or ""),
            "severity": str(get(sh.resultSeverity)).rsplit("#", 1)[-1],
            "message": str(get(sh.resultMessage) or ""),
        })
    violations.sort(key=lambda v: (v["focus"], v["path"]))
    return ValidationReport(bool(conforms), violations, text)


def validate_store(store: ox.Store, shapes_file: Path) -> ValidationReport:
    shapes_graph = f"{GRAPH}ontology/{shapes_file.stem}"
    return validate_ntriples(store_as_ntriples(store, exclude_graphs=(shapes_graph,)), shapes_file)
