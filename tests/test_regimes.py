"""Regime curves (reference_impl/harness/regimes.py): the grid and budgets, pairing, the RDF,
the pages that show them, and the command's errors."""

from __future__ import annotations

import numpy as np
import pyoxigraph as ox
import pytest
from click.testing import CliRunner

import kb
from kb.cli import main
from kb.config import Paths
from kb.namespaces import KDO, KDR
from reference_impl.harness import regimes, stats
from reference_impl.harness.bench import Context, prepare, scratch_student
from reference_impl.harness.evaluate import evaluate
from reference_impl.harness.models import ModelSpec
from reference_impl.harness.regimes import Condition, Point
from reference_impl.harness.train import TrainConfig, predict_logits
from reference_impl.techniques import soft_targets

from .site_fixture import REPO


def test_grid_has_both_curves_with_the_shared_point_once():
    conditions = regimes.grid()
    assert [c.key for c in conditions] == ["f0.01-mlp64", "f0.03-mlp64", "f0.1-mlp64", "f0.3-mlp64", "f1-mlp64",
                                           "f1-mlp16", "f1-mlp256"]
    assert Condition(1.0, (64,)).axes() == ["labelled fraction", "student size"]
    assert Condition(0.1, (64,)).axes() == ["labelled fraction"]
    assert Condition(1.0, (16,)).axes() == ["student size"]


@pytest.mark.parametrize("fraction, epochs", [(1.0, 300), (0.3, 1000), (0.1, 3000), (0.03, 6000), (0.01, 6000),
                                              (0.5, 600), (0.07, 4286)])
def test_budget_grows_as_the_subset_shrinks(fraction, epochs):
    assert Condition(fraction, (64,)).epochs == epochs


def test_fewer_than_three_seeds_or_an_unknown_technique_is_refused():
    with pytest.raises(ValueError, match="at least 3 seeds, got 2"):
        regimes.run_regimes(seeds=(0, 1))
    with pytest.raises(ValueError, match="no regime curve for 'fitnets'"):
        regimes.run_regimes(techniques=("fitnets",), seeds=(0, 1, 2))


def test_points_are_paired_per_seed_with_the_subset_drawn_per_seed():
    condition = Condition(0.01, (16,))
    points = regimes.run_regimes(techniques=("soft_targets",), conditions=[condition], seeds=(0, 1, 2),
                                 epochs=lambda c: 2, log=lambda line: None)
    assert len(points) == 1
    point = points[0]
    assert point.seeds == [0, 1, 2] and point.condition == condition and point.technique == "soft_targets"
    # recompute seed 1 independently: the same subset, initialisation and batch order for both arms
    experiment = soft_targets.EXPERIMENTS[0]
    full, teacher, _ = prepare(experiment)
    split = full.with_labelled_fraction(0.01, seed=1)
    assert len(split.y_train) == 40 and not np.array_equal(
        split.x_train.numpy(), full.with_labelled_fraction(0.01, seed=0).x_train.numpy())

    def context():
        return Context(split, teacher, predict_logits(teacher, split.x_train), ModelSpec("mlp", hidden=(16,)),
                       TrainConfig(epochs=2, seed=1), 1)

    baseline = evaluate(scratch_student(context()), full.x_test, full.y_test).accuracy
    distilled = evaluate(soft_targets.distilled_student(context(), temperature=4.0, alpha=0.9),
                         full.x_test, full.y_test).accuracy
    assert point.baseline[1] == baseline and point.accuracies[1] == distilled
    assert point.gains == [a - b for a, b in zip(point.accuracies, point.baseline)]
    test = point.interval()
    reference = stats.paired_test(point.accuracies, point.baseline, sesoi=0.01)
    assert (test.mean, test.ci_low, test.ci_high) == (reference.mean, reference.ci_low, reference.ci_high)


def constructed_points() -> list[Point]:
    """Two techniques on three conditions, with gains chosen so that one interval lies above 0."""
    out = []
    for name, concept, shift in (("soft_targets", "SoftTargetDistillation", 0.03), ("relational_kd", "RelationalKD", 0.0)):
        for condition in (Condition(0.01, (64,)), Condition(1.0, (64,)), Condition(1.0, (16,))):
            baseline = [0.50, 0.52, 0.51]
            noise = [0.001, -0.002, 0.001] if condition.fraction == 0.01 else [0.02, -0.03, 0.01]
            accuracies = [b + shift + n for b, n in zip(baseline, noise)]
            # one point whose technique arm ran into its 300-epoch budget (2 of 3 seeds past 270)
            bound = name == "soft_targets" and condition == Condition(1.0, (64,))
            out.append(Point(name, concept, f"{name} arm", condition, 3274 if condition.hidden == (64,) else 826,
                             [0, 1, 2], accuracies, baseline, [299, 271, 12] if bound else [10, 11, 12],
                             [100, 280, 90], 300))
    return out


