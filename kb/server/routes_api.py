"""JSON API under /api. Every answer comes from SPARQL over the store: no second copy."""

from __future__ import annotations

from enum import Enum

import logging

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from ..namespaces import KD, KDO, KDP
from .pool import PoolUnavailable, QueryTimeout
from .routes_ld import LOCAL_NAME
from .routes_sparql import client_of
from .service import Service, SparqlError

log = logging.getLogger("kd.api")
router = APIRouter(prefix="/api", tags=["JSON API"])


class Role(str, Enum):
    technique = "technique"
    category = "category"
    related_term = "related-term"
    example_system = "example-system"
    application = "application"
    research_direction = "research-direction"


ROLE_CLASSES = {
    Role.technique: "Technique", Role.category: "Category", Role.related_term: "RelatedTerm",
    Role.example_system: "ExampleSystem", Role.application: "Application",
    Role.research_direction: "ResearchDirection",
}
CLASS_ROLES = {KDO + cls: role.value for role, cls in ROLE_CLASSES.items()}


class Link(BaseModel):
    iri: str
    label: str | None = None


class ConceptSummary(BaseModel):
    iri: str
    name: str
    label: str
    term_id: str | None = None
    role: str | None = None
    axes: list[str] = []


class Paper(BaseModel):
    iri: str
    key: str
    title: str
    year: str | None = None
    authors: list[str] = []
    arxiv_id: str | None = None
    doi: str | None = None
    url: str | None = None
    introduced: list[Link] = []


class Implementation(BaseModel):
    iri: str
    module: str
    concepts: list[Link] = []


class ConceptDetail(ConceptSummary):
    definition: str | None = None
    definition_source: str | None = None
    alt_labels: list[str] = []
    objective: str | None = None
    notes: list[str] = []
    parents: list[Link] = []
    children: list[Link] = []
    related: list[Link] = []
    introduced_in: list[Link] = []
    references: list[Link] = []
    implementation: list[Implementation] = []
    exact_match: list[str] = []


class ArmSummary(BaseModel):
    key: str
    label: str | None = None
    mean_accuracy: float
    sd_accuracy: float
    parameters: int | None = None


class Result(BaseModel):
    iri: str
    technique: str
    technique_label: str | None = None
    experiment: str
    claim: str
    claim_source: str | None = None
    dataset: str
    labelled_fraction: float | None = None
    teacher_accuracy: float | None = None
    treatment: str
    reference: str
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float | None = None
    verdict: str
    seeds: int
    arms: list[ArmSummary] = []
    git_commit: str | None = None
    torch_version: str | None = None
    cpu: str | None = None
    date: str | None = None
    plot: str | None = None


class Axis(BaseModel):
    iri: str
    name: str
    label: str
    definition: str | None = None
    categories: list[Link] = []


def _service(request: Request) -> Service:
    return request.app.state.service


async def _select(request: Request, query: str) -> list[dict[str, str]]:
    try:
        return await _service(request).select(query, client=client_of(request))
    except QueryTimeout:
        raise HTTPException(status_code=503, detail="the lookup ran past the time limit",
                            headers={"Retry-After": "1"}) from None
    except PoolUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    except SparqlError as exc:
        # Every query here is the API's own, built from checked names: a refusal is a bug.
        log.error("the API's own query was refused (%s): %s", exc.status, exc.message)
        raise HTTPException(status_code=500, detail="internal error: the API built a query the store refused") from exc


def _checked(name: str, what: str) -> str:
    if not LOCAL_NAME.fullmatch(name):
        raise HTTPException(status_code=404, detail=f"no {what} {name!r}: names are letters, digits, "
                                                    "'_', '.' and '-'")
    return name


async def _require(request: Request, name: str, what: str, pattern: str, listing: str) -> str:
    """The local name of an existing resource of a kind (`pattern` with ?x), or 404 naming it."""
    iri = KD + _checked(name, what)
    rows = await _select(request, f"SELECT ?x WHERE {{ BIND(<{iri}> AS ?x) {pattern} }} LIMIT 1")
    if not rows:
        raise HTTPException(status_code=404, detail=f"no {what} {name!r} (see {listing})")
    return name


def _links(rows: list[dict[str, str]], key: str = "x", label: str = "l") -> list[Link]:
    seen: dict[str, Link] = {}
    for r in rows:
        if key in r and r[key] not in seen:
            seen[r[key]] = Link(iri=r[key], label=r.get(label))
    return sorted(seen.values(), key=lambda link: (link.label or link.iri).lower())


