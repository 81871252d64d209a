"""SPARQL 1.1 Protocol at /sparql: query by GET, POST form and POST sparql-query; update
only with the operator's token; a service description and a query editor for browsers.

What is checked here, before any worker is involved: the request's size (413), its
encoding (UTF-8 only: 415 for another charset, 400 for bytes that are not UTF-8), its media
type (415), the protocol's parameters (400 for repeated ones and for graph IRIs that are not
absolute IRIs) and the update token. The query itself is checked by `kb.guard` inside the
worker process, under the time limit, so that no request can hold up the event loop.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..guard import is_absolute_iri
from ..namespaces import PREFIXES, sparql_prologue
from .negotiation import choose, wants_html
from .pool import PoolUnavailable, QueryTimeout
from .service import Service

router = APIRouter(tags=["SPARQL"])

FORM = "application/x-www-form-urlencoded"
SPARQL_QUERY = "application/sparql-query"
SPARQL_UPDATE = "application/sparql-update"
DATASET_PARAMETERS = ("default-graph-uri", "named-graph-uri")
UPDATE_DATASET_PARAMETERS = ("using-graph-uri", "using-named-graph-uri")


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message.rstrip() + "\n", status_code=status, media_type="text/plain", headers=headers)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, **headers: str):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def timeout_message(exc: QueryTimeout, limit: float) -> str:
    if exc.waiting:
        return f"server busy: no query worker became free within {limit:g} s; try again"
    return f"query stopped: it ran past the time limit of {limit:g} s"


def client_of(request: Request) -> str:
    """Who is asking, for the per-client limit: the peer address."""
    return request.client.host if request.client else ""


def _decode_form(data: str, where: str) -> dict[str, list[str]]:
    try:
        return parse_qs(data, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest(400, f"the {where} is not valid UTF-8 once percent-decoded") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, f"Content-Length must be a number of bytes, got {declared!r}")
        if int(declared) > limit:
            raise BadRequest(413, f"request too large: {declared} bytes, more than the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"request too large: more than the limit of {limit} bytes")
    return bytes(body)


async def _params(request: Request, limit: int) -> dict[str, list[str]]:
    """Query-string parameters, merged with those of a POST body."""
    params = _decode_form(request.url.query, "query string")
    if request.method != "POST":
        return params
    media_type, *options = [part.strip() for part in request.headers.get("content-type", "").split(";")]
    media_type = media_type.lower()
    if media_type not in (FORM, SPARQL_QUERY, SPARQL_UPDATE):
        raise BadRequest(415, f"unsupported request body {media_type or '(no Content-Type)'}: send "
                              f"{FORM}, {SPARQL_QUERY} or {SPARQL_UPDATE}")
    for option in options:
        name, _, value = option.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BadRequest(415, f"unsupported charset {value.strip()}: send the request in UTF-8")
    raw = await read_body(request, limit)
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"the request body is not valid UTF-8 (byte {exc.start})") from None
    if media_type == FORM:
        for key, values in _decode_form(body, "form body").items():
            params.setdefault(key, []).extend(values)
    else:
        params.setdefault("query" if media_type == SPARQL_QUERY else "update", []).append(body)
    return params


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(400, f"exactly one '{name}' parameter is allowed, got {len(values)}")
    return values[0]


def _graph_iris(params: dict[str, list[str]], name: str) -> list[str]:
    values = params.get(name, [])
    for value in values:
        if not is_absolute_iri(value):
            raise BadRequest(400, f"{name} must be an absolute IRI, got {value!r}")
    return values


@router.api_route("/sparql", methods=["GET", "POST"], summary="SPARQL 1.1 query and update endpoint")
async def sparql(request: Request) -> Response:
    service: Service = request.app.state.service
    limit = service.settings.max_request_bytes
    try:
        params = await _params(request, limit)
        query, update = _one(params, "query"), _one(params, "update")
        graphs = {name: _graph_iris(params, name) for name in DATASET_PARAMETERS + UPDATE_DATASET_PARAMETERS}
        if query is not None and update is not None:
            raise BadRequest(400, "send either 'query' or 'update', not both")
        text = query if query is not None else update
        if text is not None and len(text.encode()) > limit:
            raise BadRequest(413, f"request too large: the SPARQL text is more than {limit} bytes")
        if query is not None and any(graphs[name] for name in UPDATE_DATASET_PARAMETERS):
            raise BadRequest(400, "using-graph-uri and using-named-graph-uri apply to updates; "
                                  "a query takes default-graph-uri and named-graph-uri")
        if update is not None and any(graphs[name] for name in DATASET_PARAMETERS):
            raise BadRequest(400, "default-graph-uri and named-graph-uri apply to queries; "
                                  "an update takes using-graph-uri and using-named-graph-uri")
    except BadRequest as exc:
        return _text(exc.status, exc.message, **exc.headers)
    if update is not None:
        if request.method != "POST":
            return _text(405, "SPARQL Update needs POST", Allow="POST")
        return await _update(service, request, update, graphs)
    if query is None:
        return _describe_service(request)
    job = service.request(query, accept=request.headers.get("accept"),
                          default_graph=graphs["default-graph-uri"], named_graphs=graphs["named-graph-uri"])
    return await _execute(service, job, client_of(request))


async def _execute(service: Service, job: dict, client: str) -> Response:
    try:
        status, ctype, body = await service.run(job, client=client)
    except QueryTimeout as exc:
        return _text(503, timeout_message(exc, service.settings.query_timeout), **{"Retry-After": "1"})
    except PoolUnavailable as exc:
        return _text(503, str(exc))
    return Response(body, status_code=status, headers={"Content-Type": ctype, "Vary": "Accept"})


async def _update(service: Service, request: Request, text: str, graphs: dict[str, list[str]]) -> Response:
    token = service.settings.update_token
    if token is None:
        return _text(403, "this endpoint is read-only: SPARQL Update is disabled "
                          "(start the server with KD_UPDATE_TOKEN to enable it)")
    supplied = request.headers.get("authorization", "")
    if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
        return _text(401, "SPARQL Update needs 'Authorization: Bearer <token>'",
                     **{"WWW-Authenticate": 'Bearer realm="kd-sparql-update"'})
    try:
        status, ctype, body = await service.update(
            text, using_graphs=graphs["using-graph-uri"], using_named_graphs=graphs["using-named-graph-uri"])
    except QueryTimeout:
        return _text(503, f"update stopped: it ran past the time limit of {service.settings.query_timeout:g} s")
    except PoolUnavailable as exc:
        return _text(503, str(exc))
    return Response(body, status_code=status, headers={"Content-Type": ctype})


def service_description(service: Service) -> str:
    update = " , sd:SPARQL11Update" if service.settings.update_token is not None else ""
    declarations = " ,\n        ".join(
        f'[ sh:prefix "{prefix}" ; sh:namespace "{iri}"^^xsd:anyURI ]' for prefix, iri in PREFIXES.items())
    return f"""@prefix sd: <http://www.w3.org/ns/sparql-service-description#> .