def test_rdf_records_every_point_with_its_interval(tmp_path):
    points = constructed_points()
    paths = regimes.write_regimes(points, tmp_path, started=0.0, ended=60.0)
    assert [p.name for p in paths] == ["regimes.ttl", "regimes.png"] and all(p.stat().st_size for p in paths)
    store = ox.Store()
    store.load(path=str(paths[0]), format=ox.RdfFormat.TURTLE)
    rows = list(store.query(f"""PREFIX kdo: <{KDO}>
        SELECT ?point ?d ?low ?high ?base ?n (GROUP_CONCAT(?axis; separator="|") AS ?axes) WHERE {{
          <{KDR}regimes--soft_targets> a kdo:RegimeCurve ; kdo:hasPoint ?point .
          ?point kdo:meanDifference ?d ; kdo:ciLow ?low ; kdo:ciHigh ?high ; kdo:baselineAccuracy ?base ;
                 kdo:nSeeds ?n ; kdo:regimeAxis ?axis }} GROUP BY ?point ?d ?low ?high ?base ?n ORDER BY ?point"""))
    assert len(rows) == 3
    by_key = {r["point"].value.rsplit("--", 1)[-1]: r for r in rows}
    shared = by_key["f1-mlp64"]
    assert sorted(shared["axes"].value.split("|")) == ["labelled fraction", "student size"]
    point = next(p for p in points if p.technique == "soft_targets" and p.condition.key == "f0.01-mlp64")
    test = stats.paired_test(point.accuracies, point.baseline, sesoi=0.01)
    row = by_key["f0.01-mlp64"]
    assert float(row["d"].value) == pytest.approx(test.mean, abs=1e-6)
    assert float(row["low"].value) == pytest.approx(test.ci_low, abs=1e-6) and float(row["low"].value) > 0
    assert float(row["high"].value) == pytest.approx(test.ci_high, abs=1e-6)
    assert float(row["base"].value) == pytest.approx(0.51, abs=1e-6) and int(row["n"].value) == 3
    epochs = store.query(f"PREFIX kdo: <{KDO}> SELECT ?b ?c ?e WHERE {{ <{KDR}regimes--soft_targets--f1-mlp64> "
                         f"kdo:studentEpochs ?b ; kdo:chosenEpochs ?c ; kdo:baselineChosenEpochs ?e }}")
    (only,) = list(epochs)
    assert (only["b"].value, only["c"].value, only["e"].value) == ("300", "299 271 12", "100 280 90")
    curves = list(store.query(f"PREFIX kdo: <{KDO}> SELECT ?c WHERE {{ ?c a kdo:RegimeCurve ; kdo:technique ?t ; "
                              f"kdo:dataset \"mnist1d\" ; kdo:armLabel ?a }}"))
    assert len(curves) == 2


def test_pages_show_the_curves_and_read_them_off_the_data(tmp_path):
    from kb.sitegen import generate
    from kb.validate import validate_store

    regimes.write_regimes(constructed_points(), tmp_path / "results", started=0.0, ended=60.0)
    paths = Paths.from_env(root=REPO, ontology_dir=REPO / "ontology", results_dir=tmp_path / "results",
                           data_dir=tmp_path / "data")
    kb.build(paths, export=False)
    base = kb.open(paths.data_dir)
    report = validate_store(base.store, REPO / "ontology" / "shapes.ttl")
    assert report.conforms, report.text
    generate(base, tmp_path / "docs", REPO)
    page = (tmp_path / "docs" / "regimes" / "index.md").read_text()
    assert page.count("<svg") == 2
    # soft targets: +3 points at 1% with a tight interval (above 0); elsewhere the interval spans 0
    assert "helps (interval above 0): MLP 64 at 1%" in page
    assert "+3.00 |" in page and "| 51.0 |" in page
    assert page.count("(*budget bound*)") == 1  # the soft-targets point at 100%, MLP 64, and only it
    bound_row = next(line for line in page.splitlines() if "(*budget bound*)" in line)
    assert "MLP 64" in bound_row and "| 100% |" in bound_row and "Soft" in bound_row
    concept = (tmp_path / "docs" / "concepts" / "SoftTargetDistillation.md").read_text()
    assert "### Where it helps" in concept and concept.count("<svg") >= 2
    assert "Helps (interval above 0): MLP 64 at 1%." in concept
    unmeasured = (tmp_path / "docs" / "concepts" / "FitNets.md").read_text()
    assert "Where it helps" not in unmeasured


def test_a_regimes_ttl_that_breaks_the_shape_fails_validation(tmp_path):
    from kb.validate import validate_store

    regimes.write_regimes(constructed_points()[:3], tmp_path / "results", started=0.0, ended=60.0)
    ttl = tmp_path / "results" / "regimes.ttl"
    ttl.write_text(ttl.read_text().replace("kdo:nSeeds 3", "kdo:nSeeds 2", 1))
    paths = Paths.from_env(root=REPO, ontology_dir=REPO / "ontology", results_dir=tmp_path / "results",
                           data_dir=tmp_path / "data")
    kb.build(paths, export=False)
    report = validate_store(kb.open(paths.data_dir).store, REPO / "ontology" / "shapes.ttl")
    assert not report.conforms and "at least 3 seeds" in report.text


@pytest.mark.parametrize("args, message", [(["--seeds", "2"], "at least 3 seeds per point, got 2"),
                                           (["fitnets"], "no regime curve for fitnets")])
def test_command_errors_are_one_line(args, message):
    result = CliRunner().invoke(main, ["regimes", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
