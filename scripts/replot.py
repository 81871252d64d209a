"""Redraw a module's results plot (results/<module>.png) from its stored RDF, without training.

    .venv/bin/python scripts/replot.py token_level_kd [distilbert ...] [--results-dir results]

The per-seed scores, the teacher's score and the seeds come from results/<module>.ttl; the
experiments' definitions (arm order, labels, metric) from the module. The paired test is
recomputed from the per-seed scores with `stats.paired_test`, so the plot's figures are the
stored ones. Use it after a change to the plot's layout; a new result draws its own plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyoxigraph as ox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kb.namespaces import KDO, KDR  # noqa: E402
from reference_impl import registry  # noqa: E402
from reference_impl.harness import stats  # noqa: E402
from reference_impl.harness.bench import ArmResult, ExperimentResult  # noqa: E402
from reference_impl.harness.evaluate import Evaluation  # noqa: E402
from reference_impl.harness.results import plot_results, results_dir  # noqa: E402

PER_SEED = f"""PREFIX kdo: <{KDO}> PREFIX mls: <http://www.w3.org/ns/mls#>
SELECT ?arm ?seed ?value WHERE {{ ?r kdo:hasArm ?a . ?a kdo:armKey ?arm ; kdo:evaluation ?m .
  ?m kdo:seed ?seed ; mls:hasValue ?value }} ORDER BY ?arm ?seed"""


def _evaluation(score: float) -> Evaluation:
    return Evaluation(accuracy=score, per_class_accuracy=[], teacher_agreement=None, ece=None, n_params=0,
                      latency_us=None)


def stored_result(store: ox.Store, module: str, experiment) -> ExperimentResult:
    iri = ox.NamedNode(f"{KDR}{module}--{experiment.key}")
    teacher = next(store.quads_for_pattern(iri, ox.NamedNode(KDO + "teacherAccuracy"), None), None)
    if teacher is None:
        raise ValueError(f"no stored result for {module} / {experiment.key}")
    rows = store.query(PER_SEED.replace("?r kdo:hasArm", f"<{iri.value}> kdo:hasArm"))
    scores: dict[str, dict[int, float]] = {}
    for row in rows:
        scores.setdefault(row["arm"].value, {})[int(row["seed"].value)] = float(row["value"].value)
    seeds = sorted(next(iter(scores.values())))
    arms = [ArmResult(a.key, a.label, [_evaluation(scores[a.key][s]) for s in seeds], 0.0)
            for a in experiment.arms if a.key in scores]
    by_key = {a.key: a for a in arms}
    claim = experiment.claim
    test = stats.paired_test(by_key[claim.treatment].accuracies, by_key[claim.reference].accuracies,
                             sesoi=experiment.sesoi)
    return ExperimentResult(experiment, seeds, _evaluation(float(teacher.object.value)), arms, test, 0.0, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    directory = results_dir(args.results_dir)
    for name in args.modules:
        module = registry.load(name)
        store = ox.Store()
        store.load(path=str(directory / f"{name}.ttl"), format=ox.RdfFormat.TURTLE)
        results = [stored_result(store, name, e) for e in module.EXPERIMENTS]
        path = directory / f"{name}.png"
        plot_results(results, path, f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
