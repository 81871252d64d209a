"""Build the knowledge base: ontology/*.ttl and results/**/*.ttl into a pyoxigraph store.

A build never touches the store in service until it has fully succeeded:

1. every source file is parsed first; a syntax error raises `BuildError` naming the file
   and line, and nothing is written;
2. the new store is written into a fresh directory `data/builds/<id>.partial`;
3. derived triples (skos:broader/narrower from rdfs:subClassOf, mls:implements from
   kdo:implementedBy) go into their own named graph, so asserted and derived stay apart;
   the default graph is then the merge of all those graphs, materialized, so that queries
   (which read the default graph) and updates (which read and write it) see the same data;
4. exports (Turtle, N-Triples, N-Quads, RDF/XML, JSON-LD) and a manifest are written
   beside it;
5. the directory is renamed and the `data/current` symlink is replaced with `os.replace`,
   which is atomic on POSIX. A build killed at any point before this step leaves
   `current` pointing at the previous, intact build.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox

from .config import Paths
from .formats import serialize_rdf
from .namespaces import GRAPH, INFERRED_GRAPH, KD, PREFIXES

KEEP_PREVIOUS_BUILDS = 2

EXPORT_FORMATS: dict[str, ox.RdfFormat] = {
    "ttl": ox.RdfFormat.TURTLE,
    "nt": ox.RdfFormat.N_TRIPLES,
    "nq": ox.RdfFormat.N_QUADS,
    "rdf": ox.RdfFormat.RDF_XML,
    "jsonld": ox.RdfFormat.JSON_LD,
}

# Each rule is a CONSTRUCT over the union of all graphs; its triples go into the inferred
# graph, in this order (later rules see the output of earlier ones).
INFERENCE_RULES: dict[str, str] = {
    "broader from subClassOf": """
        CONSTRUCT { ?c skos:broader ?p }
        WHERE { ?c rdfs:subClassOf ?p . ?c a skos:Concept . ?p a skos:Concept . FILTER(?c != ?p) }""",
    "narrower as inverse of broader": """
        CONSTRUCT { ?p skos:narrower ?c } WHERE { ?c skos:broader ?p }""",
    "hasTopConcept as inverse of topConceptOf": """
        CONSTRUCT { ?s skos:hasTopConcept ?c } WHERE { ?c skos:topConceptOf ?s }""",
    "implements as inverse of implementedBy": """
        CONSTRUCT { ?i mls:implements ?c } WHERE { ?c kdo:implementedBy ?i }""",
}


class BuildError(Exception):
    """A build could not be made; the store in service is unchanged."""


@dataclass
class SourceFile:
    path: Path
    graph: str
    quads: list[ox.Quad] = field(default_factory=list)


@dataclass
class BuildReport:
    directory: Path
    files: int
    triples: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"built {self.triples} triples from {self.files} files "
            f"in {self.seconds:.2f} s -> {self.directory}"
        )


def source_files(paths: Paths) -> list[tuple[Path, str]]:
    """(file, named graph) for every Turtle file the store is built from, in a stable order."""
    if not paths.ontology_dir.is_dir():
        raise BuildError(f"ontology directory not found: {paths.ontology_dir}")
    found = [(p, f"{GRAPH}ontology/{p.stem}") for p in sorted(paths.ontology_dir.glob("*.ttl"))]
    if not found:
        raise BuildError(f"no .ttl files in {paths.ontology_dir}")
    if paths.results_dir.is_dir():
        for p in sorted(paths.results_dir.rglob("*.ttl")):
            rel = p.relative_to(paths.results_dir).with_suffix("").as_posix()
            found.append((p, f"{GRAPH}results/{rel}"))
    return found


def parse_source(path: Path, graph: str) -> SourceFile:
    """Parse one Turtle file; a syntax error becomes a BuildError naming file and line."""
    try:
        # Blank-node labels are only unique within a file: rename them so that two files'
        # `_:b0` never merge into one node.
        graph_node = ox.NamedNode(graph)
        quads = [
            ox.Quad(t.subject, t.predicate, t.object, graph_node)
            for t in ox.parse(path=str(path), format=ox.RdfFormat.TURTLE, rename_blank_nodes=True)
        ]
    except SyntaxError as exc:
        line = f":{exc.lineno}" if exc.lineno else ""
        message = str(exc.msg if hasattr(exc, "msg") and exc.msg else exc)
        raise BuildError(f"{path}{line}: Turtle syntax error: {message}") from exc
    except OSError as exc:
        raise BuildError(f"{path}: cannot read: {exc}") from exc
    return SourceFile(path, graph, quads)


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build(paths: Paths | None = None, *, export: bool = True) -> BuildReport:
    """Build a new store from the sources and put it in service atomically."""
    paths = paths or Paths.from_env()
    started = time.perf_counter()
    sources = [parse_source(p, g) for p, g in source_files(paths)]  # all-or-nothing parse

    builds_dir = paths.data_dir / "builds"
    builds_dir.mkdir(parents=True, exist_ok=True)
    _remove_partial_builds(builds_dir)
    build_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    partial = builds_dir / f"{build_id}.partial"
    try:
        partial.mkdir()
        store = ox.Store(str(partial / "store"))
        for src in sources:
            store.extend(src.quads)
        inferred = ox.NamedNode(INFERRED_GRAPH)
        for rule in INFERENCE_RULES.values():
            derived = store.query(rule, prefixes=PREFIXES, use_default_graph_as_union=True)
            store.extend([ox.Quad(t.subject, t.predicate, t.object, inferred) for t in derived])
        # The default graph: every triple of every named graph, once.
        store.extend([ox.Quad(q.subject, q.predicate, q.object, ox.DefaultGraph()) for q in store])
        _check_sanity(store)
        triples = sum(1 for _ in store.quads_for_pattern(None, None, None, ox.DefaultGraph()))
        if export:
            write_exports(store, partial / "exports")
        store.flush()
        del store
        manifest = {
            "id": build_id,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "triples": triples,
            "files": [
                {
                    "path": str(s.path.relative_to(paths.root)) if s.path.is_relative_to(paths.root) else str(s.path),
                    "graph": s.graph,
                    "triples": len(s.quads),
                    "sha256": hashlib.sha256(s.path.read_bytes()).hexdigest(),
                }
                for s in sources
            ],
            "git_commit": _git_commit(paths.root),
            "pyoxigraph": ox.__version__,
            "python": platform.python_version(),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
        final = builds_dir / build_id
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _swap_current(paths.current_build, final)
    _prune_old_builds(builds_dir, keep={final.name, *_in_service(paths)})
    return BuildReport(final, len(sources), triples, time.perf_counter() - started)


def _check_sanity(store: ox.Store) -> None:
    root_defined = store.query(
        f"""ASK {{ <{KD}KnowledgeDistillation> <{PREFIXES['kdo']}termId> "AI-0279" ;
                    <{PREFIXES['rdfs']}subClassOf> <{KD}TrainingMethod> }}""",
        use_default_graph_as_union=True)
    if not root_defined:
        raise BuildError("the built store does not define kd:KnowledgeDistillation (AI-0279, "
                         "subclass of kd:TrainingMethod): refusing to serve it")


def write_exports(store: ox.Store, directory: Path) -> None:
    """Write the whole knowledge base in every serialization.

    N-Quads is the whole dataset (the default graph and every named graph: what the SPARQL
    endpoint's workers load); the others are its default graph, one flat set of triples.
    """
    directory.mkdir(parents=True, exist_ok=True)
    quads = list(store)
    triples = sorted((ox.Triple(q.subject, q.predicate, q.object) for q in quads
                      if isinstance(q.graph_name, ox.DefaultGraph)), key=str)
    for ext, fmt in EXPORT_FORMATS.items():
        target = directory / f"kdkb.{ext}"
        # Only N-Quads keeps the named graphs; the others are one flat graph.
        data = quads if fmt == ox.RdfFormat.N_QUADS else triples
        serialize_rdf(data, fmt, str(target))


def _swap_current(link: Path, target: Path) -> None:
    tmp = link.with_name(f".current.{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


def _in_service(paths: Paths) -> set[str]:
    link = paths.current_build
    return {link.resolve().name} if link.is_symlink() else set()


def _remove_partial_builds(builds_dir: Path) -> None:
    """Leftovers of killed builds; never in service, so always safe to delete."""
    for p in builds_dir.glob("*.partial"):
        shutil.rmtree(p, ignore_errors=True)


def _prune_old_builds(builds_dir: Path, keep: set[str]) -> None:
    # Keep a few previous builds: a server that opened one read-only may still be using it.
    finished = sorted((p for p in builds_dir.iterdir() if p.is_dir() and not p.name.endswith(".partial")),
                      key=lambda p: p.name)
    for old in finished[: max(0, len(finished) - KEEP_PREVIOUS_BUILDS - 1)]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
