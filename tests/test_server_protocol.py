"""SPARQL 1.1 Protocol against a running server, with real clients."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import rdflib
from rdflib.plugins.stores.sparqlstore import SPARQLStore
from SPARQLWrapper import CSV, JSON, JSONLD, N3, RDFXML, TSV, TURTLE, XML, SPARQLWrapper

from kb.namespaces import GRAPH, KD, sparql_prologue

from .server_harness import child_pids, running_server

RELATION_QUERY = sparql_prologue() + """
SELECT ?t WHERE { ?t a kdo:Technique ; rdfs:subClassOf+ kd:RelationBasedDistillation } ORDER BY ?t"""
RELATION = [KD + "ContrastiveRepresentationDistillation", KD + "RelationalKD", KD + "SimilarityPreservingKD"]
CONSTRUCT = sparql_prologue() + "CONSTRUCT { kd:FitNets ?p ?o } WHERE { kd:FitNets ?p ?o }"
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server(built, paths):
    with running_server(paths.data_dir, KD_QUERY_TIMEOUT=str(TIMEOUT), KD_WORKERS="3") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def endpoint(server):
    return server[0] + "/sparql"


# ---------------------------------------------------------------- real clients
@pytest.mark.parametrize("fmt", [JSON, XML, CSV, TSV])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sparqlwrapper_select_every_format(endpoint, fmt, method):
    client = SPARQLWrapper(endpoint)
    client.setQuery(RELATION_QUERY)
    client.setReturnFormat(fmt)
    client.setMethod(method)
    result = client.query().convert()
    if fmt == JSON:
        got = [b["t"]["value"] for b in result["results"]["bindings"]]
    elif fmt == XML:
        got = [n.firstChild.data for n in result.getElementsByTagName("uri")]
    else:
        text = result.decode() if isinstance(result, bytes) else result
        rows = list(csv.reader(io.StringIO(text), delimiter="," if fmt == CSV else "\t"))
        got = [r[0].strip("<>") for r in rows[1:]]
    assert got == RELATION


def test_sparqlwrapper_ask(endpoint):
    client = SPARQLWrapper(endpoint)
    client.setQuery(sparql_prologue() + "ASK { kd:DeepMutualLearning rdfs:subClassOf kd:OnlineDistillation }")
    client.setReturnFormat(JSON)
    assert client.query().convert()["boolean"] is True


@pytest.mark.parametrize("fmt", [TURTLE, N3, RDFXML, JSONLD])
def test_sparqlwrapper_construct_every_format(endpoint, fmt):
    client = SPARQLWrapper(endpoint)
    client.setQuery(CONSTRUCT)
    client.setReturnFormat(fmt)
    graph = client.queryAndConvert()
    if not isinstance(graph, rdflib.Graph):
        graph = rdflib.Graph().parse(data=graph, format={TURTLE: "turtle", N3: "turtle"}[fmt])
    assert (rdflib.URIRef(KD + "FitNets"), rdflib.RDF.type,
            rdflib.URIRef("https://w3id.org/kdkb/ontology#Technique")) in graph


@pytest.mark.parametrize("return_format", ["json", "xml", "csv", "tsv"])
def test_rdflib_sparqlstore_select_every_format(endpoint, return_format):
    graph = rdflib.Graph(store=SPARQLStore(endpoint, returnFormat=return_format))
    assert [str(r[0]) for r in graph.query(RELATION_QUERY)] == RELATION


@pytest.mark.parametrize("return_format", ["xml", "application/rdf+xml"])
def test_rdflib_sparqlstore_construct_parsed_into_graph(endpoint, return_format):
    # rdflib asks for CONSTRUCT results with 'xml' (it then accepts application/rdf+xml)
    graph = rdflib.Graph(store=SPARQLStore(endpoint, returnFormat=return_format))
    constructed = graph.query(CONSTRUCT).graph
    parsed = rdflib.Graph().parse(data=constructed.serialize(format="turtle"), format="turtle")
    assert len(parsed) > 5
    assert (rdflib.URIRef(KD + "FitNets"), rdflib.RDFS.subClassOf,
            rdflib.URIRef(KD + "FeatureBasedDistillation")) in parsed


def test_rdflib_sparqlstore_construct_with_json_only_is_406(endpoint):
    """Asking for a graph in a format only SELECT results have is refused, not guessed."""
    graph = rdflib.Graph(store=SPARQLStore(endpoint, returnFormat="json"))
    with pytest.raises(ValueError):
        graph.query(CONSTRUCT)


@pytest.mark.parametrize("accept, ctype", [
    ("text/turtle", "text/turtle"), ("application/n-triples", "application/n-triples"),
    ("application/ld+json", "application/ld+json"), ("application/rdf+xml", "application/rdf+xml"),
])
def test_construct_negotiated_and_parsed_back(endpoint, accept, ctype):
    r = httpx.post(endpoint, content=CONSTRUCT, headers={"Content-Type": "application/sparql-query", "Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
    fmt = {"text/turtle": "turtle", "application/n-triples": "nt", "application/ld+json": "json-ld",
           "application/rdf+xml": "xml"}[ctype]
    assert len(rdflib.Graph().parse(data=r.text, format=fmt)) > 5


def test_default_for_any_accept(endpoint):
    r = httpx.get(endpoint, params={"query": RELATION_QUERY}, headers={"Accept": "*/*"})
    assert r.headers["content-type"].startswith("application/sparql-results+json")
    r = httpx.get(endpoint, params={"query": CONSTRUCT}, headers={"Accept": "*/*"})
    assert r.headers["content-type"].startswith("text/turtle")


def test_q_values_respected(endpoint):
    r = httpx.get(endpoint, params={"query": RELATION_QUERY},
                  headers={"Accept": "application/sparql-results+json;q=0.5, text/csv;q=0.9"})
    assert r.headers["content-type"].startswith("text/csv")


# ---------------------------------------------------------------- datasets
def test_default_graph_uri_is_honoured(endpoint):
    query = "SELECT (COUNT(*) AS ?n) WHERE { ?s a <http://purl.org/ontology/bibo/AcademicArticle> }"
    union = httpx.get(endpoint, params={"query": query}).json()["results"]["bindings"][0]["n"]["value"]
    only_core = httpx.get(endpoint, params={"query": query, "default-graph-uri": GRAPH + "ontology/core"})
    assert int(union) > 30
    assert only_core.json()["results"]["bindings"][0]["n"]["value"] == "0"
    only_papers = httpx.post(endpoint, data={"query": query, "default-graph-uri": GRAPH + "ontology/papers"})
    assert only_papers.json()["results"]["bindings"][0]["n"]["value"] == union


def test_named_graph_uri_is_honoured(endpoint):
    query = "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }"
    everything = httpx.get(endpoint, params={"query": query}).json()["results"]["bindings"]
    assert len(everything) > 5
    chosen = [GRAPH + "ontology/core", GRAPH + "ontology/papers"]
    restricted = httpx.get(endpoint, params=[("query", query)] + [("named-graph-uri", g) for g in chosen])
    assert sorted(b["g"]["value"] for b in restricted.json()["results"]["bindings"]) == chosen


# ---------------------------------------------------------------- errors
def test_malformed_query_is_400_with_parser_message(endpoint):
    r = httpx.get(endpoint, params={"query": "SELECT ?x WHERE { ?x ?p }"})
    assert r.status_code == 400
    assert "syntax error" in r.text and "1:" in r.text


def test_unsupported_body_is_415(endpoint):
    r = httpx.post(endpoint, content="SELECT * {}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/sparql-query" in r.text


def test_nothing_acceptable_is_406(endpoint):
    r = httpx.get(endpoint, params={"query": RELATION_QUERY}, headers={"Accept": "image/png"})
    assert r.status_code == 406
    r = httpx.get(endpoint, params={"query": CONSTRUCT}, headers={"Accept": "text/csv"})
    assert r.status_code == 406


def test_two_queries_is_400(endpoint):
    r = httpx.get(endpoint, params=[("query", "ASK {}"), ("query", "ASK {}")])
    assert r.status_code == 400


def test_update_sent_as_query_is_400(endpoint):
    r = httpx.post(endpoint, data={"query": "INSERT DATA { <http://a> <http://b> <http://c> }"})
    assert r.status_code == 400


# ---------------------------------------------------------------- service description, editor
def test_service_description(endpoint):
    r = httpx.get(endpoint, headers={"Accept": "text/turtle"})
    assert r.status_code == 200
    g = rdflib.Graph().parse(data=r.text, format="turtle")
    sd = rdflib.Namespace("http://www.w3.org/ns/sparql-service-description#")
    assert (None, sd.endpoint, rdflib.URIRef(endpoint)) in g
    assert (None, sd.supportedLanguage, sd.SPARQL11Update) not in g  # read-only


def test_browser_gets_the_bundled_editor(server, endpoint):
    r = httpx.get(endpoint, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200 and "Yasgui" in r.text
    assert "/static/yasgui/yasgui.min.js" in r.text and "cdn" not in r.text.lower()
    assert "PREFIX kd:" in r.text  # prefilled with the prefixes and examples
    js = httpx.get(server[0] + "/static/yasgui/yasgui.min.js")
    assert js.status_code == 200 and len(js.content) > 100_000


# ---------------------------------------------------------------- safety
def test_updates_refused_without_token(endpoint):
    r = httpx.post(endpoint, data={"update": "INSERT DATA { <http://a> <http://b> <http://c> }"})
    assert r.status_code == 403 and "read-only" in r.text


def test_no_cors_for_writes(endpoint):
    r = httpx.options(endpoint, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization"})
    assert r.headers.get("access-control-allow-origin") is None or r.status_code >= 400
    assert "POST" not in r.headers.get("access-control-allow-methods", "")


@pytest.fixture
def listener():
    """A local TCP listener that records every connection made to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.settimeout(0.2)
    connections: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            connections.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], connections
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize("template", [
    "SELECT * WHERE {{ SERVICE <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}",
    "select * where {{ service silent <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}",
    "SELECT * WHERE {{ ?s ?p ?o OPTIONAL {{ SERVICE <http://127.0.0.1:{port}/> {{ ?s ?q ?r }} }} }}",
    "SELECT * WHERE {{ ?s ?p ?o FILTER EXISTS {{ SERVICE <http://127.0.0.1:{port}/> {{ ?s ?q ?r }} }} }}",
    "SELECT * WHERE {{ \\u0053ERVICE <http://127.0.0.1:{port}/> {{ ?s ?q ?r }} }}",
])
def test_service_refused_without_any_connection(endpoint, listener, template):
    port, connections = listener
    query = template.format(port=port)
    for response in (httpx.get(endpoint, params={"query": query}),
                     httpx.post(endpoint, content=query, headers={"Content-Type": "application/sparql-query"})):
        assert response.status_code == 400, response.text
    time.sleep(0.5)
    assert connections == []


