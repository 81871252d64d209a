"""The `kd` command as a person uses it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kb.cli import main


@pytest.fixture
def run(built, paths):
    runner = CliRunner()

    def _run(*args: str):
        return runner.invoke(main, [*args, "--data-dir", str(paths.data_dir)] if args[0] in
                             ("query", "validate", "info") else list(args))
    return _run


@pytest.mark.parametrize("command", [[], ["build"], ["validate"], ["query"], ["info"]])
def test_help(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_query_table(run):
    result = run("query", "SELECT ?t WHERE { ?t rdfs:subClassOf kd:RelationBasedDistillation } ORDER BY ?t")
    assert result.exit_code == 0, result.output
    assert "kd:RelationalKD" in result.output and "(3 rows)" in result.output


@pytest.mark.parametrize("fmt, check", [
    ("json", lambda out: len(json.loads(out)["results"]["bindings"]) == 3),
    ("csv", lambda out: out.splitlines()[0] == "t" and len(out.splitlines()) == 4),
    ("tsv", lambda out: out.splitlines()[0] == "?t" and len(out.splitlines()) == 4),
])
def test_query_formats(run, fmt, check):
    result = run("query", "--format", fmt,
                 "SELECT ?t WHERE { ?t rdfs:subClassOf kd:RelationBasedDistillation }")
    assert result.exit_code == 0 and check(result.output), result.output


def test_construct_as_turtle(run):
    result = run("query", "CONSTRUCT { kd:FitNets ?p ?o } WHERE { kd:FitNets ?p ?o }")
    assert result.exit_code == 0
    assert "kd:FitNets" in result.output and "@prefix" in result.output


def test_bad_query_is_a_clear_error(run):
    result = run("query", "SELECT ?x WHERE { ?x ?p }")
    assert result.exit_code == 2
    assert "bad SPARQL query" in result.output and "1:" in result.output


def test_format_that_does_not_fit_the_query(run):
    result = run("query", "--format", "turtle", "SELECT ?x WHERE { ?x ?p ?o } LIMIT 1")
    assert result.exit_code == 2 and "CONSTRUCT" in result.output


def test_validate_and_info(run):
    assert run("validate").exit_code == 0
    info = run("info")
    assert info.exit_code == 0 and "techniques" in info.output
