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
    assert "SPARQL syntax error" in result.output and "1:" in result.output


def test_format_that_does_not_fit_the_query(run):
    result = run("query", "--format", "turtle", "SELECT ?x WHERE { ?x ?p ?o } LIMIT 1")
    assert result.exit_code == 2 and "CONSTRUCT" in result.output


def test_validate_and_info(run):
    assert run("validate").exit_code == 0
    info = run("info")
    assert info.exit_code == 0 and "techniques" in info.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("kd ")


def test_query_refuses_service_and_unknown_prefixes(run):
    refused = run("query", "SELECT * WHERE { SERVICE <http://127.0.0.1:9/> { ?s ?p ?o } }")
    assert refused.exit_code == 2 and "SERVICE" in refused.output and "not allowed" in refused.output
    unknown = run("query", "SELECT * WHERE { ?s foo:bar ?o }")
    assert unknown.exit_code == 2 and "unknown prefix foo:" in unknown.output


def test_query_file_must_be_utf8(run, tmp_path):
    path = tmp_path / "latin1.rq"
    path.write_bytes("SELECT * WHERE { ?s ?p \"caf\u00e9\" }".encode("latin-1"))
    result = run("query", "--file", str(path))
    assert result.exit_code == 2 and "is not UTF-8" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_query_timeout_must_be_positive(run):
    result = run("query", "--timeout", "0", "ASK {}")
    assert result.exit_code == 2 and "--timeout" in result.output


def test_build_with_a_missing_results_dir_fails(tmp_path):
    result = CliRunner().invoke(main, ["build", "--data-dir", str(tmp_path / "d"), "--results-dir",
                                       str(tmp_path / "missing")])
    assert result.exit_code == 2 and "--results-dir" in result.output and "no such directory" in result.output
    assert not (tmp_path / "d" / "current").exists()


def test_validate_with_a_broken_shapes_file_is_one_line(run, tmp_path):
    shapes = tmp_path / "shapes.ttl"
    shapes.write_text("@prefix sh: <http://www.w3.org/ns/shacl#> .\nthis is not turtle .\n")
    result = run("validate", "--shapes", str(shapes))
    assert result.exit_code == 1 and "cannot read the shapes file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args, env, message", [
    (["--port", "99999"], {}, "--port / KD_PORT must be between 1 and 65535, got 99999"),
    ([], {"KD_PORT": "abc"}, "KD_PORT must be an integer, got 'abc'"),
    (["--workers", "0"], {}, "--workers / KD_WORKERS must be >= 1"),
    ([], {"KD_WORKER_MEMORY": "lots"}, "KD_WORKER_MEMORY must be an integer, got 'lots'"),
    ([], {"KD_PUBLIC_URL": "example.org"}, "KD_PUBLIC_URL must start with http://"),
])
def test_serve_settings_errors_are_one_line(paths, built, args, env, message):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "kb.cli", "serve", "--data-dir", str(paths.data_dir), *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert done.returncode == 2 and done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "serving on" not in done.stdout


def test_serve_says_serving_only_once_bound(paths, built):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "kb.cli", "serve", "--data-dir", str(paths.data_dir),
                               "--port", str(port)], capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 1 and "serving on" not in done.stdout
    assert done.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(done.stderr.strip().splitlines()) == 1


def test_run_list_shows_experiments_and_their_expected_time():
    result = CliRunner().invoke(main, ["run", "--list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert "soft_targets" in lines
    row = next(line for line in lines if line.strip().startswith("soft-vs-hard"))
    assert "Soft targets vs hard labels" in row and ("measured" in row or "estimated" in row or "not measured" in row)


@pytest.mark.parametrize("args, message", [
    (["bench", "soft_targets", "--seeds", "2"], "at least 3 seeds"),
    (["bench", "soft_targets", "--verify", "--seeds", "3"], "takes no --seeds"),
    (["bench"], "name a technique"),
    (["bench", "nope"], "unknown technique"),
    (["run", "soft_targets", "--epochs", "0"], "--epochs"),
    (["run", "soft_targets", "--temperature", "0"], "error: --temperature must be a number > 0, got 0"),
    (["run", "soft_targets", "--temperature", "-2"], "error: --temperature must be a number > 0, got -2"),
    (["run", "born_again", "--temperature", "2"],
     "error: --temperature does not apply to born_again / ban-vs-teacher: no arm of this experiment softens"),
    (["bench", "soft_targets", "--temperature", "2"], "No such option"),  # a teaching-run option only
    (["bench", "soft_targets", "--experiment", "nope"], "no experiment 'nope' in soft_targets: choose one of"),
    (["bench", "soft_targets", "born_again", "--experiment", "soft-vs-hard"], "--experiment applies to one technique"),
    (["bench", "--all", "--experiment", "soft-vs-hard"], "--experiment applies to one technique"),
    (["bench", "soft_targets", "--verify", "--experiment", "soft-vs-hard"], "without --all or --verify"),
])
def test_bench_and_run_refuse_bad_options(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_bench_passes_one_experiment_and_the_seeds_through(monkeypatch, tmp_path):
    from reference_impl.harness import bench
    calls = []
    monkeypatch.setattr(bench, "benchmark", lambda module, seeds, **kw: calls.append((module.__name__, seeds, kw)))
    result = CliRunner().invoke(main, ["bench", "soft_targets", "--experiment", "three-percent", "--seeds", "4",
                                       "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == [("reference_impl.techniques.soft_targets", (0, 1, 2, 3),
                      {"directory": tmp_path, "experiment": "three-percent"})]


def test_run_rejects_an_unknown_experiment_naming_the_valid_ones():
    result = CliRunner().invoke(main, ["run", "soft_targets", "--experiment", "nope"])
    assert result.exit_code == 2 and "no experiment 'nope'" in result.output and "choose one of" in result.output


@pytest.mark.parametrize("args, message", [
    (["--seeds", "5"], "--seeds applies to --bench"),
    (["--bench", "--experiment", "x"], "--experiment, --seed and --epochs apply to a quick run"),
    (["--bench", "--seeds", "1"], "--seeds must be at least 3"),
    (["--experiment", "nope"], "no experiment 'nope'"),
    (["--bench", "--temperature", "2"], "--temperature applies to a quick run"),
])
def test_module_command_line_refuses_what_does_not_apply(args, message):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "reference_impl.techniques.soft_targets", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_run_help_documents_the_temperature_override():
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0 and "--temperature" in result.output
    assert "kd run soft_targets --temperature 2" in result.output and "kd bench" in result.output


def test_run_list_prefers_measured_teaching_times(tmp_path):
    (tmp_path / "teaching_times.json").write_text(
        '{"soft_targets/soft-vs-hard": {"seconds": 42.4, "epochs": 30, "cpu": "Test CPU", "date": "2026-12-01"}}')
    result = CliRunner().invoke(main, ["run", "--list"], env={"KD_RESULTS_DIR": str(tmp_path)})
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if line.strip().startswith("soft-vs-hard"))
    assert "measured 42 s" in row
    # no stored benchmark in that directory and no measurement: said plainly, not guessed
    row = next(line for line in result.output.splitlines() if line.strip().startswith("three-percent"))
    assert "time not measured yet" in row