@router.get("/concepts", response_model=list[ConceptSummary], summary="List concepts")
async def list_concepts(
    request: Request,
    axis: str | None = Query(None, description="axis local name, e.g. KnowledgeAxis, SchemeAxis"),
    role: Role | None = Query(None, description="only concepts of this role"),
    under: str | None = Query(None, description="only descendants of this concept, e.g. OnlineDistillation"),
) -> list[ConceptSummary]:
    filters = []
    if axis:
        await _require(request, axis, "axis", "?x a kdo:Axis", "/api/axes")
        filters.append(f"?c rdfs:subClassOf* ?ax_cat . ?ax_cat kdo:onAxis kd:{axis} .")
    if role:
        filters.append(f"?c a kdo:{ROLE_CLASSES[role]} .")
    if under:
        await _require(request, under, "concept", "?x a skos:Concept", "/api/concepts")
        filters.append(f"?c rdfs:subClassOf+ kd:{under} .")
    rows = await _select(request, f"""
        SELECT ?c ?label ?term ?cls ?axis WHERE {{
          ?c a skos:Concept ; skos:prefLabel ?label .
          {' '.join(filters)}
          OPTIONAL {{ ?c kdo:termId ?term }}
          OPTIONAL {{ ?c a ?cls . FILTER(STRSTARTS(STR(?cls), STR(kdo:))) }}
          OPTIONAL {{ ?c rdfs:subClassOf* ?cat . ?cat kdo:onAxis ?axis }}
        }}""")
    concepts: dict[str, ConceptSummary] = {}
    for r in rows:
        c = concepts.setdefault(r["c"], ConceptSummary(
            iri=r["c"], name=r["c"].rsplit("/", 1)[-1], label=r["label"], term_id=r.get("term")))
        if r.get("cls") in CLASS_ROLES:
            c.role = CLASS_ROLES[r["cls"]]
        if "axis" in r and r["axis"].rsplit("/", 1)[-1] not in c.axes:
            c.axes.append(r["axis"].rsplit("/", 1)[-1])
    for c in concepts.values():
        c.axes.sort()
    return sorted(concepts.values(), key=lambda c: c.label.lower())


@router.get("/concepts/{name}", response_model=ConceptDetail, summary="One concept with its neighbourhood")
async def get_concept(name: str, request: Request) -> ConceptDetail:
    iri = KD + _checked(name, "concept")
    base = await _select(request, f"""
        SELECT ?label ?term ?def ?src ?obj ?cls WHERE {{
          <{iri}> skos:prefLabel ?label .
          OPTIONAL {{ <{iri}> kdo:termId ?term }} OPTIONAL {{ <{iri}> skos:definition ?def }}
          OPTIONAL {{ <{iri}> kdo:definitionSource ?src }} OPTIONAL {{ <{iri}> kdo:objective ?obj }}
          OPTIONAL {{ <{iri}> a ?cls . FILTER(STRSTARTS(STR(?cls), STR(kdo:))) }} }}""")
    if not base:
        raise HTTPException(status_code=404, detail=f"no concept {iri}")

    async def linked(pattern: str) -> list[Link]:
        return _links(await _select(request, f"SELECT ?x ?l WHERE {{ {pattern} OPTIONAL {{ ?x skos:prefLabel|dcterms:title ?l }} }}"))

    detail = ConceptDetail(
        iri=iri, name=name, label=base[0]["label"], term_id=base[0].get("term"),
        definition=base[0].get("def"), definition_source=base[0].get("src"), objective=base[0].get("obj"),
        role=next((CLASS_ROLES[r["cls"]] for r in base if r.get("cls") in CLASS_ROLES), None),
        parents=await linked(f"<{iri}> skos:broader ?x ."),
        children=await linked(f"?x skos:broader <{iri}> ."),
        related=await linked(f"<{iri}> skos:related|^skos:related ?x ."),
        introduced_in=await linked(f"<{iri}> kdo:introducedIn ?x ."),
        references=await linked(f"<{iri}> dcterms:references ?x ."),
    )
    extra = await _select(request, f"""
        SELECT ?alt ?note ?match ?axis WHERE {{
          {{ <{iri}> skos:altLabel ?alt }} UNION {{ <{iri}> skos:scopeNote|skos:note ?note }}
          UNION {{ <{iri}> skos:exactMatch ?match }}
          UNION {{ <{iri}> rdfs:subClassOf* ?cat . ?cat kdo:onAxis ?axis }} }}""")
    detail.alt_labels = sorted({r["alt"] for r in extra if "alt" in r})
    detail.notes = sorted({r["note"] for r in extra if "note" in r})
    detail.exact_match = sorted({r["match"] for r in extra if "match" in r})
    detail.axes = sorted({r["axis"].rsplit("/", 1)[-1] for r in extra if "axis" in r})
    impl = await _select(request, f"SELECT ?i ?m WHERE {{ <{iri}> kdo:implementedBy ?i . ?i kdo:pythonModule ?m }}")
    detail.implementation = [Implementation(iri=r["i"], module=r["m"]) for r in impl]
    return detail


