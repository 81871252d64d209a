"""Redraw a module's results plot (results/<module>.png) from its stored RDF, without training.

    .venv/bin/python scripts/replot.py token_level_kd [distilbert ...] [--results-dir results]

The per-seed scores, the teacher's score and the seeds come from results/<module>.ttl; the
experiments' definitions (arm order, labels, metric) from the module (`results.stored_result`
recomputes the paired test from the per-seed scores, so the plot's figures are the stored ones).
An experiment with no stored result is left out of the plot. Use it after a change to the plot's
layout; a new result draws its own plot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyoxigraph as ox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_impl import registry  # noqa: E402
from reference_impl.harness.results import plot_results, results_dir, stored_result  # noqa: E402


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
        results = []
        for experiment in module.EXPERIMENTS:
            try:
                results.append(stored_result(store, name, experiment))
            except ValueError as exc:
                print(f"{exc}: left out of the plot")
        path = directory / f"{name}.png"
        plot_results(results, path, f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
