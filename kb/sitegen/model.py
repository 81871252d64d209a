"""What the site shows, read from the store with SPARQL.

Everything on the site comes from here: concepts, axes, papers, sources, facts,
implementations and benchmark results. Each reader is one or two SPARQL queries over the
store in service; nothing is listed twice in code.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..budget import budget_binds
from ..namespaces import PREFIXES
from ..store import KnowledgeBase

SKOS, RDF, RDFS, KDO = PREFIXES["skos"], PREFIXES["rdf"], PREFIXES["rdfs"], PREFIXES["kdo"]
DCT, SCHEMA, BIBO = PREFIXES["dcterms"], PREFIXES["schema"], PREFIXES["bibo"]

# The role classes of a concept, in the order the site lists them.
ROLES: dict[str, tuple[str, str]] = {
    "Technique": ("Technique", "Techniques"),
    "Category": ("Category", "Categories"),
    "RelatedTerm": ("Related term", "Related terms"),
    "ExampleSystem": ("Example system", "Example systems"),
    "Application": ("Application area", "Application areas"),
    "ResearchDirection": ("Research direction", "Research directions"),
}
FACT_KINDS: dict[str, str] = {
    "Advantage": "Advantages", "Limitation": "Limitations", "HistoricalEvent": "History",
    "Figure": "Figures", "Fact": "Notes on the sources",
}


def local(iri: str) -> str:
    """The last path segment or fragment of an IRI."""
    return iri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


@dataclass
class Concept:
    iri: str
    name: str
    label: str = ""
    roles: list[str] = field(default_factory=list)
    term_id: str = ""
    definition: str = ""
    definition_source: str = ""
    alt_labels: list[str] = field(default_factory=list)
    scope_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    objective: str = ""
    parents: list[str] = field(default_factory=list)  # skos:broader (derived from subClassOf)
    children: list[str] = field(default_factory=list)
    axes: list[str] = field(default_factory=list)  # own (categories) and inherited
    own_axes: list[str] = field(default_factory=list)
    related: list[str] = field(default_factory=list)
    introduced_in: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # dcterms:source
    exact_match: list[str] = field(default_factory=list)
    see_also: list[str] = field(default_factory=list)
    applied_in: list[str] = field(default_factory=list)
    example_of: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    used_by: list[str] = field(default_factory=list)  # concepts applied in this application area
    implementations: list[str] = field(default_factory=list)  # kdi: IRIs
    top_concept: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # status, source domain, public access
    facts: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    siblings: list[str] = field(default_factory=list)  # other children of its parents

    @property
    def role(self) -> str:
        return self.roles[0] if self.roles else "Concept"

    @property
    def is_technique(self) -> bool:
        return "Technique" in self.roles



@dataclass
class Axis:
    iri: str
    name: str
    label: str
    definition: str
    definition_source: str
    categories: list[str]  # concepts directly on the axis
    members: list[str]  # every concept on the axis (categories and their descendants)


@dataclass
class Paper:
    iri: str
    key: str
    title: str
    authors: list[str]
    year: str
    arxiv: str = ""
    doi: str = ""
    venue: str = ""
    url: str = ""
    comments: list[str] = field(default_factory=list)
    see_also: list[str] = field(default_factory=list)
    kind: str = "article"
    introduced: list[str] = field(default_factory=list)
    referenced_by: list[str] = field(default_factory=list)  # concepts citing it (dcterms:references)
    defines: list[str] = field(default_factory=list)  # concepts whose definition it sources
    cited_by_sources: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        first = self.authors[0].split()[-1] if self.authors else self.key
        more = " et al." if len(self.authors) > 2 else (f" & {self.authors[1].split()[-1]}" if len(self.authors) == 2 else "")
        return f"{first}{more} {self.year}".strip()

    @property
    def links(self) -> list[tuple[str, str]]:
        out = []
        if self.arxiv:
            out.append((f"arXiv:{self.arxiv}", f"https://arxiv.org/abs/{self.arxiv}"))
        if self.doi:
            out.append((f"doi:{self.doi}", f"https://doi.org/{self.doi}"))
        if self.url and not any(self.url == u for _, u in out) and not (self.arxiv and "arxiv.org" in self.url) \
                and not (self.doi and "doi.org" in self.url):
            out.append(("web", self.url))
        return out


@dataclass
class Source:
    iri: str
    key: str
    title: str
    url: str = ""
    publisher: str = ""
    date: str = ""
    description: str = ""
    comments: list[str] = field(default_factory=list)
    identifier: str = ""
    defines: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)


@dataclass
class Fact:
    iri: str
    key: str
    kind: str
    label: str
    about: list[str]
    sources: list[str]
    references: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    date: str = ""
    value: str = ""
    unit: str = ""


@dataclass
class Implementation:
    iri: str
    name: str
    label: str
    module: str
    concepts: list[str]  # every concept linked with kdo:implementedBy
    technique: str | None  # the technique concept it realises (its page shows the source)


@dataclass
class Arm:
    iri: str
    key: str
    label: str
    mean: float
    sd: float
    ece: float | None = None
    agreement: float | None = None
    parameters: int | None = None
    seconds: float | None = None
    accuracies: list[tuple[int, float]] = field(default_factory=list)
    chosen_epochs: list[int] = field(default_factory=list)  # per seed, chosen on validation


@dataclass
class Result:
    iri: str
    key: str  # <module>--<experiment>
    title: str
    technique: str
    implementation: str
    experiment: str
    claim: str
    claim_source: str
    dataset: str
    labelled_fraction: float | None
    teacher_model: str
    student_model: str
    teacher_accuracy: float
    teacher_parameters: int | None
    epochs: int | None
    seeds: str
    n_seeds: int
    note: str
    plot: str
    treatment: str
    reference: str
    mean_difference: float
    sd_difference: float | None
    ci_low: float
    ci_high: float
    p_value: float | None
    verdict: str
    arms: list[Arm]
    run: dict[str, str]
    sesoi: float | None = None
    sesoi_reason: str = ""
    equivalence_p_value: float | None = None
    adjusted_p_value: float | None = None
    adjusted_equivalence_p_value: float | None = None
    family_size: int | None = None
    seed_plan: str = ""
    minimal_detectable_effect: float | None = None
    selection: str = ""
    epoch_selection: str = ""
    rerun_reason: str = ""
    interpretation: str = ""
    metric: str = "accuracy"  # what the scores measure (kdo:metric); differences are in points of it
    teacher_comparable: bool = True  # False: the teacher's score is in another unit (its own tokens)

    @property
    def held(self) -> bool:
        return self.verdict == "held"

    @property
    def bound_arms(self) -> list[Arm]:
        """Arms whose largest budget bound (kb.budget): they may still have been improving."""
        if not self.epochs:
            return []
        return [a for a in self.arms if budget_binds(a.chosen_epochs, self.epochs)]

    def arm(self, iri_or_key: str) -> Arm | None:
        return next((a for a in self.arms if iri_or_key in (a.iri, a.key)), None)


@dataclass
class RegimePoint:
    iri: str
    axes: list[str]  # the curves it lies on: "labelled fraction", "student size"
    fraction: float
    student_model: str
    parameters: int
    epochs: int | None
    n_seeds: int
    accuracy: float  # the technique's mean test accuracy
    baseline: float  # the hard-label student's, same setting
    mean_difference: float
    sd_difference: float | None
    ci_low: float
    ci_high: float
    chosen_epochs: list[int] = field(default_factory=list)  # the technique's, per seed
    baseline_epochs: list[int] = field(default_factory=list)  # the hard-label student's

    @property
    def budget_bound(self) -> bool:
        """Whether either arm's largest budget bound (kb.budget)."""
        return bool(self.epochs) and (budget_binds(self.chosen_epochs, self.epochs)
                                      or budget_binds(self.baseline_epochs, self.epochs))


