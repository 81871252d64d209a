"""Committed benchmark results: loaded into the store, consistent, with provenance."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def results(built):
    return built.select("""
        SELECT ?r ?t ?plot ?n WHERE { ?r a kdo:BenchmarkResult ; kdo:technique ?t ; kdo:plot ?plot ; kdo:nSeeds ?n }""")


def test_every_results_file_is_in_the_store(built):
    files = sorted((REPO / "results").glob("*.ttl"))
    graphs = {r["g"] for r in built.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { "
                                           "{ ?s a kdo:BenchmarkResult } UNION { ?s a kdo:RegimeCurve } } }")}
    assert {f"https://w3id.org/kdkb/graph/results/{f.stem}" for f in files} == graphs


def test_results_are_about_implemented_techniques_and_have_plots(built):
    for r in results(built):
        assert built.ask(f"ASK {{ <{r['t']}> kdo:implementedBy ?i }}"), r["t"]
        assert (REPO / r["plot"]).exists(), r["plot"]
        assert r["n"] >= 3


def test_arm_summaries_agree_with_per_seed_evaluations(built):
    """mean and sd stored for an arm are those of its per-seed evaluations: nothing typed in by hand."""
    arms = built.select("""
        SELECT ?a ?mean ?sd WHERE { ?r kdo:hasArm ?a . ?a kdo:meanAccuracy ?mean ; kdo:sdAccuracy ?sd }""")
    if not arms:
        pytest.skip("no results committed yet")
    for arm in arms:
        values = [row["v"] for row in built.select(
            f"SELECT ?v WHERE {{ <{arm['a']}> kdo:evaluation ?e . ?e mls:hasValue ?v }}")]
        assert len(values) >= 3
        assert statistics.mean(values) == pytest.approx(arm["mean"], abs=1e-6)
        assert statistics.stdev(values) == pytest.approx(arm["sd"], abs=1e-6)


def test_the_family_file_is_up_to_date_with_the_results(built):
    """family.ttl's adjusted p-values and verdicts are Holm over the module files as they are now."""
    from reference_impl.harness.bench import family_size
    from reference_impl.harness.results import adjust_family, read_claims
    claims = adjust_family(read_claims(REPO / "results"), family_size())
    stored = {row["r"]: row for row in built.select("""
        SELECT ?r ?v ?padj ?peqadj ?m WHERE { ?r a kdo:BenchmarkResult ; kdo:verdict ?v ; kdo:adjustedPValue ?padj ;
                                              kdo:adjustedEquivalencePValue ?peqadj ; kdo:familySize ?m }""")}
    assert set(stored) == {c["iri"] for c in claims}, "rerun `kd bench` (or update_family) after changing results"
    for c in claims:
        row = stored[c["iri"]]
        assert row["m"] == family_size()
        assert row["padj"] == pytest.approx(c["p_adjusted"], abs=1e-6)
        assert row["peqadj"] == pytest.approx(c["peq_adjusted"], abs=1e-6)
        assert row["v"] == c["verdict"]


def test_verdicts_use_the_adjusted_p_values(built):
    from reference_impl.harness import stats
    rows = built.select("""SELECT ?v ?mean ?padj ?peqadj ?p ?lo ?hi WHERE {
        ?r kdo:verdict ?v ; kdo:meanDifference ?mean ; kdo:adjustedPValue ?padj ; kdo:pValue ?p ;
           kdo:adjustedEquivalencePValue ?peqadj ; kdo:ciLow ?lo ; kdo:ciHigh ?hi }""")
    assert rows
    for row in rows:
        assert row["v"] == stats.verdict(row["mean"], row["padj"], row["peqadj"])
        assert row["padj"] >= row["p"] - 1e-9  # adjusting never makes a claim look stronger
        if row["v"] in ("held", "contradicted"):  # decisive after adjustment, so decisive before
            assert row["lo"] > 0 or row["hi"] < 0


def test_every_contradicted_or_no_effect_verdict_is_explained(built):
    unexplained = built.select("""SELECT ?r ?v WHERE {
        ?r a kdo:BenchmarkResult ; kdo:verdict ?v .
        FILTER(?v IN ("contradicted", "no practical effect"))
        FILTER NOT EXISTS { ?r kdo:interpretation ?text } }""")
    assert not unexplained, f"add an interpretation to results/interpretations.ttl for {unexplained}"
    orphans = built.select("""SELECT ?r WHERE { ?r kdo:interpretation ?text FILTER NOT EXISTS { ?r kdo:claim ?c } }""")
    assert not orphans, f"interpretations of results that do not exist: {orphans}"