def test_words_in_strings_and_names_are_not_refused(endpoint):
    query = sparql_prologue() + """
        # SERVICE in a comment
        SELECT ?x WHERE { BIND("SERVICE <http://x/>" AS ?x) ?s schema:Service ?o } LIMIT 1"""
    assert httpx.get(endpoint, params={"query": query}).status_code == 200


def test_runaway_query_is_stopped_while_others_answer(server, endpoint):
    url, proc = server
    before = child_pids(proc.pid)
    runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } GROUP BY ?a ORDER BY ?n"
    outcome = {}

    def slow() -> None:
        response = httpx.get(endpoint, params={"query": runaway}, timeout=120)
        outcome.update(status=response.status_code, text=response.text)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    quick = []
    while thread.is_alive():  # the other workers keep answering while one is stuck
        quick.append(httpx.get(endpoint, params={"query": "ASK { ?s ?p ?o }"}, timeout=10).status_code)
        time.sleep(0.2)
    thread.join()
    # Stopped by the limit (how soon after it is measured by scripts/attack_server.py).
    assert outcome["status"] == 503 and "time limit of 2 s" in outcome["text"]
    assert len(quick) >= 3 and set(quick) == {200}
    time.sleep(0.5)
    killed = before - child_pids(proc.pid)
    assert killed, "the worker running the runaway query was not stopped"
    for pid in killed:
        status = open(f"/proc/{pid}/stat").read().split()[2] if __import__("os").path.exists(f"/proc/{pid}") else "gone"
        assert status in ("gone", "Z")


def test_many_parallel_clients(endpoint):
    def one(i: int) -> int:
        query = RELATION_QUERY if i % 2 else sparql_prologue() + f"SELECT ?l WHERE {{ kd:FitNets skos:prefLabel ?l }} # {i}"
        return httpx.get(endpoint, params={"query": query}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == [200] * 200


def test_server_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, kb.cli, kb.server.app, kb.engine, kb.store; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_result_size_limit(built, paths):
    with running_server(paths.data_dir, KD_MAX_RESULT_BYTES="4096", KD_WORKERS="1") as (url, _):
        r = httpx.get(url + "/sparql", params={"query": "SELECT * WHERE { ?s ?p ?o }"})
        assert r.status_code == 413 and "too large" in r.text
        small = httpx.get(url + "/sparql", params={"query": "SELECT * WHERE { ?s ?p ?o } LIMIT 3"})
        assert small.status_code == 200 and len(json.loads(small.text)["results"]["bindings"]) == 3
