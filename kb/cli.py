"""The `kd` command: build, validate, query and serve the knowledge base."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pyoxigraph as ox

from .build import BuildError, build
from .config import Paths
from .formats import ALL_FORMATS, render
from .store import QueryError, StoreNotBuilt, default_timeout, open_store

DATA_DIR = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where built stores live (default: ./data in the project, or $KD_DATA_DIR).",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kdkb")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that is not installed
        return "unknown"


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="kd", message="%(prog)s %(version)s")
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
              help="Turtle sources (default: ./ontology, or the copy installed with the package when there "
                   "is no checkout; or $KD_ONTOLOGY_DIR).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Benchmark results as Turtle (default: ./results, or $KD_RESULTS_DIR; when given, it must exist).")
@click.option("--no-export", is_flag=True, help="Skip writing the N-Triples/RDF-XML/JSON-LD exports.")
def build_cmd(data_dir: Path | None, ontology_dir: Path | None, results_dir: Path | None, no_export: bool) -> None:
    """Build a new store and put it in service atomically.

    Every source file is parsed before anything is written: a syntax error names the
    file and line, and the store already in service keeps answering.
    """
    paths = Paths.from_env(data_dir=data_dir, ontology_dir=ontology_dir, results_dir=results_dir)
    for option, given, path in (("--ontology-dir", ontology_dir, paths.ontology_dir),
                                ("--results-dir", results_dir, paths.results_dir)):
        if given is not None and not path.is_dir():
            _fail(f"{option} {given}: no such directory", 2)
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
    try:
        report = validate_store(base.store, shapes or paths.shapes_file)
    except Exception as exc:  # noqa: BLE001 - rdflib raises many kinds for a bad shapes file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(f"cannot read the shapes file {shapes or paths.shapes_file}: {first}")
    if report.conforms:
        click.echo(f"conforms: {len(base)} triples, 0 violations")
        return
    for v in report.violations:
        click.echo(f"{v['severity']}: {v['focus']} {v['path']}: {v['message']}")
    _fail(f"{len(report.violations)} SHACL violation(s)")


@main.command("query")
@click.argument("sparql", required=False)
@click.option("-f", "--file", "query_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              default=None, help="Read the query from a UTF-8 file ('-' for standard input).")
@click.option("--format", "fmt", type=click.Choice(ALL_FORMATS), default=None,
              help="Output format: table (default for SELECT/ASK), json, xml, csv, tsv; "
                   "turtle (default for CONSTRUCT/DESCRIBE), ntriples, jsonld, rdfxml.")
@click.option("--timeout", type=float, default=None,
              help="Stop the query after this many seconds (default: 5, or $KD_QUERY_TIMEOUT, as the server).")
@DATA_DIR
def query_cmd(sparql: str | None, query_file: Path | None, fmt: str | None, timeout: float | None,
              data_dir: Path | None) -> None:
    """Run a SPARQL query over the store, with the endpoint's checks and time limit.

    The project's prefixes (kd:, kdo:, kdp:, skos:, rdfs:, dcterms:, ...) are predeclared.
    SERVICE and LOAD are refused, as by the endpoint.

    \b
    kd query "SELECT ?t WHERE { ?t rdfs:subClassOf kd:RelationBasedDistillation }"
    kd query --format csv -f my-query.rq
    """
    if (sparql is None) == (query_file is None):
        _fail("give the query either as an argument or with --file", 2)
    if timeout is not None and timeout <= 0:
        _fail(f"--timeout must be a number of seconds > 0, got {timeout:g}", 2)
    text = sparql if sparql is not None else _read_text(query_file)
    try:
        base = open_store(data_dir, timeout=timeout if timeout is not None else default_timeout())
        result = base.query(text)
        default = "table" if isinstance(result, (ox.QuerySolutions, ox.QueryBoolean)) else "turtle"
        click.echo(render(result, fmt or default).rstrip("\n"))
    except StoreNotBuilt as exc:
        _fail(str(exc))
    except QueryError as exc:
        _fail(str(exc), 2)
    except ValueError as exc:
        _fail(str(exc), 2)


def _read_text(path: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}", 2)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{path} is not UTF-8 text (byte {exc.start}: 0x{data[exc.start]:02x}); "
              "SPARQL queries are read as UTF-8", 2)


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
    `Authorization: Bearer <token>`. Every query runs under the time limit, in a worker
    process that cannot open network connections. The other settings (KD_PUBLIC_URL,
    KD_MAX_REQUEST_BYTES, KD_WORKER_MEMORY, ...) are listed in the README.
    """
    import logging
    import socket

    import uvicorn

    from .server.app import create_app
    from .server.settings import Settings, SettingError

    try:
        settings = Settings().with_options(host=host, port=port, data_dir=data_dir,
                                           query_timeout=timeout, workers=workers)
    except SettingError as exc:
        _fail(str(exc), 2)
    if not Paths.from_env(data_dir=settings.data_dir).current_build.exists():
        _fail(f"no store built in {settings.data_dir}: run `kd build` first")
    try:  # bind first, so that a port in use is one line, and "serving on" is only said when true
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
    except (OSError, OverflowError) as exc:
        _fail(f"cannot listen on {settings.host}:{settings.port}: {getattr(exc, 'strerror', None) or exc}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kd").setLevel(logging.INFO)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))

    async def startup_and_say_so(sockets=None):
        await uvicorn.Server.startup(server, sockets=sockets)
        if server.started:
            click.echo(f"serving on {settings.base_url}  (SPARQL /sparql, API /api/docs, site /; "
                       f"updates {'enabled with token' if settings.update_token else 'disabled'})")

    server.startup = startup_and_say_so
    server.run(sockets=[sock])


