"""Building the store: speed, atomicity, clear errors, exports."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pyoxigraph as ox
import pytest
import rdflib

import kb
from kb.build import EXPORT_FORMATS, BuildError
from kb.config import Paths

REPO = Path(__file__).resolve().parent.parent
ASK_KD = "ASK { kd:KnowledgeDistillation kdo:termId 'AI-0279' }"


@pytest.fixture
def sandbox(tmp_path: Path) -> Paths:
    """A private copy of the ontology that a test may break."""
    shutil.copytree(REPO / "ontology", tmp_path / "ontology")
    return Paths.from_env(root=REPO, ontology_dir=tmp_path / "ontology",
                          results_dir=tmp_path / "results", data_dir=tmp_path / "data")


def test_build_reports_what_it_built(sandbox):
    # How long a build takes is measured by scripts/time_budgets.py, not asserted here.
    report = kb.build(sandbox)
    assert report.triples > 1000 and report.files == len(list(sandbox.ontology_dir.glob("*.ttl")))
    assert report.directory == kb.open(sandbox.data_dir).build_dir


def test_broken_turtle_names_file_and_line_and_old_store_still_answers(sandbox):
    kb.build(sandbox)
    before = kb.open(sandbox.data_dir)
    size = len(before)
    broken = sandbox.ontology_dir / "knowledge.ttl"
    lines = broken.read_text().splitlines()
    lines.insert(20, 'kd:Broken skos:prefLabel "no closing quote ;')
    broken.write_text("\n".join(lines) + "\n")

    with pytest.raises(BuildError) as err:
        kb.build(sandbox)
    message = str(err.value)
    assert "knowledge.ttl:" in message
    line = int(message.split("knowledge.ttl:")[1].split(":")[0])
    assert 21 <= line <= 23, message  # the line we broke (the parser may report the next one)

    after = kb.open(sandbox.data_dir)
    assert after.build_dir == before.build_dir
    assert len(after) == size and after.ask(ASK_KD)
    assert not list((sandbox.data_dir / "builds").glob("*.partial"))


def test_killed_build_leaves_previous_store_in_service(sandbox, monkeypatch):
    kb.build(sandbox)
    in_service = kb.open(sandbox.data_dir).build_dir

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing exports")

    build_module = importlib.import_module("kb.build")  # `kb.build` the attribute is the function
    monkeypatch.setattr(build_module, "write_exports", die)
    with pytest.raises(KeyboardInterrupt):
        kb.build(sandbox)
    base = kb.open(sandbox.data_dir)
    assert base.build_dir == in_service and base.ask(ASK_KD)
    # a partial left behind by a hard kill (SIGKILL) is never served and is swept next time
    (sandbox.data_dir / "builds" / "19990101T000000-1-1.partial").mkdir()
    monkeypatch.undo()
    kb.build(sandbox)
    assert not list((sandbox.data_dir / "builds").glob("*.partial"))


def test_store_that_lost_the_root_concept_is_refused(sandbox):
    kb.build(sandbox)
    core = sandbox.ontology_dir / "core.ttl"
    core.write_text(core.read_text().replace("kd:KnowledgeDistillation", "kd:SomethingElse"))
    with pytest.raises(BuildError, match="KnowledgeDistillation"):
        kb.build(sandbox)
    assert kb.open(sandbox.data_dir).ask(ASK_KD)


def test_open_before_build_is_a_clear_error(tmp_path):
    with pytest.raises(kb.StoreNotBuilt, match="kd build"):
        kb.open(tmp_path / "nothing-here")


@pytest.mark.parametrize("ext", sorted(EXPORT_FORMATS))
def test_exports_round_trip(built, ext):
    path = built.build_dir / "exports" / f"kdkb.{ext}"
    assert path.stat().st_size > 0
    fmt = EXPORT_FORMATS[ext]
    parsed = list(ox.parse(path=str(path), format=fmt))
    distinct_triples = {(q.subject, q.predicate, q.object) for q in built.store}
    if fmt == ox.RdfFormat.N_QUADS:  # the only export that keeps the named graphs: the whole dataset
        assert len(parsed) == len(built.store)
    else:
        assert len(parsed) == len(distinct_triples)
    if ext in ("ttl", "rdf", "jsonld", "nt"):  # a second, independent parser agrees
        g = rdflib.Graph().parse(path, format={"ttl": "turtle", "rdf": "xml", "jsonld": "json-ld", "nt": "nt"}[ext])
        assert len(g) == len(distinct_triples)


def test_default_graph_is_the_merge_of_the_named_graphs(built):
    """Queries and updates read the default graph: it holds every triple of every source graph."""
    named = {(q.subject, q.predicate, q.object) for q in built.store
             if not isinstance(q.graph_name, ox.DefaultGraph)}
    default = {(q.subject, q.predicate, q.object)
               for q in built.store.quads_for_pattern(None, None, None, ox.DefaultGraph())}
    assert default == named and len(built) == len(default)