@prefix formats: <http://www.w3.org/ns/formats/> .
@prefix dcterms: <http://purl.org/dc/terms/> .
@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .

<{service.endpoint}> a sd:Service ;
    sd:endpoint <{service.endpoint}> ;
    dcterms:title "Knowledge-distillation knowledge base SPARQL endpoint" ;
    dcterms:description \"\"\"The default graph is the merge of every source graph (one named graph per
ontology or results file), materialized when the store is built: queries without FROM and updates
without USING or WITH read (and write) it. FROM, FROM NAMED and the protocol's default-graph-uri and
named-graph-uri select graphs by name. The prefixes declared below (sh:declare) may be used without
PREFIX lines. Relative IRIs resolve against the endpoint's address. Every query runs for at most
{service.settings.query_timeout:g} s and may return at most {service.settings.max_result_bytes} bytes; SERVICE and LOAD are refused.\"\"\" ;
    sd:supportedLanguage sd:SPARQL11Query{update} ;
    sd:resultFormat formats:SPARQL_Results_JSON , formats:SPARQL_Results_XML ,
        formats:SPARQL_Results_CSV , formats:SPARQL_Results_TSV ,
        formats:Turtle , formats:N-Triples , formats:JSON-LD , formats:RDF_XML ;
    sh:declare {declarations} .
"""


def _describe_service(request: Request) -> Response:
    accept = request.headers.get("accept")
    if wants_html(accept):
        return HTMLResponse(_editor_page())
    if choose(accept, ["text/turtle"], "text/turtle") is None:
        return _text(406, "the service description is available as text/turtle "
                          "(send a query to get SPARQL results or RDF)")
    return Response(service_description(request.app.state.service), media_type="text/turtle",
                    headers={"Vary": "Accept"})


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
    yasgui.addTab(false, {{ name: t.name, yasqe: {{ value: t.query }} }});
  }}
}}
</script></body></html>"""
