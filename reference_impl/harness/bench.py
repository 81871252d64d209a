"""Experiments that test a paper's claim, the quick teaching run, and the benchmark runner.

A technique module declares:

    CONCEPT = "SoftTargetDistillation"          # its concept in the ontology (kd:...)
    EXPERIMENTS = [Experiment(...)]              # each tests one claim of the paper

An Experiment names the dataset and labelled fraction, the teacher and student, and its
arms: functions from a Context to a trained student. The first arm is the baseline (the
same student trained without distillation on the same data and budget). The claim names
the arm it is about and the arm it must beat.

`kd bench` runs every arm on every seed (paired: the same seed gives the same student
initialisation and batch order in every arm), reports mean ± sd, the paired difference
with a 95% t-interval and a paired t-test, and a verdict:

    held          the interval lies above 0 (the claimed arm is better)
    contradicted  the interval lies below 0
    inconclusive  the interval contains 0
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from .data import Split, load_split
from .evaluate import Evaluation, evaluate
from .models import ModelSpec, build_model, n_params
from .teachers import get_teacher, train_supervised
from .train import TrainConfig, predict_logits, seed_everything


@dataclass(frozen=True)
class Claim:
    text: str  # one sentence from the paper, quoted or closely paraphrased
    source: str  # where in the paper, e.g. "arXiv:1503.02531, section 3"
    treatment: str  # the arm the claim is about
    reference: str  # the arm it should beat


@dataclass
class Context:
    """What an arm gets: the data, the frozen teacher and its cached outputs, a seed."""
    split: Split
    teacher: nn.Module
    teacher_train_logits: Tensor  # teacher(split.x_train), row i belongs to sample i
    student_spec: ModelSpec
    config: TrainConfig
    seed: int

    @cached_property
    def teacher_train_features(self) -> Tensor:
        """The frozen teacher's penultimate features of every training input, row i = sample i,
        computed once (feature- and relation-based techniques index them with the batch)."""
        with torch.no_grad():
            self.teacher.eval()
            return self.teacher.features(self.split.x_train)

    def new_student(self, spec: ModelSpec | None = None) -> nn.Module:
        """A freshly initialised student; the same seed gives the same weights in every arm."""
        seed_everything(self.seed)
        return build_model(spec or self.student_spec, self.split)


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    train: Callable[[Context], nn.Module]


def scratch_student(ctx: Context) -> nn.Module:
    """The baseline: the same student, cross-entropy on the hard labels, same data and budget."""
    return train_supervised(ctx.new_student(), ctx.split, ctx.config, desc="student (hard labels)")


BASELINE = Arm("baseline", "student trained on hard labels", scratch_student)


@dataclass(frozen=True)
class Experiment:
    key: str
    title: str
    claim: Claim
    dataset: str
    teacher: ModelSpec
    student: ModelSpec
    arms: tuple[Arm, ...]
    labelled_fraction: float = 1.0  # of the training set the student may see with labels
    teacher_config: TrainConfig = TrainConfig(epochs=40)
    student_config: TrainConfig = TrainConfig(epochs=100)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    notes: str = ""

    def arm(self, key: str) -> Arm:
        return next(a for a in self.arms if a.key == key)


@dataclass
class ArmResult:
    key: str
    label: str
    evaluations: list[Evaluation]
    seconds: float

    @property
    def accuracies(self) -> list[float]:
        return [e.accuracy for e in self.evaluations]

    def mean(self, attr: str = "accuracy") -> float:
        values = [getattr(e, attr) for e in self.evaluations if getattr(e, attr) is not None]
        return float(np.mean(values)) if values else float("nan")

    def sd(self, attr: str = "accuracy") -> float:
        values = [getattr(e, attr) for e in self.evaluations if getattr(e, attr) is not None]
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass
class Comparison:
    treatment: str
    reference: str
    differences: list[float]
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


@dataclass
class ExperimentResult:
    experiment: Experiment
    seeds: list[int]
    teacher: Evaluation
    arms: list[ArmResult]
    comparison: Comparison
    started: float
    ended: float
    extra: dict = field(default_factory=dict)

    def arm(self, key: str) -> ArmResult:
        return next(a for a in self.arms if a.key == key)


def paired_comparison(treatment: list[float], reference: list[float], names: tuple[str, str]) -> Comparison:
    from scipy import stats
    d = np.asarray(treatment) - np.asarray(reference)
    n = len(d)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        low = high = mean
        p = float("nan")
    elif sd == 0:
        low = high = mean
        p = 0.0 if mean != 0 else 1.0
    else:
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        p = float(stats.ttest_rel(treatment, reference).pvalue)
    verdict = "held" if low > 0 else ("contradicted" if high < 0 else "inconclusive")
    return Comparison(names[0], names[1], d.tolist(), mean, sd, low, high, p, verdict)


def prepare(experiment: Experiment) -> tuple[Split, nn.Module, Evaluation]:
    """The split the student sees and the frozen teacher (trained on the full training set)."""
    full = load_split(experiment.dataset)
    teacher = get_teacher(full, experiment.teacher, experiment.teacher_config)
    split = full if experiment.labelled_fraction >= 1 else full.with_labelled_fraction(experiment.labelled_fraction)
    teacher_eval = evaluate(teacher, split.x_test, split.y_test)
    return split, teacher, teacher_eval


def run_experiment(experiment: Experiment, seeds: tuple[int, ...] | None = None,
                   arms: tuple[str, ...] | None = None, log: Callable[[str], None] = print) -> ExperimentResult:
    started = time.time()
    seeds = tuple(seeds or experiment.seeds)
    split, teacher, teacher_eval = prepare(experiment)
    teacher_train_logits = predict_logits(teacher, split.x_train)
    teacher_test_logits = predict_logits(teacher, split.x_test)
    chosen = [a for a in experiment.arms if arms is None or a.key in arms]
    results = {a.key: ArmResult(a.key, a.label, [], 0.0) for a in chosen}
    for seed in seeds:
        ctx = Context(split, teacher, teacher_train_logits, experiment.student,
                      replace(experiment.student_config, seed=seed), seed)
        for arm in chosen:
            t0 = time.perf_counter()
            student = arm.train(ctx)
            results[arm.key].seconds += time.perf_counter() - t0
            evaluation = evaluate(student, split.x_test, split.y_test, teacher_logits=teacher_test_logits)
            results[arm.key].evaluations.append(evaluation)
            log(f"  seed {seed}  {arm.key:<14} accuracy {evaluation.accuracy:.4f}")
    claim = experiment.claim
    comparison = (paired_comparison(results[claim.treatment].accuracies, results[claim.reference].accuracies,
                                    (claim.treatment, claim.reference))
                  if claim.treatment in results and claim.reference in results else None)
    return ExperimentResult(experiment, list(seeds), teacher_eval, list(results.values()), comparison,
                            started, time.time())


# ---------------------------------------------------------------- presentation
def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def summary(result: ExperimentResult) -> str:
    e = result.experiment
    n = len(result.seeds)
    rows = [["teacher", e.teacher.describe(), f"{result.teacher.n_params:,}", f"{result.teacher.accuracy:.4f}", "", ""]]
    for arm in result.arms:
        acc = f"{arm.mean():.4f}" + (f" ± {arm.sd():.4f}" if n > 1 else "")
        rows.append([arm.key, arm.label, f"{arm.evaluations[0].n_params:,}", acc,
                     f"{arm.mean('teacher_agreement'):.3f}", f"{arm.mean('ece'):.3f}"])
    text = [f"{e.title}  [{e.dataset}, labelled fraction {e.labelled_fraction:g}, seeds {result.seeds}]",
            _table(["", "model", "params", "test accuracy", "agree w/ teacher", "ECE"], rows)]
    c = result.comparison
    if c is not None:
        text.append(f"claim: {e.claim.text} ({e.claim.source})")
        if n > 1:
            text.append(f"{c.treatment} - {c.reference}: {c.mean * 100:+.2f} points "
                        f"(95% CI {c.ci_low * 100:+.2f} to {c.ci_high * 100:+.2f}, paired t-test p = {c.p_value:.3g}) "
                        f"-> {c.verdict}")
        else:
            text.append(f"{c.treatment} - {c.reference}: {c.mean * 100:+.2f} points on one seed "
                        f"(run `kd bench` for seeds, spread and a verdict)")
    return "\n".join(text)


def find_experiment(module: ModuleType, key: str | None) -> Experiment:
    """The module's experiment named `key` (its first when None); ValueError naming the valid keys."""
    experiments = module.EXPERIMENTS
    if key is None:
        return experiments[0]
    for experiment in experiments:
        if experiment.key == key:
            return experiment
    raise ValueError(f"no experiment {key!r} in {module.__name__.rsplit('.', 1)[-1]}: choose one of "
                     + ", ".join(x.key for x in experiments))