async def _papers(request: Request, where: str = "") -> list[Paper]:
    rows = await _select(request, f"""
        SELECT ?p ?title ?year ?arxiv ?doi ?url ?c ?cl WHERE {{
          ?p a/rdfs:subClassOf* bibo:Document ; dcterms:title ?title . {where}
          OPTIONAL {{ ?p dcterms:issued ?year }} OPTIONAL {{ ?p kdo:arxivId ?arxiv }}
          OPTIONAL {{ ?p bibo:doi ?doi }} OPTIONAL {{ ?p schema:url ?url }}
          OPTIONAL {{ ?c kdo:introducedIn ?p ; skos:prefLabel ?cl }} }}""")
    authors = await _select(request, f"""
        SELECT ?p ?name (COUNT(?mid) AS ?pos) WHERE {{
          ?p a/rdfs:subClassOf* bibo:Document ; bibo:authorList ?list . {where}
          ?list rdf:rest* ?mid . ?mid rdf:rest* ?node . ?node rdf:first ?name }}
        GROUP BY ?p ?node ?name ORDER BY ?p ?pos""")
    papers: dict[str, Paper] = {}
    for r in rows:
        p = papers.setdefault(r["p"], Paper(
            iri=r["p"], key=r["p"].removeprefix(KDP), title=r["title"], year=r.get("year"),
            arxiv_id=r.get("arxiv"), doi=r.get("doi"), url=r.get("url")))
        if "c" in r and all(link.iri != r["c"] for link in p.introduced):
            p.introduced.append(Link(iri=r["c"], label=r.get("cl")))
    for a in authors:
        if a["p"] in papers:
            papers[a["p"]].authors.append(a["name"])
    return sorted(papers.values(), key=lambda p: (p.year or "", p.key))


@router.get("/papers", response_model=list[Paper], summary="List papers, oldest first")
async def list_papers(request: Request) -> list[Paper]:
    return await _papers(request)


@router.get("/papers/{key}", response_model=Paper, summary="One paper and the concepts it introduced")
async def get_paper(key: str, request: Request) -> Paper:
    papers = await _papers(request, f"FILTER(?p = <{KDP}{_checked(key, 'paper')}>)")
    if not papers:
        raise HTTPException(status_code=404, detail=f"no paper {KDP}{key}")
    return papers[0]


@router.get("/implementations", response_model=list[Implementation], summary="Reference implementations")
async def list_implementations(request: Request) -> list[Implementation]:
    rows = await _select(request, """
        SELECT ?i ?m ?x ?l WHERE { ?x kdo:implementedBy ?i . ?i kdo:pythonModule ?m .
                                   OPTIONAL { ?x skos:prefLabel ?l } }""")
    impls: dict[str, Implementation] = {}
    for r in rows:
        impls.setdefault(r["i"], Implementation(iri=r["i"], module=r["m"])).concepts.append(
            Link(iri=r["x"], label=r.get("l")))
    return sorted(impls.values(), key=lambda i: i.module)


@router.get("/axes", response_model=list[Axis], summary="The taxonomy axes and their categories")
async def list_axes(request: Request) -> list[Axis]:
    rows = await _select(request, """
        SELECT ?a ?label ?def ?x ?l WHERE { ?a a kdo:Axis ; skos:prefLabel ?label .
          OPTIONAL { ?a skos:definition ?def }
          OPTIONAL { ?x kdo:onAxis ?a ; skos:prefLabel ?l } }""")
    axes: dict[str, Axis] = {}
    for r in rows:
        a = axes.setdefault(r["a"], Axis(iri=r["a"], name=r["a"].rsplit("/", 1)[-1],
                                         label=r["label"], definition=r.get("def")))
        if "x" in r:
            a.categories.append(Link(iri=r["x"], label=r.get("l")))
    return sorted(axes.values(), key=lambda a: a.label)


