"""Render query results for people (table) and programs (json, csv, tsv, turtle, ...)."""

from __future__ import annotations

import pyoxigraph as ox

from .namespaces import PREFIXES, compact

SOLUTION_FORMATS = {
    "json": ox.QueryResultsFormat.JSON,
    "xml": ox.QueryResultsFormat.XML,
    "csv": ox.QueryResultsFormat.CSV,
    "tsv": ox.QueryResultsFormat.TSV,
}
GRAPH_FORMATS = {
    "turtle": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "jsonld": ox.RdfFormat.JSON_LD,
    "rdfxml": ox.RdfFormat.RDF_XML,
}
ALL_FORMATS = ["table", *SOLUTION_FORMATS, *GRAPH_FORMATS]
# Serialisations that can abbreviate IRIs with the project's prefixes (kd:, kdo:, ...).
PREFIXED_FORMATS = (ox.RdfFormat.TURTLE, ox.RdfFormat.RDF_XML, ox.RdfFormat.JSON_LD)


def serialize_rdf(data, fmt: ox.RdfFormat, output=None):
    """Serialise triples or quads, using the project's prefixes where the format has them.
    Returns bytes when `output` is None, like pyoxigraph.serialize."""
    kwargs = {"prefixes": PREFIXES} if fmt in PREFIXED_FORMATS else {}
    return ox.serialize(data, output, format=fmt, **kwargs)


def cell(term: object) -> str:
    if term is None:
        return ""
    if isinstance(term, ox.NamedNode):
        return compact(term.value)
    if isinstance(term, ox.Literal):
        return term.value
    return str(term)


def table(headers: list[str], rows: list[list[str]], max_width: int = 60) -> str:
    """A plain-text table; long cells are cut with an ellipsis so rows stay on one line."""
    def clip(s: str) -> str:
        s = " ".join(s.split())
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    rows = [[clip(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(headers), line(["-" * w for w in widths]), *map(line, rows)]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def render(result: object, fmt: str = "table") -> str:
    """Render a pyoxigraph query result in the format named by `fmt`."""
    if fmt not in ALL_FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(ALL_FORMATS)}")
    if isinstance(result, ox.QueryBoolean):
        if fmt in ("json", "xml"):
            return result.serialize(format=SOLUTION_FORMATS[fmt]).decode()
        return "true" if bool(result) else "false"
    if isinstance(result, ox.QuerySolutions):
        if fmt in GRAPH_FORMATS:
            raise ValueError(f"format {fmt!r} is for CONSTRUCT/DESCRIBE; a SELECT gives table/json/xml/csv/tsv")
        if fmt == "table":
            headers = [v.value for v in result.variables]
            rows = [[cell(sol[h]) for h in headers] for sol in result]
            return table(headers, rows)
        return result.serialize(format=SOLUTION_FORMATS[fmt]).decode()
    if isinstance(result, (ox.QueryTriples, list)):  # a CONSTRUCT or DESCRIBE (kb.store.Triples)
        if fmt in SOLUTION_FORMATS:
            raise ValueError(f"format {fmt!r} is for SELECT/ASK; a CONSTRUCT gives turtle/ntriples/jsonld/rdfxml")
        rdf_format = GRAPH_FORMATS.get(fmt, ox.RdfFormat.TURTLE)
        return (serialize_rdf(list(result), rdf_format) or b"").decode()
    raise TypeError(f"not a query result: {type(result).__name__}")