@main.command("run")
@click.argument("technique", required=False)
@click.option("--experiment", default=None, help="Which experiment of the module (default: its first).")
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of the one-seed run.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="The largest epoch budget (default: the experiment's; the epoch is chosen on validation).")
@click.option("--temperature", type=float, default=None,
              help="The distillation temperature of the experiment's arms for this run (default: their own, "
                   "as in the stored result); only for experiments whose arms soften with a temperature.")
@click.option("--list", "list_all", is_flag=True, help="List the technique modules, their experiments and times.")
def run_cmd(technique: str | None, experiment: str | None, seed: int, epochs: int | None,
            temperature: float | None, list_all: bool) -> None:
    """Quick teaching run of one technique: one seed of one experiment, printed beside the
    stored multi-seed benchmark result of the same experiment.

    --temperature T replaces the distillation temperature of the experiment's arms for this
    one run (the stored result keeps its own, so the two are no longer like for like);
    `kd bench` always uses each experiment's own.

    \b
    kd run --list
    kd run soft_targets
    kd run soft_targets --temperature 2
    kd run decoupled_kd --experiment dkd-vs-kd-cnn --seed 3
    """
    from reference_impl import registry  # torch is imported here, never by the server

    if list_all or not technique:
        from reference_impl.harness.results import expected_teaching_seconds
        for name in registry.technique_names():
            module = registry.load(name)
            click.echo(name)
            for x in module.EXPERIMENTS:
                expected = expected_teaching_seconds(module, x)
                estimate = (f"{expected[1]} {expected[0]:.0f} s" if expected is not None
                            else "time not measured yet")
                click.echo(f"    {x.key:<28} {estimate:<22} {x.title}")
        return
    try:
        module = registry.load(technique)
    except ValueError as exc:
        _fail(str(exc), 2)
    from reference_impl.harness.bench import check_temperature, find_experiment, quick_run
    try:  # the options are checked before anything runs; an error in training stays a traceback
        check_temperature(module, find_experiment(module, experiment), temperature)
    except ValueError as exc:
        _fail(str(exc), 2)
    quick_run(module, experiment, seed=seed, epochs=epochs, temperature=temperature)


