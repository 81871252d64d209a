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
    graphs = {r["g"] for r in built.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s a kdo:BenchmarkResult } }")}
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


def test_verdict_follows_the_interval(built):
    for row in built.select("SELECT ?v ?lo ?hi WHERE { ?r kdo:verdict ?v ; kdo:ciLow ?lo ; kdo:ciHigh ?hi }"):
        expected = "held" if row["lo"] > 0 else ("contradicted" if row["hi"] < 0 else "inconclusive")
        assert row["v"] == expected
