"""Named SPARQL queries that the command line, the API and the site share."""

from __future__ import annotations

from .store import KnowledgeBase

COUNTS = """
SELECT
  (COUNT(DISTINCT ?concept) AS ?concepts)
  (COUNT(DISTINCT ?technique) AS ?techniques)
  (COUNT(DISTINCT ?category) AS ?categories)
  (COUNT(DISTINCT ?paper) AS ?papers)
  (COUNT(DISTINCT ?fact) AS ?facts)
WHERE {
  { ?concept a skos:Concept }
  UNION { ?technique a kdo:Technique }
  UNION { ?category a kdo:Category }
  UNION { ?paper a bibo:AcademicArticle }
  UNION { ?fact a/rdfs:subClassOf* kdo:Fact }
}
"""


def counts(base: KnowledgeBase) -> dict[str, int]:
    row = base.select(COUNTS)[0]
    return {k: int(row.get(k, 0)) for k in ("concepts", "techniques", "categories", "papers", "facts")} | {
        "triples": len(base)
    }