@dataclass
class RegimeCurve:
    """A technique's gain over hard labels across labelled fractions and student sizes."""
    iri: str
    technique: str
    implementation: str
    arm_label: str
    dataset: str
    teacher_model: str
    plot: str
    points: list[RegimePoint]
    run: dict[str, str] = field(default_factory=dict)

    def on(self, axis: str) -> list[RegimePoint]:
        """The points of one curve, in the order of its x axis."""
        key = (lambda p: p.fraction) if axis == "labelled fraction" else (lambda p: p.parameters)
        return sorted((p for p in self.points if axis in p.axes), key=key)


@dataclass
class Model:
    """Everything the site shows, keyed by IRI."""
    concepts: dict[str, Concept]
    axes: dict[str, Axis]
    papers: dict[str, Paper]
    sources: dict[str, Source]
    facts: dict[str, Fact]
    implementations: dict[str, Implementation]
    results: dict[str, Result]
    labels: dict[str, str]
    ontology: dict[str, str]
    counts: dict[str, int]
    regimes: dict[str, RegimeCurve] = field(default_factory=dict)  # keyed by technique IRI

    def label(self, iri: str) -> str:
        return self.labels.get(iri) or local(iri)

    def by_role(self, role: str) -> list[Concept]:
        return sorted((c for c in self.concepts.values() if c.role == role), key=lambda c: c.label.lower())

    def sorted_concepts(self, iris) -> list[Concept]:
        return sorted((self.concepts[i] for i in set(iris) if i in self.concepts), key=lambda c: c.label.lower())


