"""SPARQL 1.1 Protocol at /sparql: query by GET, POST form and POST sparql-query; update
only with the operator's token; a service description and a query editor for browsers."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from ..namespaces import sparql_prologue
from .guard import QUERY_FORMS, UPDATE_FORMS, ForbiddenQuery, check
from .negotiation import choose, wants_html
from .pool import PoolUnavailable, QueryTimeout
from .service import Service

router = APIRouter(tags=["SPARQL"])

FORM = "application/x-www-form-urlencoded"
SPARQL_QUERY = "application/sparql-query"
SPARQL_UPDATE = "application/sparql-update"


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message.rstrip() + "\n", status_code=status, media_type="text/plain", headers=headers)


def _service(request: Request) -> Service:
    return request.app.state.service


async def _params(request: Request) -> dict[str, list[str]]:
    """Query-string parameters, merged with form fields for a form-encoded POST."""
    params = parse_qs(request.url.query, keep_blank_values=True)
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = (await request.body()).decode("utf-8", errors="replace")
        if ctype == FORM:
            for key, values in parse_qs(body, keep_blank_values=True).items():
                params.setdefault(key, []).extend(values)
        elif ctype == SPARQL_QUERY:
            params.setdefault("query", []).append(body)
        elif ctype == SPARQL_UPDATE:
            params.setdefault("update", []).append(body)
        else:
            raise _Unsupported(ctype)
    return params


class _Unsupported(Exception):
    pass


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ValueError(f"exactly one '{name}' parameter is allowed, got {len(values)}")
    return values[0]


@router.api_route("/sparql", methods=["GET", "POST"], summary="SPARQL 1.1 query and update endpoint")
async def sparql(request: Request) -> Response:
    service = _service(request)
    try:
        params = await _params(request)
        query, update = _one(params, "query"), _one(params, "update")
    except _Unsupported as exc:
        return _text(415, f"unsupported request body {str(exc) or '(none)'}: send {FORM}, "
                          f"{SPARQL_QUERY} or {SPARQL_UPDATE}")
    except ValueError as exc:
        return _text(400, str(exc))
    if query is not None and update is not None:
        return _text(400, "send either 'query' or 'update', not both")
    if update is not None:
        if request.method != "POST":
            return _text(405, "SPARQL Update needs POST", Allow="POST")
        return await _update(service, request, update)
    if query is None:
        return _describe_service(request)
    try:
        form = check(query)
    except ForbiddenQuery as exc:
        return _text(400, str(exc))
    if form in UPDATE_FORMS and form not in QUERY_FORMS:
        return _text(400, "this is a SPARQL Update: send it as 'update' (POST), not as 'query'")
    job = service.request(query, accept=request.headers.get("accept"),
                          default_graph=params.get("default-graph-uri", []),
                          named_graphs=params.get("named-graph-uri", []))
    return await _execute(service, job)


async def _execute(service: Service, job: dict) -> Response:
    try:
        status, ctype, body = await service.run(job)
    except QueryTimeout:
        return _text(503, f"query stopped: it ran past the time limit of "
                          f"{service.settings.query_timeout:g} s", **{"Retry-After": "1"})
    except PoolUnavailable as exc:
        return _text(503, str(exc))
    return Response(body, status_code=status, headers={"Content-Type": ctype, "Vary": "Accept"})


async def _update(service: Service, request: Request, text: str) -> Response:
    token = service.settings.update_token
    if token is None:
        return _text(403, "this endpoint is read-only: SPARQL Update is disabled "
                          "(start the server with KD_UPDATE_TOKEN to enable it)")
    supplied = request.headers.get("authorization", "")
    if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
        return _text(401, "SPARQL Update needs 'Authorization: Bearer <token>'",
                     **{"WWW-Authenticate": 'Bearer realm="kd-sparql-update"'})
    try:
        check(text)
    except ForbiddenQuery as exc:
        return _text(400, str(exc))
    try:
        status, ctype, body = await run_in_threadpool(service.pool.update, text)
    except QueryTimeout:
        return _text(503, f"update stopped: it ran past the time limit of {service.settings.query_timeout:g} s")
    except PoolUnavailable as exc:
        return _text(503, str(exc))
    return Response(body, status_code=status, headers={"Content-Type": ctype})


SERVICE_DESCRIPTION = """@prefix sd: <http://www.w3.org/ns/sparql-service-description#> .
@prefix formats: <http://www.w3.org/ns/formats/> .
@prefix dcterms: <http://purl.org/dc/terms/> .

