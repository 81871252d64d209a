"""The W3C SPARQL 1.1 Protocol tests, one test per entry of the W3C manifest
(w3c/rdf-tests, sparql/sparql11/protocol/manifest.ttl), each named after its entry.

Each test sends the request its entry describes and checks the status class and result
format it expects. The data are this file's own: three named graphs, each holding one triple
that says the graph's own IRI is a foaf:Document (the shape of the manifest's data1..3.nt).

The server runs with an update token, because half of the entries are updates and the
read-only default would make them inapplicable; every update request carries the token.
Those entries empty the store (DROP ALL), so the server serves a throwaway copy of the build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import rdflib

from .server_harness import running_server

TOKEN = "w3c-protocol-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FOAF = "http://xmlns.com/foaf/0.1/"
DATA = [f"http://example.org/protocol/data{i}" for i in range(4)]  # data0 is never loaded
QUERY, UPDATE, FORM = "application/sparql-query", "application/sparql-update", "application/x-www-form-urlencoded"
BOOLEAN_TYPES = ("application/sparql-results+json", "application/sparql-results+xml")
TABULAR_TYPES = BOOLEAN_TYPES + ("text/csv", "text/tab-separated-values")
RDF_TYPES = ("application/rdf+xml", "text/turtle", "application/n-triples")


@pytest.fixture(scope="module")
def url(built, tmp_path_factory):
    data = tmp_path_factory.mktemp("w3c")
    (data / "builds").mkdir()
    shutil.copytree(built.build_dir, data / "builds" / built.build_dir.name)
    (data / "current").symlink_to(Path("builds") / built.build_dir.name)
    with running_server(data, KD_UPDATE_TOKEN=TOKEN, KD_WORKERS="2") as (server_url, _):
        yield server_url + "/sparql"


def send(url: str, method: str = "GET", params: list[tuple[str, str]] = (), body: str | bytes | None = None,
         content_type: str | None = None, update: bool = False) -> httpx.Response:
    headers = dict(AUTH) if update else {}
    if content_type:
        headers["Content-Type"] = content_type
    target = url + ("?" + urlencode(list(params)) if params else "")
    return httpx.request(method, target, content=body, headers=headers, timeout=60)


def load_data(url: str) -> None:
    """The three documents, each in its own named graph."""
    graphs = " ".join(f"GRAPH <{g}> {{ <{g}> a <{FOAF}Document> }}" for g in DATA[1:])
    response = send(url, "POST", body=f"DROP ALL ; INSERT DATA {{ {graphs} }}", content_type=UPDATE, update=True)
    assert response.status_code == 204, response.text


def media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip()


def expect_boolean(response: httpx.Response, value: bool) -> None:
    assert 200 <= response.status_code < 400, response.text
    assert media_type(response) in BOOLEAN_TYPES
    if media_type(response) == "application/sparql-results+json":
        assert json.loads(response.text)["boolean"] is value
    else:
        assert f"<boolean>{str(value).lower()}</boolean>" in response.text


def expect_success(response: httpx.Response) -> None:
    assert 200 <= response.status_code < 400, response.text


def expect_client_error(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


# -- queries ----------------------------------------------------------------------------------
def test_query_post_form(url):
    response = send(url, "POST", [("default-graph-uri", DATA[0])], body=urlencode({"query": "ASK {}"}),
                    content_type=FORM)
    expect_boolean(response, True)


def test_query_dataset_default_graphs_get(url):
    load_data(url)
    query = f"ASK {{ <{DATA[1]}> a ?type . <{DATA[2]}> a ?type . }}"
    expect_boolean(send(url, "GET", [("query", query), ("default-graph-uri", DATA[1]),
                                     ("default-graph-uri", DATA[2])]), True)


def test_query_dataset_default_graphs_post(url):
    load_data(url)
    query = f"ASK {{ <{DATA[1]}> a ?type . <{DATA[2]}> a ?type . }}"
    expect_boolean(send(url, "POST", [("default-graph-uri", DATA[1]), ("default-graph-uri", DATA[2])],
                        body=query, content_type=QUERY), True)


NAMED_QUERY = f"ASK {{ GRAPH ?g1 {{ <{DATA[1]}> a ?type }} GRAPH ?g2 {{ <{DATA[2]}> a ?type }} }}"


def test_query_dataset_named_graphs_post(url):
    load_data(url)
    expect_boolean(send(url, "POST", [("named-graph-uri", DATA[1]), ("named-graph-uri", DATA[2])],
                        body=NAMED_QUERY, content_type=QUERY), True)


def test_query_dataset_named_graphs_get(url):
    load_data(url)
    expect_boolean(send(url, "GET", [("query", NAMED_QUERY), ("named-graph-uri", DATA[1]),
                                     ("named-graph-uri", DATA[2])]), True)


def test_query_dataset_full(url):
    load_data(url)
    query = (f"ASK {{ <{DATA[3]}> a ?type GRAPH ?g1 {{ <{DATA[1]}> a ?type }} "
             f"GRAPH ?g2 {{ <{DATA[2]}> a ?type }} }}")
    expect_boolean(send(url, "POST", [("default-graph-uri", DATA[3]), ("named-graph-uri", DATA[1]),
                                      ("named-graph-uri", DATA[2])], body=query, content_type=QUERY), True)


def test_query_multiple_dataset(url):
    """The protocol's dataset overrides the query's own FROM."""
    load_data(url)
    query = (f"ASK FROM <{DATA[3]}> {{ GRAPH ?g1 {{ <{DATA[1]}> a ?type }} "
             f"GRAPH ?g2 {{ <{DATA[2]}> a ?type }} }}")
    expect_boolean(send(url, "POST", [("named-graph-uri", DATA[1]), ("named-graph-uri", DATA[2])],
                        body=query, content_type=QUERY), True)


def test_query_get(url):
    expect_boolean(send(url, "GET", [("query", "ASK {}"), ("default-graph-uri", DATA[0])]), True)


def test_query_content_type_select(url):
    response = send(url, "POST", [("default-graph-uri", DATA[0])], body="SELECT (1 AS ?value) {}",
                    content_type=QUERY)
    expect_success(response)
    assert media_type(response) in TABULAR_TYPES


def test_query_content_type_ask(url):
    response = send(url, "POST", [("default-graph-uri", DATA[0])], body="ASK {}", content_type=QUERY)
    expect_boolean(response, True)


def test_query_content_type_describe(url):
    response = send(url, "POST", [("default-graph-uri", DATA[0])], body="DESCRIBE <http://example.org/>",
                    content_type=QUERY)
    expect_success(response)
    assert media_type(response) in RDF_TYPES


def test_query_content_type_construct(url):
    response = send(url, "POST", [("default-graph-uri", DATA[0])], body="CONSTRUCT { <s> <p> 1 } WHERE {}",
                    content_type=QUERY)
    expect_success(response)
    assert media_type(response) in RDF_TYPES
    graph = rdflib.Graph().parse(data=response.text, format="turtle")
    assert len(graph) == 1 and str(next(iter(graph))[0]).endswith("/s")  # relative IRIs resolved


def test_query_post_direct(url):
    expect_boolean(send(url, "POST", body="ASK {}", content_type=QUERY), True)


# -- updates ----------------------------------------------------------------------------------
PREFIXES = f"PREFIX dc: <http://purl.org/dc/terms/> PREFIX foaf: <{FOAF}>\n"
ALL_THREE = "INSERT DATA { " + " ".join(f"GRAPH <{g}> {{ <{g}> a foaf:Document }}" for g in DATA[1:]) + " }"


def _ask(url: str, query: str) -> httpx.Response:
    return send(url, "POST", body=query, content_type=QUERY)


def test_update_dataset_default_graph(url):
    target = "http://example.org/protocol-update-dataset-test/"
    update = (PREFIXES + f"CLEAR ALL ; INSERT DATA {{ GRAPH <{DATA[1]}> {{ <{DATA[1]}> a foaf:Document }} }} ;"
              f" INSERT {{ GRAPH <{target}> {{ ?s a dc:BibliographicResource }} }} WHERE {{ ?s a foaf:Document }}")
    expect_success(send(url, "POST", [("using-graph-uri", DATA[1])], body=update, content_type=UPDATE, update=True))
    expect_boolean(_ask(url, f"ASK {{ GRAPH <{target}> {{ <{DATA[1]}> a <http://purl.org/dc/terms/BibliographicResource> }} }}"),
                   True)


def test_update_dataset_default_graphs(url):
    target = "http://example.org/protocol-update-dataset-graphs-test/"
    update = (PREFIXES + f"DROP ALL ; {ALL_THREE} ; INSERT {{ GRAPH <{target}> {{ ?s a dc:BibliographicResource }} }}"
              " WHERE { ?s a foaf:Document }")
    expect_success(send(url, "POST", [("using-graph-uri", DATA[1]), ("using-graph-uri", DATA[2])], body=update,
                        content_type=UPDATE, update=True))
    expect_boolean(_ask(url, PREFIXES + f"ASK {{ GRAPH <{target}> {{ <{DATA[1]}> a dc:BibliographicResource . "
                                        f"<{DATA[2]}> a dc:BibliographicResource }} "
                                        f"FILTER NOT EXISTS {{ GRAPH <{target}> {{ <{DATA[3]}> ?p ?o }} }} }}"), True)


def test_update_dataset_named_graphs(url):
    target = "http://example.org/protocol-update-dataset-named-graphs-test/"
    update = (PREFIXES + f"DROP ALL ; {ALL_THREE} ; INSERT {{ GRAPH <{target}> {{ ?s a dc:BibliographicResource }} }}"
              " WHERE { GRAPH ?g { ?s a foaf:Document } }")
    expect_success(send(url, "POST", [("using-named-graph-uri", DATA[1]), ("using-named-graph-uri", DATA[2])],
                        body=update, content_type=UPDATE, update=True))
    expect_boolean(_ask(url, PREFIXES + f"ASK {{ GRAPH <{target}> {{ <{DATA[1]}> a dc:BibliographicResource . "
                                        f"<{DATA[2]}> a dc:BibliographicResource }} "
                                        f"FILTER NOT EXISTS {{ GRAPH <{target}> {{ <{DATA[3]}> ?p ?o }} }} }}"), True)


def test_update_dataset_full(url):
    target = "http://example.org/protocol-update-dataset-full-test/"
    update = (PREFIXES + f"DROP ALL ; {ALL_THREE} ; INSERT {{ GRAPH <{target}> {{ ?s <http://example.org/in> ?in }} }}"
              ' WHERE { { GRAPH ?g { ?s a foaf:Document } BIND(?g AS ?in) } UNION { ?s a foaf:Document . '
              'BIND("default" AS ?in) } }')
    expect_success(send(url, "POST", [("using-graph-uri", DATA[1]), ("using-named-graph-uri", DATA[2])],
                        body=update, content_type=UPDATE, update=True))
    expect_boolean(_ask(url, f'ASK {{ GRAPH <{target}> {{ <{DATA[1]}> <http://example.org/in> "default" . '
                             f"<{DATA[2]}> <http://example.org/in> <{DATA[2]}> }} "
                             f"FILTER NOT EXISTS {{ GRAPH <{target}> {{ <{DATA[3]}> ?p ?o }} }} }}"), True)


def test_update_post_form(url):
    expect_success(send(url, "POST", body="update=CLEAR+ALL", content_type=FORM, update=True))


def test_update_post_direct(url):
    expect_success(send(url, "POST", body="CLEAR ALL", content_type=UPDATE, update=True))


def test_update_base_uri(url):
    """Relative IRIs in an update resolve against the service's base (its endpoint)."""
    graph = "http://example.org/protocol-base-test/"
    expect_success(send(url, "POST", body=f"CLEAR SILENT GRAPH <{graph}> ; INSERT DATA {{ GRAPH <{graph}> "
                                          "{ <http://example.org/s> <http://example.org/p> <test> } }",
                        content_type=UPDATE, update=True))
    expect_boolean(_ask(url, f'ASK {{ GRAPH <{graph}> {{ <http://example.org/s> <http://example.org/p> ?o '
                             'FILTER(isIRI(?o) && STR(?o) != "test") } }'), True)