# ---------------------------------------------------------------- queries
CONCEPT_TRIPLES = """
SELECT ?c ?p ?o WHERE { ?c a skos:Concept ; ?p ?o . FILTER(!isBlank(?o)) }
"""

CONCEPT_AXES = """
SELECT DISTINCT ?c ?axis WHERE { ?c a skos:Concept ; skos:broader* ?category . ?category kdo:onAxis ?axis }
"""

LABELS = """
SELECT ?s ?label WHERE {
  { ?s skos:prefLabel ?label } UNION { ?s dcterms:title ?label } UNION { ?s rdfs:label ?label }
}
"""

AXES = """
SELECT ?axis ?label ?definition ?source WHERE {
  ?axis a kdo:Axis ; skos:prefLabel ?label .
  OPTIONAL { ?axis skos:definition ?definition } OPTIONAL { ?axis kdo:definitionSource ?source }
}
"""

AXIS_MEMBERS = """
SELECT DISTINCT ?axis ?member WHERE { ?category kdo:onAxis ?axis . ?member skos:broader* ?category }
"""

PAPERS = """
SELECT ?p ?type ?prop ?o WHERE {
  ?p a ?type . ?type rdfs:subClassOf* bibo:Document .
  ?p ?prop ?o . FILTER(!isBlank(?o))
}
"""

AUTHORS = """
SELECT ?p ?author (COUNT(?mid) AS ?position) WHERE {
  ?p bibo:authorList ?list . ?list rdf:rest* ?mid . ?mid rdf:rest* ?node . ?node rdf:first ?author
} GROUP BY ?p ?node ?author
"""

SOURCES = """
SELECT ?s ?prop ?o WHERE { ?s a schema:WebPage ; ?prop ?o }
"""

FACTS = """
SELECT ?f ?type ?prop ?o WHERE { ?f a ?type . ?type rdfs:subClassOf* kdo:Fact . ?f ?prop ?o }
"""

IMPLEMENTATIONS = """
SELECT ?impl ?label ?module ?concept ?isTechnique WHERE {
  ?impl a mls:Implementation ; kdo:pythonModule ?module .
  OPTIONAL { ?impl rdfs:label ?label }
  OPTIONAL { ?concept kdo:implementedBy ?impl .
             BIND(EXISTS { ?concept a kdo:Technique } AS ?isTechnique) }
}
"""

RESULTS = """
SELECT ?r ?prop ?o WHERE { ?r a kdo:BenchmarkResult ; ?prop ?o }
"""

ARMS = """
SELECT ?r ?arm ?prop ?o WHERE { ?r a kdo:BenchmarkResult ; kdo:hasArm ?arm . ?arm ?prop ?o }
"""

REGIME_CURVES = """
SELECT ?curve ?prop ?o WHERE { ?curve a kdo:RegimeCurve ; ?prop ?o }
"""

REGIME_POINTS = """
SELECT ?curve ?point ?prop ?o WHERE { ?curve a kdo:RegimeCurve ; kdo:hasPoint ?point . ?point ?prop ?o }
"""

REGIME_RUNS = """
SELECT ?curve ?prop ?o WHERE { ?curve a kdo:RegimeCurve ; prov:wasGeneratedBy ?run . ?run ?prop ?o }
"""

SEED_SCORES = """
SELECT ?arm ?seed ?value WHERE { ?arm a kdo:ArmResult ; kdo:evaluation ?e . ?e kdo:seed ?seed ; mls:hasValue ?value }
"""

RUNS = """
SELECT ?r ?prop ?o WHERE { ?r a kdo:BenchmarkResult ; prov:wasGeneratedBy ?run . ?run ?prop ?o }
"""