[] a sd:Service ;
    sd:endpoint <{endpoint}> ;
    dcterms:title "Knowledge-distillation knowledge base SPARQL endpoint" ;
    sd:supportedLanguage sd:SPARQL11Query{update_language} ;
    sd:feature sd:UnionDefaultGraph ;
    sd:resultFormat formats:SPARQL_Results_JSON , formats:SPARQL_Results_XML ,
        formats:SPARQL_Results_CSV , formats:SPARQL_Results_TSV ,
        formats:Turtle , formats:N-Triples , formats:JSON-LD , formats:RDF_XML .
"""


def _describe_service(request: Request) -> Response:
    accept = request.headers.get("accept")
    if wants_html(accept):
        return HTMLResponse(_editor_page())
    if choose(accept, ["text/turtle"], "text/turtle") is None:
        return _text(406, "the service description is available as text/turtle "
                          "(send a query to get SPARQL results or RDF)")
    update = request.app.state.service.settings.update_token is not None
    body = SERVICE_DESCRIPTION.format(endpoint=str(request.url_for("sparql")),
                                      update_language=" , sd:SPARQL11Update" if update else "")
    return Response(body, media_type="text/turtle", headers={"Vary": "Accept"})


EXAMPLES = {
    "Relation-based techniques": """SELECT ?technique ?label WHERE {
  ?technique a kdo:Technique ;
             rdfs:subClassOf+ kd:RelationBasedDistillation ;
             skos:prefLabel ?label .
} ORDER BY ?label""",
    "Techniques of the online scheme": """SELECT ?technique ?label WHERE {
  ?technique a kdo:Technique ; rdfs:subClassOf+ kd:OnlineDistillation ; skos:prefLabel ?label .
}""",
    "Who introduced each technique, and when": """SELECT ?label ?year ?title WHERE {
  ?t a kdo:Technique ; skos:prefLabel ?label ; kdo:introducedIn ?p .
  ?p dcterms:title ?title ; dcterms:issued ?year .
} ORDER BY ?year""",
    "The taxonomy axes and their categories": """SELECT ?axis ?category ?label WHERE {
  ?category kdo:onAxis ?axis ; skos:prefLabel ?label .
} ORDER BY ?axis ?label""",
}


def _editor_page() -> str:
    import json
    prologue = sparql_prologue()
    tabs = [{"name": name, "query": prologue + "\n" + q} for name, q in EXAMPLES.items()]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>SPARQL — knowledge-distillation knowledge base</title>
<link rel="stylesheet" href="/static/yasgui/yasgui.min.css">
<style>body{{font-family:system-ui,sans-serif;margin:0 1rem}} header a{{margin-right:1em}}</style>
</head><body>
<header><h1>SPARQL query editor</h1>
<a href="/">Documentation</a><a href="/api/docs">JSON API</a><a href="/ontology.ttl">Ontology (Turtle)</a></header>
<div id="yasgui"></div>
<script src="/static/yasgui/yasgui.min.js"></script>
<script>
const tabs = {json.dumps(tabs)};
const params = new URLSearchParams(window.location.search);
const yasgui = new Yasgui(document.getElementById("yasgui"), {{
  requestConfig: {{ endpoint: window.location.origin + "/sparql", method: "POST" }},
  copyEndpointOnNewTab: true, persistenceId: null,
  yasqe: {{ value: params.get("q") || tabs[0].query }},
}});
const first = yasgui.getTab();
first.setName(params.get("q") ? "Query" : tabs[0].name);
if (!params.get("q")) {{
  for (const t of tabs.slice(1)) {{
    const tab = yasgui.addTab(false, {{ name: t.name, yasqe: {{ value: t.query }} }});
    tab.setQuery && tab.setQuery(t.query);
  }}
}}
</script></body></html>"""