@router.get("/results", response_model=list[Result], summary="Measured benchmark results, one per claim tested")
async def list_results(
    request: Request,
    technique: str | None = Query(None, description="technique local name, e.g. SoftTargetDistillation"),
    verdict: str | None = Query(None, pattern="^(held|contradicted|inconclusive)$"),
) -> list[Result]:
    filters = ""
    if technique:
        await _require(request, technique, "technique", "?x a kdo:Technique", "/api/concepts?role=technique")
        filters += f"FILTER(?t = kd:{technique})"
    if verdict:
        filters += f'FILTER(?verdict = "{verdict}")'
    rows = await _select(request, f"""
        SELECT ?r ?t ?tl ?exp ?claim ?src ?ds ?frac ?tacc ?treat ?ref ?diff ?lo ?hi ?p ?verdict ?n
               ?commit ?torch ?cpu ?date ?plot WHERE {{
          ?r a kdo:BenchmarkResult ; kdo:technique ?t ; kdo:experimentKey ?exp ; kdo:claim ?claim ;
             kdo:dataset ?ds ; kdo:treatmentArm ?ta ; kdo:referenceArm ?ra ; kdo:meanDifference ?diff ;
             kdo:ciLow ?lo ; kdo:ciHigh ?hi ; kdo:verdict ?verdict ; kdo:nSeeds ?n .
          ?ta kdo:armKey ?treat . ?ra kdo:armKey ?ref . {filters}
          OPTIONAL {{ ?t skos:prefLabel ?tl }} OPTIONAL {{ ?r kdo:claimSource ?src }}
          OPTIONAL {{ ?r kdo:labelledFraction ?frac }} OPTIONAL {{ ?r kdo:teacherAccuracy ?tacc }}
          OPTIONAL {{ ?r kdo:pValue ?p }} OPTIONAL {{ ?r kdo:plot ?plot }}
          OPTIONAL {{ ?r prov:wasGeneratedBy ?run .
                      OPTIONAL {{ ?run kdo:gitCommit ?commit }} OPTIONAL {{ ?run kdo:torchVersion ?torch }}
                      OPTIONAL {{ ?run kdo:cpu ?cpu }} OPTIONAL {{ ?run dcterms:date ?date }} }}
        }} ORDER BY ?t ?exp""")
    arms = await _select(request, """
        SELECT ?r ?key ?label ?mean ?sd ?params WHERE {
          ?r a kdo:BenchmarkResult ; kdo:hasArm ?a . ?a kdo:armKey ?key ; kdo:meanAccuracy ?mean ;
          kdo:sdAccuracy ?sd . OPTIONAL { ?a rdfs:label ?label } OPTIONAL { ?a kdo:parameters ?params } }""")
    by_result: dict[str, list[ArmSummary]] = {}
    for a in arms:
        by_result.setdefault(a["r"], []).append(ArmSummary(
            key=a["key"], label=a.get("label"), mean_accuracy=float(a["mean"]), sd_accuracy=float(a["sd"]),
            parameters=int(a["params"]) if "params" in a else None))
    number = lambda r, k: float(r[k]) if k in r else None  # noqa: E731
    return [Result(
        iri=r["r"], technique=r["t"].rsplit("/", 1)[-1], technique_label=r.get("tl"), experiment=r["exp"],
        claim=r["claim"], claim_source=r.get("src"), dataset=r["ds"], labelled_fraction=number(r, "frac"),
        teacher_accuracy=number(r, "tacc"), treatment=r["treat"], reference=r["ref"],
        mean_difference=float(r["diff"]), ci_low=float(r["lo"]), ci_high=float(r["hi"]),
        p_value=number(r, "p"), verdict=r["verdict"], seeds=int(r["n"]), arms=by_result.get(r["r"], []),
        git_commit=r.get("commit"), torch_version=r.get("torch"), cpu=r.get("cpu"), date=r.get("date"),
        plot=r.get("plot")) for r in rows]


@router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
async def unknown_api_route(path: str) -> None:
    """Anything else under /api: a JSON 404, not the documentation site's HTML page."""
    raise HTTPException(status_code=404, detail=f"no API route /api/{path} (see /api/docs)")