ONTOLOGY = """
SELECT ?prop ?o WHERE { <https://w3id.org/kdkb/ontology> ?prop ?o . FILTER(isLiteral(?o)) }
"""

# The counts the site is checked against (one concept page and one paper page each).
PAGE_COUNTS = """
SELECT (COUNT(DISTINCT ?concept) AS ?concepts) (COUNT(DISTINCT ?paper) AS ?papers) WHERE {
  { ?concept a skos:Concept } UNION { ?paper a ?type . ?type rdfs:subClassOf* bibo:Document }
}
"""


def _grouped(rows, key: str, prop: str = "prop", obj: str = "o") -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if obj in r:
            values = out[r[key]][r[prop]]
            if r[obj] not in values:
                values.append(r[obj])
    return out


def _members(rows, parent: str, child: str) -> dict[str, list[str]]:
    """parent -> its children in the order first seen, each once (e.g. a result's arms)."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r[child] not in out[r[parent]]:
            out[r[parent]].append(r[child])
    return out


def _run_values(props: dict[str, list]) -> dict[str, str]:
    """A run's literal properties by local name (gitCommit, cpu, ...); links left out."""
    return {local(k): str(vals[0]) for k, vals in props.items() if vals and not str(vals[0]).startswith("http")}


def _first(values: dict[str, list], prop: str, default=""):
    v = values.get(prop)
    return v[0] if v else default


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def load(base: KnowledgeBase) -> Model:
    labels: dict[str, str] = {}
    for r in base.select(LABELS):
        labels.setdefault(r["s"], r["label"])

    concepts = _concepts(base)
    axes = _axes(base, concepts)
    papers = _papers(base)
    sources = _sources(base)
    facts = _facts(base)
    implementations = _implementations(base)
    results = _results(base)
    regimes = _regimes(base)

    # Inverse links, computed once from what was read.
    for c in concepts.values():
        for p in c.introduced_in:
            if p in papers:
                papers[p].introduced.append(c.iri)
        for p in c.references:
            if p in papers:
                papers[p].referenced_by.append(c.iri)
        if c.definition_source in papers:
            papers[c.definition_source].defines.append(c.iri)
        if c.definition_source in sources:
            sources[c.definition_source].defines.append(c.iri)
        for t in c.example_of:
            if t in concepts:
                concepts[t].examples.append(c.iri)
        for a in c.applied_in:
            if a in concepts:
                concepts[a].used_by.append(c.iri)
        for other in c.related:
            if other in concepts and c.iri not in concepts[other].related:
                concepts[other].related.append(c.iri)
    for c in concepts.values():
        sib = {s for p in c.parents if p in concepts for s in concepts[p].children} - {c.iri}
        c.siblings = sorted(sib, key=lambda i: labels.get(i, i).lower())
    for f in facts.values():
        for a in f.about:
            if a in concepts:
                concepts[a].facts.append(f.iri)
        for s in f.sources + f.references:
            if s in sources and f.iri not in sources[s].facts:
                sources[s].facts.append(f.iri)
            if s in papers and f.iri not in papers[s].facts:
                papers[s].facts.append(f.iri)
    for r in base.select("SELECT ?s ?p WHERE { ?s a schema:WebPage ; dcterms:references ?p }"):
        if r["p"] in papers:
            papers[r["p"]].cited_by_sources.append(r["s"])
    for res in results.values():
        if res.technique in concepts:
            concepts[res.technique].results.append(res.iri)

    ontology = {local(r["prop"]): r["o"] for r in base.select(ONTOLOGY)}
    counts = {k: int(v) for k, v in base.select(PAGE_COUNTS)[0].items()}
    return Model(concepts, axes, papers, sources, facts, implementations, results, labels, ontology, counts,
                 regimes)