@main.command("bench")
@click.argument("techniques", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Benchmark every technique module.")
@click.option("--seeds", type=int, default=None,
              help="Run this many seeds (at least 3) instead of the number the power calculation plans.")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write (default: KD_RESULTS_DIR, else results/).")
@click.option("--verify", is_flag=True,
              help="Re-run the stored seeds and check the verdict and mean reproduce (writes nothing).")
@click.option("--experiment", default=None,
              help="Only this experiment of the (one) technique; its other stored results are kept.")
def bench_cmd(techniques: tuple[str, ...], run_all: bool, seeds: int | None, results_dir: Path | None,
              verify: bool, experiment: str | None) -> None:
    """Full benchmark: plans the seeds from a pilot, runs every experiment, writes
    <name>.ttl and .png, and re-adjusts the family of all claims (family.ttl, forest.png).

    --experiment KEY runs one experiment of one technique and replaces only its result in
    <name>.ttl, keeping the module's other stored experiments (and redrawing the plot with them).

    Run `kd build` afterwards to load the results into the store.
    """
    from reference_impl import registry
    from reference_impl.harness.bench import benchmark
    from reference_impl.harness.results import results_dir as resolve_results_dir
    from reference_impl.harness.stats import MIN_SEEDS

    if seeds is not None and seeds < MIN_SEEDS:
        _fail(f"a benchmark needs at least {MIN_SEEDS} seeds, got {seeds}", 2)
    if verify and seeds is not None:
        _fail("--verify re-runs the stored seeds; it takes no --seeds", 2)
    names = registry.technique_names() if run_all else list(techniques)
    if not names:
        _fail("name a technique (see `kd run --list`) or pass --all", 2)
    if experiment is not None and (run_all or len(names) != 1 or verify):
        _fail("--experiment applies to one technique, without --all or --verify", 2)
    try:
        modules = [registry.load(n) for n in names]
        if experiment is not None:
            from reference_impl.harness.bench import find_experiment
            find_experiment(modules[0], experiment)
    except ValueError as exc:
        _fail(str(exc), 2)
    directory = resolve_results_dir(results_dir)
    if verify:
        from reference_impl.harness.verify import verify
        failed = [m for m in modules if not verify(m, directory)]
        if failed:
            _fail("not reproduced: " + ", ".join(m.__name__.rsplit(".", 1)[-1] for m in failed), 1)
        return
    if results_dir is not None and not results_dir.parent.exists():
        _fail(f"--results-dir: {results_dir.parent} does not exist", 2)
    click.echo(f"writing results to {directory}")
    for module in modules:
        benchmark(module, tuple(range(seeds)) if seeds else None, directory=directory, experiment=experiment)


@main.command("regimes")
@click.argument("techniques", nargs=-1)
@click.option("--seeds", type=int, default=None,
              help="How many seeds per point (at least 3; default 5: seeds 0-4).")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write regimes.ttl and regimes.png (default: KD_RESULTS_DIR, else results/).")
def regimes_cmd(techniques: tuple[str, ...], seeds: int | None, results_dir: Path | None) -> None:
    """Regime curves: each technique's gain over hard labels by labelled fraction
    (1-100%) and by student size (MLP 16, 64, 256). About 30 minutes on a 2-core CPU.

    \b
    kd regimes                              soft targets, DKD, RKD and SP
    kd regimes soft_targets --seeds 3
    """
    from reference_impl.harness import regimes
    from reference_impl.harness.results import results_dir as resolve_results_dir
    from reference_impl.harness.stats import MIN_SEEDS

    names = techniques or tuple(regimes.TECHNIQUES)
    unknown = [n for n in names if n not in regimes.TECHNIQUES]
    if unknown:
        _fail(f"no regime curve for {', '.join(unknown)}: choose among {', '.join(regimes.TECHNIQUES)}", 2)
    if seeds is not None and seeds < MIN_SEEDS:
        _fail(f"regime curves need at least {MIN_SEEDS} seeds per point, got {seeds}", 2)
    if results_dir is not None and not results_dir.parent.exists():
        _fail(f"--results-dir: {results_dir.parent} does not exist", 2)
    directory = resolve_results_dir(results_dir)
    click.echo(f"writing results to {directory}")
    regimes.main(names, tuple(range(seeds)) if seeds else regimes.SEEDS, directory)


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
