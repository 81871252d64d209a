"""Linked-Data IRIs, downloads and the JSON API against a running server."""

from __future__ import annotations

import httpx
import pytest
import rdflib

from kb.namespaces import KD, KDP

from .server_harness import running_server

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def url(built, paths):
    with running_server(paths.data_dir, KD_WORKERS="2") as (base, _):
        yield base


@pytest.mark.parametrize("accept, fmt", [("text/turtle", "turtle"), ("application/ld+json", "json-ld"),
                                         ("application/n-triples", "nt"), ("application/rdf+xml", "xml")])
def test_concept_iri_negotiates_rdf(url, accept, fmt):
    r = httpx.get(url + "/id/DeepMutualLearning", headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"].startswith(accept)
    assert "Accept" in r.headers["vary"]
    g = rdflib.Graph().parse(data=r.text, format=fmt)
    dml = rdflib.URIRef(KD + "DeepMutualLearning")
    assert (dml, rdflib.RDFS.subClassOf, rdflib.URIRef(KD + "OnlineDistillation")) in g


def test_paper_iri_resolves_with_author_list(url):
    r = httpx.get(url + "/paper/hinton2015", headers={"Accept": "text/turtle"})
    g = rdflib.Graph().parse(data=r.text, format="turtle")
    bibo = rdflib.Namespace("http://purl.org/ontology/bibo/")
    authors = rdflib.collection.Collection(g, g.value(rdflib.URIRef(KDP + "hinton2015"), bibo.authorList))
    assert [str(a) for a in authors] == ["Geoffrey Hinton", "Oriol Vinyals", "Jeff Dean"]


def test_browser_is_redirected_to_the_page(url):
    r = httpx.get(url + "/id/DeepMutualLearning", headers={"Accept": BROWSER})
    assert r.status_code == 303 and r.headers["location"].endswith("/concepts/DeepMutualLearning/")


@pytest.mark.parametrize("path", ["/id/NoSuchConcept", "/paper/nosuch", "/id/bad%3E%20name"])
def test_unknown_iri_is_404(url, path):
    assert httpx.get(url + path, headers={"Accept": "text/turtle"}).status_code == 404


def test_iri_406(url):
    assert httpx.get(url + "/id/FitNets", headers={"Accept": "image/png"}).status_code == 406


@pytest.mark.parametrize("ext, fmt", [("ttl", "turtle"), ("nt", "nt"), ("rdf", "xml"), ("jsonld", "json-ld"),
                                      ("nq", "nquads")])
def test_whole_ontology_downloads(url, ext, fmt, built):
    r = httpx.get(url + f"/ontology.{ext}")
    assert r.status_code == 200
    if fmt == "nquads":
        ds = rdflib.Dataset().parse(data=r.text, format="nquads")
        assert sum(len(g) for g in ds.graphs()) >= len(built)
    else:
        assert len(rdflib.Graph().parse(data=r.text, format=fmt)) > 1000


def test_ontology_negotiated(url):
    r = httpx.get(url + "/ontology", headers={"Accept": "application/ld+json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/ld+json")


# ---------------------------------------------------------------- JSON API
def test_api_concepts_filter_by_axis_and_role(url):
    rows = httpx.get(url + "/api/concepts", params={"axis": "SchemeAxis", "role": "technique"}).json()
    names = {r["name"] for r in rows}
    assert {"DeepMutualLearning", "BeYourOwnTeacher", "SoftTargetDistillation"} <= names
    assert all("SchemeAxis" in r["axes"] for r in rows)
    under = httpx.get(url + "/api/concepts", params={"under": "RelationBasedDistillation"}).json()
    assert {r["name"] for r in under} == {"RelationalKD", "SimilarityPreservingKD",
                                          "ContrastiveRepresentationDistillation"}


def test_api_concept_detail(url):
    c = httpx.get(url + "/api/concepts/DeepMutualLearning").json()
    assert {p["iri"] for p in c["parents"]} == {KD + "OnlineDistillation", KD + "ResponseBasedDistillation"}
    assert c["introduced_in"][0]["iri"] == KDP + "zhang2018dml"
    assert c["role"] == "technique" and c["objective"]
    root = httpx.get(url + "/api/concepts/KnowledgeDistillation").json()
    assert root["term_id"] == "AI-0279" and "http://www.wikidata.org/entity/Q74253442" in root["exact_match"]
    assert len(root["children"]) >= 9


def test_api_papers(url):
    papers = httpx.get(url + "/api/papers").json()
    hinton = next(p for p in papers if p["key"] == "hinton2015")
    assert hinton["year"] == "2015" and hinton["authors"][0] == "Geoffrey Hinton"
    one = httpx.get(url + "/api/papers/park2019").json()
    assert any(c["iri"] == KD + "RelationalKD" for c in one["introduced"])


@pytest.mark.parametrize("path", ["/api/concepts/NoSuch", "/api/papers/nosuch", "/api/concepts/a%7Db"])
def test_api_404(url, path):
    assert httpx.get(url + path).status_code == 404


def test_api_bad_parameter_is_422(url):
    assert httpx.get(url + "/api/concepts", params={"role": "wizard"}).status_code == 422


def test_openapi_docs(url):
    spec = httpx.get(url + "/api/openapi.json").json()
    assert "/api/concepts" in spec["paths"] and "/sparql" in spec["paths"]
    assert httpx.get(url + "/api/docs").status_code == 200


def test_api_results_come_from_the_results_rdf(url, built):
    results = httpx.get(url + "/api/results").json()
    expected = built.select("SELECT ?r ?v WHERE { ?r a kdo:BenchmarkResult ; kdo:verdict ?v }")
    assert {r["iri"]: r["verdict"] for r in results} == {e["r"]: e["v"] for e in expected}
    for r in results:
        assert r["seeds"] >= 3 and r["arms"] and r["ci_low"] <= r["mean_difference"] <= r["ci_high"]
        assert r["git_commit"] and r["torch_version"] and r["cpu"]
    if results:
        one = results[0]
        filtered = httpx.get(url + "/api/results", params={"technique": one["technique"]}).json()
        assert filtered and all(r["technique"] == one["technique"] for r in filtered)
    assert httpx.get(url + "/api/results", params={"verdict": "maybe"}).status_code == 422