def _concepts(base: KnowledgeBase) -> dict[str, Concept]:
    grouped = _grouped(base.select(CONCEPT_TRIPLES), "c", "p", "o")
    concepts: dict[str, Concept] = {}
    role_order = list(ROLES)
    for iri, v in grouped.items():
        types = [local(t) for t in v.get(RDF + "type", []) if t.startswith(KDO)]
        c = Concept(
            iri=iri, name=local(iri), label=_first(v, SKOS + "prefLabel", local(iri)),
            roles=sorted((t for t in types if t in ROLES), key=role_order.index),
            term_id=_first(v, KDO + "termId"), definition=_first(v, SKOS + "definition"),
            definition_source=_first(v, KDO + "definitionSource"),
            alt_labels=sorted(v.get(SKOS + "altLabel", []), key=str.lower),
            scope_notes=v.get(SKOS + "scopeNote", []), notes=v.get(SKOS + "note", []),
            objective=_first(v, KDO + "objective"),
            parents=v.get(SKOS + "broader", []), children=v.get(SKOS + "narrower", []),
            own_axes=v.get(KDO + "onAxis", []), related=list(v.get(SKOS + "related", [])),
            introduced_in=v.get(KDO + "introducedIn", []),
            references=[r for r in v.get(DCT + "references", []) if r not in v.get(KDO + "introducedIn", [])],
            sources=v.get(DCT + "source", []), exact_match=v.get(SKOS + "exactMatch", []),
            see_also=v.get(RDFS + "seeAlso", []), applied_in=v.get(KDO + "appliedIn", []),
            example_of=v.get(KDO + "exampleOf", []), implementations=v.get(KDO + "implementedBy", []),
            top_concept=bool(v.get(SKOS + "topConceptOf")),
        )
        for prop, name in (("status", "status"), ("sourceDomain", "source domain"), ("publicAccess", "public access")):
            if v.get(KDO + prop):
                value = v[KDO + prop][0]
                c.extra[name] = str(value).lower() if isinstance(value, bool) else str(value)
        concepts[iri] = c
    for r in base.select(CONCEPT_AXES):
        if r["c"] in concepts and r["axis"] not in concepts[r["c"]].axes:
            concepts[r["c"]].axes.append(r["axis"])
    return concepts


def _axes(base: KnowledgeBase, concepts: dict[str, Concept]) -> dict[str, Axis]:
    members: dict[str, set[str]] = defaultdict(set)
    for r in base.select(AXIS_MEMBERS):
        members[r["axis"]].add(r["member"])
    axes = {}
    for r in base.select(AXES):
        iri = r["axis"]
        cats = [c.iri for c in concepts.values() if iri in c.own_axes]
        axes[iri] = Axis(iri, local(iri), r["label"], r.get("definition", ""), r.get("source", ""),
                         sorted(cats, key=lambda i: concepts[i].label.lower()),
                         sorted(members[iri], key=lambda i: concepts[i].label.lower() if i in concepts else i))
    # The order in which the taxonomy presents its axes.
    order = ["KnowledgeAxis", "SchemeAxis", "AlgorithmAxis", "LanguageModelAxis", "DatasetDistillationAxis"]
    return dict(sorted(axes.items(), key=lambda kv: (order.index(kv[1].name) if kv[1].name in order else 99, kv[1].label)))


def _papers(base: KnowledgeBase) -> dict[str, Paper]:
    rows = base.select(PAPERS)
    grouped = _grouped(rows, "p", "prop", "o")
    kinds = {r["p"]: local(r["type"]) for r in rows if r["type"].startswith(BIBO)}
    authors: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in base.select(AUTHORS):
        authors[r["p"]].append((int(r["position"]), r["author"]))
    papers = {}
    for iri, v in grouped.items():
        papers[iri] = Paper(
            iri=iri, key=local(iri), title=_first(v, DCT + "title", local(iri)),
            authors=[a for _, a in sorted(authors.get(iri, []))], year=str(_first(v, DCT + "issued")),
            arxiv=_first(v, KDO + "arxivId"), doi=_first(v, BIBO + "doi"), venue=_first(v, DCT + "isPartOf"),
            url=_first(v, SCHEMA + "url"), comments=v.get(RDFS + "comment", []),
            see_also=v.get(RDFS + "seeAlso", []),
            kind={"AcademicArticle": "article", "Report": "report"}.get(kinds.get(iri, ""), "document"),
        )
    return dict(sorted(papers.items(), key=lambda kv: (kv[1].year, kv[1].key)))


def _sources(base: KnowledgeBase) -> dict[str, Source]:
    grouped = _grouped(base.select(SOURCES), "s")
    out = {}
    for iri, v in grouped.items():
        out[iri] = Source(
            iri=iri, key=local(iri), title=_first(v, DCT + "title", local(iri)), url=_first(v, SCHEMA + "url"),
            publisher=_first(v, DCT + "publisher") or _first(v, DCT + "creator"),
            date=str(_first(v, DCT + "issued") or _first(v, DCT + "modified")),
            description=_first(v, DCT + "description"), comments=v.get(RDFS + "comment", []),
            identifier=_first(v, DCT + "identifier"),
        )
    return dict(sorted(out.items(), key=lambda kv: kv[1].title.lower()))


