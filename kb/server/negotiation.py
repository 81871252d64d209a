"""HTTP content negotiation for SPARQL results and RDF (RFC 9110 `Accept` with q-values)."""

from __future__ import annotations

from dataclasses import dataclass

SOLUTION_TYPES = {  # SELECT and ASK
    "application/sparql-results+json": "json",
    "application/sparql-results+xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/json": "json",
}
GRAPH_TYPES = {  # CONSTRUCT and DESCRIBE, and Linked Data
    "text/turtle": "turtle",
    "application/n-triples": "ntriples",
    "application/ld+json": "jsonld",
    "application/rdf+xml": "rdfxml",
    "application/n-quads": "nquads",
}
DEFAULT_SOLUTIONS = "application/sparql-results+json"
DEFAULT_GRAPH = "text/turtle"


@dataclass(frozen=True)
class MediaRange:
    type: str
    q: float
    order: int

    def matches(self, media_type: str) -> bool:
        if self.type in ("*/*", "*"):
            return True
        if self.type.endswith("/*"):
            return media_type.startswith(self.type[:-1])
        return self.type == media_type


def parse_accept(header: str | None) -> list[MediaRange]:
    if not header or not header.strip():
        return [MediaRange("*/*", 1.0, 0)]
    ranges = []
    for order, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append(MediaRange(pieces[0].lower(), q, order))
    return ranges


def rank(header: str | None, offered: list[str], default: str) -> list[str]:
    """The offered types the client accepts, most preferred first.

    Exact matches beat `type/*`, which beats `*/*`; among equals the higher q wins, then
    the server's default, then the client's order. Types with q=0 are excluded.
    """
    ranges = parse_accept(header)
    scored = []
    for media_type in offered:
        best = None
        for r in ranges:
            if not r.matches(media_type):
                continue
            specificity = 2 if r.type == media_type else (1 if r.type.endswith("/*") else 0)
            key = (specificity, r.q, -r.order)
            if best is None or key > best:
                best = key
        if best is not None and best[1] > 0:
            specificity, q, order = best
            scored.append(((q, specificity, media_type == default, order), media_type))
    scored.sort(key=lambda item: item[0], reverse=True)
    return [media_type for _, media_type in scored]


def choose(header: str | None, offered: list[str], default: str) -> str | None:
    ranked = rank(header, offered, default)
    return ranked[0] if ranked else None


def wants_html(header: str | None) -> bool:
    """A browser: text/html explicitly preferred over RDF and SPARQL result types."""
    if not header or "text/html" not in header:
        return False
    offered = ["text/html", *GRAPH_TYPES, *SOLUTION_TYPES]
    return choose(header, offered, "text/html") == "text/html"
