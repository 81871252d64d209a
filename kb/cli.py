"""The `kd` command: build, validate, query and serve the knowledge base."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .build import BuildError, build
from .config import Paths
from .formats import ALL_FORMATS, render
from .store import QueryError, StoreNotBuilt, open_store

DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where built stores live (default: ./data, or $KD_DATA_DIR).",
)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Knowledge-distillation knowledge base.

    \b
    kd build                      build the store from ontology/ and results/
    kd validate                   check the store against the SHACL shapes
    kd query "SELECT ..."         ask it a SPARQL question
    kd site build                 generate the documentation site into build-site/
    kd serve                      SPARQL endpoint, API and site on 127.0.0.1:8000
    """


@main.command("build")
@DATA_DIR
@click.option("--ontology-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Turtle sources (default: ./ontology).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Benchmark results as Turtle (default: ./results).")
@click.option("--no-export", is_flag=True, help="Skip writing the N-Triples/RDF-XML/JSON-LD exports.")
def build_cmd(data_dir: Path | None, ontology_dir: Path | None, results_dir: Path | None, no_export: bool) -> None:
    """Build a new store and put it in service atomically.

    Every source file is parsed before anything is written: a syntax error names the
    file and line, and the store already in service keeps answering.
    """
    paths = Paths.from_env(data_dir=data_dir, ontology_dir=ontology_dir, results_dir=results_dir)
    try:
        report = build(paths, export=not no_export)
    except BuildError as exc:
        _fail(f"{exc}\nthe previous store (if any) is unchanged and still in service")
    click.echo(str(report))


@main.command("validate")
@DATA_DIR
@click.option("--shapes", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="SHACL shapes file (default: ontology/shapes.ttl).")
def validate_cmd(data_dir: Path | None, shapes: Path | None) -> None:
    """Validate the store in service against the SHACL shapes. Exit 1 on any violation."""
    from .validate import validate_store

    paths = Paths.from_env(data_dir=data_dir)
    try:
        base = open_store(paths.data_dir)
    except StoreNotBuilt as exc:
        _fail(str(exc))
    report = validate_store(base.store, shapes or paths.shapes_file)
    if report.conforms:
        click.echo(f"conforms: {len(base)} triples, 0 violations")
        return
    for v in report.violations:
        click.echo(f"{v['severity']}: {v['focus']} {v['path']}: {v['message']}")
    _fail(f"{len(report.violations)} SHACL violation(s)")


@main.command("query")
@click.argument("sparql", required=False)
@click.option("-f", "--file", "query_file", type=click.File("r"), default=None,
              help="Read the query from a file ('-' for standard input).")
@click.option("--format", "fmt", type=click.Choice(ALL_FORMATS), default=None,
              help="Output format: table (default for SELECT/ASK), json, xml, csv, tsv; "
                   "turtle (default for CONSTRUCT/DESCRIBE), ntriples, jsonld, rdfxml.")
@DATA_DIR
def query_cmd(sparql: str | None, query_file, fmt: str | None, data_dir: Path | None) -> None:
    """Run a SPARQL query over the store.

    The project's prefixes (kd:, kdo:, kdp:, skos:, rdfs:, dcterms:, ...) are predeclared.

    \b
    kd query "SELECT ?t WHERE { ?t rdfs:subClassOf kd:RelationBasedDistillation }"
    kd query --format csv -f my-query.rq
    """
    if (sparql is None) == (query_file is None):
        _fail("give the query either as an argument or with --file", 2)
    text = sparql if sparql is not None else query_file.read()
    try:
        base = open_store(data_dir)
        result = base.query(text)
        import pyoxigraph as ox
        default = "turtle" if isinstance(result, ox.QueryTriples) else "table"
        click.echo(render(result, fmt or default).rstrip("\n"))
    except StoreNotBuilt as exc:
        _fail(str(exc))
    except QueryError as exc:
        _fail(f"bad SPARQL query: {exc}", 2)
    except ValueError as exc:
        _fail(str(exc), 2)


