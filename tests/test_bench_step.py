"""The step-time benchmark script runs and reports every loss (its figures are measured, not tested)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from reference_impl.harness import ModelSpec

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_step.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_step_times_every_loss_against_plain_cross_entropy():
    bench_step = load_script()
    report = bench_step.measure("digits", ModelSpec("mlp", hidden=(16,)), n_steps=12, blocks=3, warm_up=2)
    for name in bench_step.LOSSES:
        assert report[f"{name}_step_us"] > 0
    for name in bench_step.LOSSES[1:]:
        ratio = report[f"{name}_over_ce"]
        assert ratio["median"] > 0
        low, high = ratio["p10_p90_of_block_ratios"]
        assert 0 < low <= high
    assert report["student_params"] == 64 * 16 + 16 + 16 * 10 + 10
