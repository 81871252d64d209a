"""A quick end-to-end run of every experiment of every technique module (few epochs),
and the teaching run `kd run` of each. Its 2-minute budget is measured, not asserted, by
`scripts/time_budgets.py` (a timed test fails on a loaded machine for no reason)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from reference_impl import registry
from reference_impl.harness.bench import run_experiment
from reference_impl.harness.lm.bench import SequenceExperiment

CASES = [(name, e.key) for name in registry.technique_names() for e in registry.load(name).EXPERIMENTS]
LANGUAGE_MODELS = set(registry.technique_names(family="language model"))
# `kd run` is one code path for every language-model module (each experiment runs end to end below);
# its command line is checked on one decoder and one encoder module. Every run here is short
# (--epochs 1 or 2): the full teaching runs take 10 s to 2 minutes each, about 30 minutes in all,
# and are timed by scripts/time_budgets.py instead.
KD_RUN_CASES = [n for n in registry.technique_names() if n not in LANGUAGE_MODELS] + ["token_level_kd", "distilbert"]


@pytest.mark.parametrize("name, key", CASES)
def test_every_experiment_runs_end_to_end(name, key):
    experiment = next(e for e in registry.load(name).EXPERIMENTS if e.key == key)
    # language models: one epoch, and decoders score 200 of their test prompts (decoding all 5,000, eight
    # times each for mode coverage, is most of the cost; a benchmark always scores every one)
    epochs = 1 if name in LANGUAGE_MODELS else 2
    short = replace(experiment, student_config=replace(experiment.student_config, epochs=epochs))
    if isinstance(experiment, SequenceExperiment):
        short = replace(short, test_rows=200)
    lines: list[str] = []
    result = run_experiment(short, seeds=(0,), log=lines.append)
    assert {a.key for a in result.arms} == {a.key for a in experiment.arms}
    for arm in result.arms:
        assert 0.0 <= arm.mean() <= 1.0
        assert all(1 <= e <= epochs for e in arm.chosen_epochs[0])  # chosen on validation, within the budget
    assert result.test is None  # one seed: no verdict
    assert len(lines) == len(experiment.arms) and lines[-1].endswith("about 0 s left]")


@pytest.mark.slow
@pytest.mark.parametrize("name", KD_RUN_CASES)
def test_kd_run_prints_its_teaching_table(name):
    # The timeout only stops a hung run; the time budget is a script's to measure
    # (scripts/time_budgets.py, which times every module's full teaching run).
    # one epoch for the language models and CRD (whose per-anchor negatives make an epoch slow), else two
    epochs = ["--epochs", "1" if name in LANGUAGE_MODELS or name == "contrastive_rd" else "2"]
    out = subprocess.run([sys.executable, "-m", "kb.cli", "run", name, *epochs], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "KD_QUIET": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    first_arm = registry.load(name).EXPERIMENTS[0].arms[0].key
    assert "teacher" in out.stdout and first_arm in out.stdout
    assert "stored benchmark" in out.stdout and "columns:" in out.stdout
    assert "arm 1/" in out.stderr  # progress, one line per arm, readable when piped