def _facts(base: KnowledgeBase) -> dict[str, Fact]:
    rows = base.select(FACTS)
    grouped = _grouped(rows, "f")
    kinds: dict[str, str] = {}
    for r in rows:  # the most specific kind: a subclass of kdo:Fact wins over kdo:Fact itself
        k = local(r["type"])
        if k in FACT_KINDS and (kinds.get(r["f"]) in (None, "Fact")):
            kinds[r["f"]] = k
    out = {}
    for iri, v in grouped.items():
        out[iri] = Fact(
            iri=iri, key=local(iri), kind=kinds.get(iri, "Fact"), label=_first(v, RDFS + "label", local(iri)),
            about=v.get(KDO + "about", []), sources=v.get(DCT + "source", []),
            references=v.get(DCT + "references", []), comments=v.get(RDFS + "comment", []),
            date=str(_first(v, DCT + "date")), value=str(_first(v, SCHEMA + "value")),
            unit=_first(v, SCHEMA + "unitText"),
        )
    return dict(sorted(out.items(), key=lambda kv: (list(FACT_KINDS).index(kv[1].kind), kv[1].date, kv[1].key)))


def _implementations(base: KnowledgeBase) -> dict[str, Implementation]:
    out: dict[str, Implementation] = {}
    for r in base.select(IMPLEMENTATIONS):
        impl = out.setdefault(r["impl"], Implementation(r["impl"], local(r["impl"]), r.get("label", local(r["impl"])),
                                                        r["module"], [], None))
        if "concept" in r:
            if r["concept"] not in impl.concepts:
                impl.concepts.append(r["concept"])
            if r.get("isTechnique") and impl.technique is None:
                impl.technique = r["concept"]
    return dict(sorted(out.items()))


def _results(base: KnowledgeBase) -> dict[str, Result]:
    grouped = _grouped(base.select(RESULTS), "r")
    arms_rows = base.select(ARMS)
    arm_props = _grouped(arms_rows, "arm")
    arms_of = _members(arms_rows, "r", "arm")
    scores: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in base.select(SEED_SCORES):
        scores[r["arm"]].append((int(r["seed"]), float(r["value"])))
    runs = _grouped(base.select(RUNS), "r")
    out = {}
    for iri, v in grouped.items():
        arms = []
        for a in arms_of.get(iri, []):
            p = arm_props[a]
            arms.append(Arm(
                iri=a, key=_first(p, KDO + "armKey", local(a)), label=_first(p, RDFS + "label"),
                mean=float(_first(p, KDO + "meanAccuracy", 0.0)), sd=float(_first(p, KDO + "sdAccuracy", 0.0)),
                ece=_float(_first(p, KDO + "meanECE", None)), agreement=_float(_first(p, KDO + "meanTeacherAgreement", None)),
                parameters=_int(_first(p, KDO + "parameters", None)), seconds=_float(_first(p, KDO + "trainSeconds", None)),
                accuracies=sorted(scores.get(a, [])),
                chosen_epochs=[int(e) for e in str(_first(p, KDO + "chosenEpochs", "")).split()],
            ))
        treatment, reference = _first(v, KDO + "treatmentArm"), _first(v, KDO + "referenceArm")
        # the reference arm first, then the others in a stable order
        arms.sort(key=lambda a: (a.iri != reference, a.iri == treatment, a.key))
        run = _run_values(runs.get(iri, {}))
        out[iri] = Result(
            iri=iri, key=local(iri), title=_first(v, RDFS + "label", local(iri)),
            technique=_first(v, KDO + "technique"), implementation=_first(v, KDO + "implementation"),
            experiment=_first(v, KDO + "experimentKey", local(iri)), claim=_first(v, KDO + "claim"),
            claim_source=_first(v, KDO + "claimSource"), dataset=_first(v, KDO + "dataset"),
            labelled_fraction=_float(_first(v, KDO + "labelledFraction", None)),
            teacher_model=_first(v, KDO + "teacherModel"), student_model=_first(v, KDO + "studentModel"),
            teacher_accuracy=float(_first(v, KDO + "teacherAccuracy", 0.0)),
            teacher_parameters=_int(_first(v, KDO + "teacherParameters", None)),
            epochs=_int(_first(v, KDO + "studentEpochs", None)), seeds=str(_first(v, KDO + "seeds")),
            n_seeds=int(_first(v, KDO + "nSeeds", 0)), note=_first(v, SKOS + "note"), plot=_first(v, KDO + "plot"),
            treatment=treatment, reference=reference,
            mean_difference=float(_first(v, KDO + "meanDifference", 0.0)),
            sd_difference=_float(_first(v, KDO + "sdDifference", None)),
            ci_low=float(_first(v, KDO + "ciLow", 0.0)), ci_high=float(_first(v, KDO + "ciHigh", 0.0)),
            p_value=_float(_first(v, KDO + "pValue", None)), verdict=str(_first(v, KDO + "verdict", "inconclusive")),
            arms=arms, run=run,
            sesoi=_float(_first(v, KDO + "sesoi", None)), sesoi_reason=_first(v, KDO + "sesoiReason") or "",
            equivalence_p_value=_float(_first(v, KDO + "equivalencePValue", None)),
            adjusted_p_value=_float(_first(v, KDO + "adjustedPValue", None)),
            adjusted_equivalence_p_value=_float(_first(v, KDO + "adjustedEquivalencePValue", None)),
            family_size=_int(_first(v, KDO + "familySize", None)), seed_plan=_first(v, KDO + "seedPlan") or "",
            minimal_detectable_effect=_float(_first(v, KDO + "minimalDetectableEffect", None)),
            selection=_first(v, KDO + "selectionProcedure") or "", epoch_selection=_first(v, KDO + "epochSelection") or "",
            rerun_reason=_first(v, KDO + "rerunReason") or "",
            interpretation=_first(v, KDO + "interpretation") or "",
            metric=_first(v, KDO + "metric") or "accuracy",
            teacher_comparable=str(_first(v, KDO + "teacherComparable", "true")).lower() != "false",
        )
    return dict(sorted(out.items(), key=lambda kv: kv[1].key))


