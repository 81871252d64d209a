"""SPARQL Update: refused unless the operator set a token; then only with it."""

from __future__ import annotations

import httpx
import pytest

from .server_harness import running_server

TOKEN = "s3cret-token-for-tests"
INSERT = 'INSERT DATA { <https://w3id.org/kdkb/id/Scratch> <http://www.w3.org/2000/01/rdf-schema#label> "scratch" }'
ASK = 'ASK { <https://w3id.org/kdkb/id/Scratch> <http://www.w3.org/2000/01/rdf-schema#label> "scratch" }'


@pytest.fixture(scope="module")
def endpoint(built, paths):
    with running_server(paths.data_dir, KD_UPDATE_TOKEN=TOKEN, KD_WORKERS="2") as (url, _):
        yield url + "/sparql"


def asked(endpoint: str) -> bool:
    return httpx.get(endpoint, params={"query": ASK}).json()["boolean"]


def test_update_needs_the_token(endpoint):
    assert httpx.post(endpoint, data={"update": INSERT}).status_code == 401
    wrong = httpx.post(endpoint, data={"update": INSERT}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
    assert not asked(endpoint)


def test_update_with_token_is_applied_and_visible(endpoint):
    r = httpx.post(endpoint, content=INSERT, headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": "application/sparql-update"})
    assert r.status_code == 204, r.text
    assert all(asked(endpoint) for _ in range(6))  # every worker sees it


def test_update_by_get_is_refused(endpoint):
    r = httpx.get(endpoint, params={"update": INSERT}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 405


def test_load_refused_even_with_token(endpoint):
    r = httpx.post(endpoint, data={"update": "LOAD <http://127.0.0.1:9/data.ttl>"},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and "LOAD" in r.text


def test_bad_update_is_400_with_message(endpoint):
    r = httpx.post(endpoint, data={"update": "INSERT DATA { <a> }"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and "error" in r.text.lower()


def test_service_description_announces_update(endpoint):
    assert "SPARQL11Update" in httpx.get(endpoint, headers={"Accept": "text/turtle"}).text


def test_queries_and_updates_share_one_default_graph(endpoint):
    """What a query sees in the default graph is what an update reads and deletes."""
    label = 'kd:FitNets skos:prefLabel ?l'
    row = httpx.get(endpoint, params={"query": f"SELECT ?l WHERE {{ {label} }}"}).json()["results"]["bindings"][0]
    literal = f'"{row["l"]["value"]}"' + (f'@{row["l"]["xml:lang"]}' if "xml:lang" in row["l"] else "")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # An update's WHERE reads the same default graph as a query...
    copied = httpx.post(endpoint, data={"update": f"INSERT {{ kd:Scratch2 skos:prefLabel ?l }} WHERE {{ {label} }}"},
                        headers=auth)
    assert copied.status_code == 204, copied.text
    assert httpx.get(endpoint, params={"query": "ASK { kd:Scratch2 skos:prefLabel ?l }"}).json()["boolean"]
    # ... and what it deletes from there is gone for queries, while the source file's graph keeps it.
    deleted = httpx.post(endpoint, data={"update": f"DELETE DATA {{ kd:FitNets skos:prefLabel {literal} }}"},
                         headers=auth)
    assert deleted.status_code == 204, deleted.text
    assert not httpx.get(endpoint, params={"query": f"ASK {{ {label} }}"}).json()["boolean"]
    assert httpx.get(endpoint, params={"query": f"ASK {{ GRAPH ?g {{ {label} }} }}"}).json()["boolean"]


def test_relative_iris_resolve_against_the_endpoint(endpoint):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(endpoint, data={"update": "INSERT DATA { <relative-thing> a <Kind> }"},
                      headers=auth).status_code == 204
    rows = httpx.get(endpoint, params={"query": "SELECT ?s WHERE { ?s a <Kind> }"}).json()["results"]["bindings"]
    assert [r["s"]["value"] for r in rows] == [endpoint.rsplit("/", 1)[0] + "/relative-thing"]
