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