@main.command("serve")
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1, $KD_HOST).")
@click.option("--port", type=int, default=None, help="Port (default 8000, $KD_PORT).")
@DATA_DIR
@click.option("--timeout", type=float, default=None, help="Per-query time limit in seconds (default 5, $KD_QUERY_TIMEOUT).")
@click.option("--workers", type=int, default=None, help="Query worker processes (default 4, $KD_WORKERS).")
def serve_cmd(host: str | None, port: int | None, data_dir: Path | None, timeout: float | None,
              workers: int | None) -> None:
    """Serve the SPARQL endpoint (/sparql), the JSON API (/api), Linked Data IRIs and the site (/).

    Read-only unless KD_UPDATE_TOKEN is set; then SPARQL Update needs
    `Authorization: Bearer <token>`. Every query runs under the time limit.
    """
    import dataclasses

    import uvicorn

    from .server.app import create_app
    from .server.settings import Settings

    try:
        settings = Settings()
        changes = {k: v for k, v in {"host": host, "port": port, "data_dir": data_dir,
                                     "query_timeout": timeout, "workers": workers}.items() if v is not None}
        settings = dataclasses.replace(settings, **changes)
    except ValueError as exc:
        _fail(str(exc), 2)
    if not Paths.from_env(data_dir=settings.data_dir).current_build.exists():
        _fail(f"no store built in {settings.data_dir}: run `kd build` first")
    click.echo(f"serving on http://{settings.host}:{settings.port}  "
               f"(SPARQL /sparql, API /api/docs, site /; updates "
               f"{'enabled with token' if settings.update_token else 'disabled'})")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


@main.command("run")
@click.argument("technique", required=False)
@click.option("--experiment", default=None, help="Which experiment of the module (default: its first).")
@click.option("--list", "list_all", is_flag=True, help="List the technique modules.")
def run_cmd(technique: str | None, experiment: str | None, list_all: bool) -> None:
    """Quick teaching run of one technique: teacher, student from scratch, distilled student.

    \b
    kd run --list
    kd run soft_targets
    """
    from reference_impl import registry  # torch is imported here, never by the server

    if list_all or not technique:
        for name in registry.technique_names():
            click.echo(name)
        return
    try:
        module = registry.load(technique)
    except ValueError as exc:
        _fail(str(exc), 2)
    from reference_impl.harness.bench import quick_run
    quick_run(module, experiment)


@main.command("bench")
@click.argument("techniques", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Benchmark every technique module.")
@click.option("--seeds", type=int, default=None, help="Number of seeds (default: each experiment's, at least 3).")
def bench_cmd(techniques: tuple[str, ...], run_all: bool, seeds: int | None) -> None:
    """Full benchmark: every experiment and seed; writes results/<name>.ttl and .png.

    Run `kd build` afterwards to load the results into the store.
    """
    from reference_impl import registry
    from reference_impl.harness.bench import benchmark

    if seeds is not None and seeds < 3:
        _fail("a benchmark needs at least 3 seeds", 2)
    names = registry.technique_names() if run_all else list(techniques)
    if not names:
        _fail("name a technique (see `kd run --list`) or pass --all", 2)
    try:
        modules = [registry.load(n) for n in names]
    except ValueError as exc:
        _fail(str(exc), 2)
    for module in modules:
        benchmark(module, tuple(range(seeds)) if seeds else None)


@main.group("site")
def site_group() -> None:
    """The documentation site, generated from the knowledge base."""


@site_group.command("build")
@DATA_DIR
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build directory (default: ./build-site): markdown in <out>/docs, HTML in <out>/html.")
def site_build_cmd(data_dir: Path | None, out: Path | None) -> None:
    """Render the site from the store in service and build it with mkdocs (strict).

    Queries the store with SPARQL, renders site/templates into markdown, and builds the
    HTML with mkdocs-material into <out>/html, which `kd serve` serves at /. The previous
    site stays in place until the new one is complete.
    """
    from .sitegen import SiteBuildError, build_site

    try:
        base = open_store(data_dir)
        report = build_site(base, out)
    except StoreNotBuilt as exc:
        _fail(str(exc))
    except SiteBuildError as exc:
        _fail(str(exc))
    click.echo(str(report))


@main.command("info")
@DATA_DIR
def info_cmd(data_dir: Path | None) -> None:
    """Counts of concepts, techniques and papers in the store in service."""
    try:
        base = open_store(data_dir)
    except StoreNotBuilt as exc:
        _fail(str(exc))
    from .queries import counts
    for name, value in counts(base).items():
        click.echo(f"{name:<22}{value}")
    click.echo(f"{'build':<22}{base.build_dir.name}")


if __name__ == "__main__":
    main()