def _regimes(base: KnowledgeBase) -> dict[str, RegimeCurve]:
    curves = _grouped(base.select(REGIME_CURVES), "curve")
    point_rows = base.select(REGIME_POINTS)
    point_props = _grouped(point_rows, "point")
    points_of = _members(point_rows, "curve", "point")
    runs = _grouped(base.select(REGIME_RUNS), "curve")
    out = {}
    for iri, v in curves.items():
        points = []
        for p_iri in points_of.get(iri, []):
            p = point_props[p_iri]
            points.append(RegimePoint(
                iri=p_iri, axes=sorted(str(a) for a in p.get(KDO + "regimeAxis", [])),
                fraction=float(_first(p, KDO + "labelledFraction", 1.0)), student_model=_first(p, KDO + "studentModel"),
                parameters=int(_first(p, KDO + "parameters", 0)), epochs=_int(_first(p, KDO + "studentEpochs", None)),
                n_seeds=int(_first(p, KDO + "nSeeds", 0)), accuracy=float(_first(p, KDO + "meanAccuracy", 0.0)),
                baseline=float(_first(p, KDO + "baselineAccuracy", 0.0)),
                mean_difference=float(_first(p, KDO + "meanDifference", 0.0)),
                sd_difference=_float(_first(p, KDO + "sdDifference", None)),
                ci_low=float(_first(p, KDO + "ciLow", 0.0)), ci_high=float(_first(p, KDO + "ciHigh", 0.0)),
                chosen_epochs=[int(e) for e in str(_first(p, KDO + "chosenEpochs", "")).split()],
                baseline_epochs=[int(e) for e in str(_first(p, KDO + "baselineChosenEpochs", "")).split()],
            ))
        technique = _first(v, KDO + "technique")
        run = _run_values(runs.get(iri, {}))
        out[technique] = RegimeCurve(
            iri=iri, technique=technique, implementation=_first(v, KDO + "implementation"),
            arm_label=_first(v, KDO + "armLabel"), dataset=_first(v, KDO + "dataset"),
            teacher_model=_first(v, KDO + "teacherModel"), plot=_first(v, KDO + "plot"), points=points, run=run)
    return out


__all__ = ["Model", "Concept", "Axis", "Paper", "Source", "Fact", "Implementation", "Result", "Arm", "RegimeCurve", "RegimePoint", "load",
           "local", "ROLES", "FACT_KINDS", "PAGE_COUNTS"]