def quick_run(module: ModuleType, experiment_key: str | None = None) -> ExperimentResult:
    """The teaching run: one seed of one experiment, printed as a small table."""
    experiment = find_experiment(module, experiment_key)
    t0 = time.perf_counter()
    result = run_experiment(experiment, seeds=(0,), log=lambda s: None)
    print(summary(result))
    print(f"({time.perf_counter() - t0:.1f} s on this machine)")
    return result


def benchmark(module: ModuleType, seeds: tuple[int, ...] | None = None, write: bool = True) -> list[ExperimentResult]:
    from .results import write_results
    results = []
    for experiment in module.EXPERIMENTS:
        print(f"\n== {module.__name__.rsplit('.', 1)[-1]} / {experiment.key}")
        result = run_experiment(experiment, seeds)
        print(summary(result))
        results.append(result)
    if write:
        for path in write_results(module, results):
            print(f"wrote {path}")
    return results


def run_cli(module: ModuleType, argv: list[str] | None = None) -> None:
    """`python -m reference_impl.techniques.<name> [--bench] [--seeds N]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__name__}",
                                     description=(module.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="full benchmark: all experiments, all seeds, writes RDF")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds for --bench (default: the experiment's)")
    parser.add_argument("--experiment", default=None, help="quick run: which experiment (default: the first)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.seeds is not None and not args.bench:
        parser.error("--seeds applies to --bench (a quick run uses one seed)")
    if args.experiment is not None and args.bench:
        parser.error("--experiment applies to a quick run (--bench runs every experiment)")
    if args.seeds is not None and args.seeds < 3:
        parser.error(f"--seeds must be at least 3 (a mean, a spread and a paired test), got {args.seeds}")
    if args.bench:
        benchmark(module, tuple(range(args.seeds)) if args.seeds else None)
        return
    try:
        find_experiment(module, args.experiment)
    except ValueError as exc:
        parser.error(str(exc))
    quick_run(module, args.experiment)


__all__ = ["Arm", "BASELINE", "Claim", "Context", "Experiment", "ExperimentResult", "benchmark", "find_experiment",
           "n_params", "paired_comparison", "quick_run", "run_cli", "run_experiment", "scratch_student", "summary"]