# -- bad requests -----------------------------------------------------------------------------
def test_bad_query_method(url):
    expect_client_error(send(url, "PUT", [("query", "ASK {}"), ("default-graph-uri", DATA[0])],
                             content_type=FORM))


def test_bad_multiple_queries(url):
    expect_client_error(send(url, "GET", [("query", "ASK {}"), ("query", "SELECT * {}")]))


def test_bad_query_wrong_media_type(url):
    expect_client_error(send(url, "POST", body="ASK {}", content_type="text/plain"))


def test_bad_query_missing_form_type(url):
    expect_client_error(send(url, "POST", body="query=ASK%20%7B%7D"))


def test_bad_query_missing_direct_type(url):
    expect_client_error(send(url, "POST", body="ASK {}"))


def test_bad_query_non_utf8(url):
    expect_client_error(send(url, "POST", body="ASK {}".encode("utf-16"), content_type=QUERY + "; charset=UTF-16"))


def test_bad_query_syntax(url):
    expect_client_error(send(url, "GET", [("query", "ASK {")]))


def test_bad_update_get(url):
    expect_client_error(send(url, "GET", [("update", "CLEAR ALL")], update=True))


def test_bad_multiple_updates(url):
    expect_client_error(send(url, "POST", body="update=CLEAR%20NAMED&update=CLEAR%20DEFAULT", content_type=FORM,
                             update=True))


def test_bad_update_wrong_media_type(url):
    expect_client_error(send(url, "POST", body="CLEAR NAMED", content_type="text/plain", update=True))


def test_bad_update_missing_form_type(url):
    expect_client_error(send(url, "POST", body="update=CLEAR%20NAMED", update=True))


def test_bad_update_non_utf8(url):
    expect_client_error(send(url, "POST", body="CLEAR NAMED".encode("utf-16"), content_type=UPDATE + "; charset=UTF-16",
                             update=True))


def test_bad_update_syntax(url):
    expect_client_error(send(url, "POST", body="update=CLEAR%20XYZ", content_type=FORM, update=True))


def test_bad_update_dataset_conflict(url):
    update = (f"PREFIX foaf: <{FOAF}> WITH <http://example/addresses> DELETE {{ ?person foaf:givenName 'Bill' }} "
              "INSERT { ?person foaf:givenName 'William' } WHERE { ?person foaf:givenName 'Bill' }")
    response = send(url, "POST", [("using-named-graph-uri", "http://example/people")], body=update,
                    content_type=UPDATE, update=True)
    expect_client_error(response)
    assert "use only one of the two" in response.text
