"""Choose a setting the project (not the paper) has to fix, on the validation split.

    .venv/bin/python scripts/choose_on_validation.py decoupled_kd   # β for both DKD experiments
    .venv/bin/python scripts/choose_on_validation.py decoupled_kd --experiment dkd-vs-kd-cnn
    .venv/bin/python scripts/choose_on_validation.py be_your_own_teacher   # λ of the hint term

Each candidate arm is trained on the pilot seeds (1000-1002, never reported) and scored on
the validation split; the table is printed, and the best mean is the choice. The module then
records the choice and this table in its Experiment's `selection` (stored with the result).
The test split is never looked at.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_impl import registry  # noqa: E402
from reference_impl.harness.bench import PILOT_SEEDS, validation_scores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("technique", help="a module that defines CANDIDATES: {experiment key: {label: Arm}}")
    parser.add_argument("--experiment", default=None, help="only this experiment (default: every one with candidates)")
    args = parser.parse_args()
    module = registry.load(args.technique)
    candidates = getattr(module, "CANDIDATES", None)
    if not candidates:
        parser.error(f"{args.technique} defines no CANDIDATES to choose among")
    for experiment in module.EXPERIMENTS:
        if experiment.key not in candidates or args.experiment not in (None, experiment.key):
            continue
        print(f"== {args.technique} / {experiment.key}: validation accuracy over pilot seeds {PILOT_SEEDS}")
        table = []
        for label, arm in candidates[experiment.key].items():
            t0 = time.perf_counter()
            scores = validation_scores(experiment, arm)
            table.append((statistics.mean(scores), label, scores))
            print(f"  {label:<12} mean {statistics.mean(scores):.4f}  seeds {' '.join(f'{s:.4f}' for s in scores)}"
                  f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
        best = max(table)
        print(f"  chosen: {best[1]} (validation mean {best[0]:.4f})")


if __name__ == "__main__":
    main()
