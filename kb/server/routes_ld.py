"""Linked Data: every IRI of the knowledge base resolves here, and the ontology downloads.

`https://w3id.org/kdkb/id/FitNets` is served at `/id/FitNets` (likewise /paper, /source,
/fact, /impl, /result). RDF clients get the resource's description in the format they
ask for; a browser is redirected (303 See Other) to the resource's page on the site.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..namespaces import BASE
from .negotiation import DEFAULT_GRAPH, GRAPH_TYPES, choose, wants_html
from .pool import PoolUnavailable, QueryTimeout
from .routes_sparql import client_of
from .service import Service, SparqlError

router = APIRouter(tags=["Linked Data"])

KINDS = {"id": "concepts", "paper": "papers", "source": "sources", "fact": "facts",
         "impl": "implementations", "result": "results"}
DOWNLOADS = {"ttl": "text/turtle", "nt": "application/n-triples", "nq": "application/n-quads",
             "rdf": "application/rdf+xml", "jsonld": "application/ld+json"}


def site_page(kind: str, name: str) -> str:
    """Where the generated site (kb/sitegen) shows a resource: concepts and papers have a page
    each; sources, facts and implementations an entry (an anchor) on their kind's page; a
    benchmark result, its arms, evaluations and run the entry of the result on /results/."""
    if kind in ("id", "paper"):
        return f"/{KINDS[kind]}/{name}/"
    if kind == "result":
        return "/results/#" + "--".join(name.split("--")[:2])
    return f"/{KINDS[kind]}/#{name}"


# Local names are restricted so that a path segment can never inject SPARQL syntax.
LOCAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,200}")  # always with fullmatch


def _describe(iri: str) -> str:
    """The resource's own triples plus the blank nodes reachable from it (author lists are
    rdf:Lists, chains of blank nodes): its Concise Bounded Description."""
    return f"""CONSTRUCT {{ <{iri}> ?p ?o . ?b ?p2 ?o2 }} WHERE {{
        {{ <{iri}> ?p ?o }}
        UNION
        {{ <{iri}> ?q ?start . FILTER(isBlank(?start))
           ?start (<urn:x:any>|!<urn:x:any>)* ?b . FILTER(isBlank(?b)) ?b ?p2 ?o2 }} }}"""


async def resolve(kind: str, name: str, request: Request) -> Response:
    if not LOCAL_NAME.fullmatch(name):
        return Response(f"no resource {kind}/{name!r}: names are letters, digits, '_', '.' and '-'\n",
                        status_code=404, media_type="text/plain")
    service: Service = request.app.state.service
    iri = f"{BASE}{kind}/{name}"
    accept = request.headers.get("accept")
    try:
        exists = await service.ask(f"ASK {{ {{ <{iri}> ?p ?o }} UNION {{ ?s ?p <{iri}> }} }}",
                                   client=client_of(request))
        if not exists:
            return Response(f"no resource {iri}\n", status_code=404, media_type="text/plain")
        if wants_html(accept):
            return RedirectResponse(site_page(kind, name), status_code=303, headers={"Vary": "Accept"})
        if choose(accept, list(GRAPH_TYPES), DEFAULT_GRAPH) is None:
            return Response("available as: " + ", ".join(GRAPH_TYPES) + "\n", status_code=406,
                            media_type="text/plain", headers={"Vary": "Accept"})
        status, ctype, body = await service.run(service.request(_describe(iri), accept=accept),
                                                client=client_of(request))
    except QueryTimeout:
        return Response("unavailable: the lookup ran past the time limit\n", status_code=503,
                        media_type="text/plain", headers={"Retry-After": "1"})
    except (PoolUnavailable, SparqlError) as exc:
        return Response(f"unavailable: {exc}\n", status_code=503, media_type="text/plain")
    return Response(body, status_code=status, headers={"Content-Type": ctype, "Vary": "Accept"})


def _resolver(kind: str):
    async def endpoint(name: str, request: Request) -> Response:
        return await resolve(kind, name, request)
    endpoint.__name__ = f"resolve_{kind}"
    return endpoint


for _kind in KINDS:
    router.add_api_route(
        f"/{_kind}/{{name}}", _resolver(_kind), methods=["GET"],
        summary=f"Resolve a {BASE}{_kind}/… IRI (content negotiation)",
        responses={303: {"description": "browser: see the resource's page"},
                   404: {"description": "no such resource"}, 406: {"description": "no acceptable format"}})


@router.get("/ontology", summary="The whole knowledge base (content negotiation)")
async def ontology(request: Request) -> Response:
    accept = request.headers.get("accept")
    if wants_html(accept):
        return RedirectResponse("/downloads/", status_code=303, headers={"Vary": "Accept"})
    media_type = choose(accept, list(DOWNLOADS.values()), "text/turtle")
    if media_type is None:
        return Response("available as: " + ", ".join(DOWNLOADS.values()) + "\n", status_code=406,
                        media_type="text/plain", headers={"Vary": "Accept"})
    ext = next(e for e, t in DOWNLOADS.items() if t == media_type)
    return _download(request, ext)


@router.get("/ontology.{ext}", summary="Download the whole knowledge base in one serialization")
async def ontology_file(ext: str, request: Request) -> Response:
    if ext not in DOWNLOADS:
        return Response(f"unknown format .{ext}: choose one of {', '.join(DOWNLOADS)}\n",
                        status_code=404, media_type="text/plain")
    return _download(request, ext)


def _download(request: Request, ext: str) -> Response:
    service: Service = request.app.state.service
    service.refresh()
    path = service.export_file(ext)
    if path is None:
        return Response("no build in service: run `kd build`\n", status_code=503, media_type="text/plain")
    return FileResponse(path, media_type=DOWNLOADS[ext], filename=f"kdkb.{ext}", headers={"Vary": "Accept"})
