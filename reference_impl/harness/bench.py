"""Experiments that test a paper's claim, the quick teaching run, and the benchmark runner.

A technique module declares:

    CONCEPT = "SoftTargetDistillation"          # its concept in the ontology (kd:...)
    EXPERIMENTS = [Experiment(...)]              # each tests one claim of the paper

An Experiment names the dataset and labelled fraction, the teacher and student, its arms
(functions from a Context to a trained student; the first is the baseline) and, before it
first runs, its smallest effect size of interest (SESOI, default 1 accuracy point).

The method (`kd bench`; the statistics are in stats.py):

1. **Plan.** Three pilot seeds (1000-1002, exploratory, never reported) of the claim's two
   arms give the spread of the paired difference; the plan assumes its 80% upper confidence
   limit (`stats.planning_sd`: a 3-seed pilot underestimates the spread about half the time),
   and the seeds reported are the fewest that give 80% power at the SESOI at Holm's strictest
   level, at least 5 and at most the experiment's `max_seeds` (the CPU budget).
2. **Run.** Every arm on every seed, paired: a seed fixes the student's initialisation, the
   batch order and (below 100% labelled) which training examples keep their labels. Every
   arm's epoch is chosen on the validation split (`Context.fit`), never on the test split.
   The teacher is shared by all seeds: trained once on the full training split, it is the
   fixed object of the claim ("this teacher's knowledge helps this student"), and a
   teacher per seed would multiply the cost by the seeds for a variance the claim is not about.
3. **Test.** The paired difference's 95% interval, a paired t-test and an equivalence test
   (TOST at ±SESOI); p-values are adjusted over the family of all claims (Holm) when the
   results are written, and the verdict (held, contradicted, no practical effect,
   inconclusive) uses the adjusted ones.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kb.budget import budget_binds

from . import stats
from .data import Split, load_split
from .evaluate import Evaluation, evaluate
from .hooks import capture, predict_features
from .models import ModelSpec, build_model, n_params
from .teachers import get_teacher
from .train import TrainConfig, Validation, predict_logits, seed_everything, train

PILOT_SEEDS = (1000, 1001, 1002)  # exploratory: they plan the seeds and are never reported
MIN_REPORTED_SEEDS = 5
DEFAULT_SESOI = 0.01  # one accuracy point


@dataclass(frozen=True)
class Claim:
    text: str  # one sentence from the paper, quoted or closely paraphrased
    source: str  # where in the paper, e.g. "arXiv:1503.02531, section 3"
    treatment: str  # the arm the claim is about
    reference: str  # the arm it should beat


@dataclass
class Context:
    """What an arm (a technique's procedure) gets: the data, the frozen teacher and its cached
    outputs, the student to train, a seed. The benchmarks build one per seed from an Experiment;
    `reference_impl.distill` builds one from a user's models and data, so both run the same code.
    """
    split: Split
    teacher: nn.Module
    teacher_train_logits: Tensor  # teacher(split.x_train), row i belongs to sample i
    student_spec: ModelSpec | None
    config: TrainConfig
    seed: int
    progress: str = ""  # e.g. "arm 2/3": shown in front of the training bar
    chosen_epochs: list[int] = field(default_factory=list)  # one per fit, chosen on validation
    temperature: float | None = None  # the teaching run's --temperature override; None: each arm's own
    student_template: nn.Module | None = None  # a user's own student (distill); None: built from student_spec
    teacher_feature_layer: str | None = None  # where feature-based arms read features; None: model.features
    student_feature_layer: str | None = None

    def softening(self, default: float) -> float:
        """The distillation temperature an arm trains with: `default` (its own) unless the teaching
        run overrides it. Arms call it with their own temperature so that `--temperature` reaches
        them; without an override the value is returned unchanged, so the run is bit-identical."""
        return default if self.temperature is None else self.temperature

    @cached_property
    def teacher_train_features(self) -> Tensor:
        """The frozen teacher's penultimate features of every training input, row i = sample i,
        computed once (feature- and relation-based techniques index them with the batch)."""
        x = self.split.x_train
        if self.teacher_feature_layer is not None:
            return predict_features(self.teacher, x, [self.teacher_feature_layer])[self.teacher_feature_layer].flatten(1)
        _check_has_features(self.teacher, "teacher")
        with torch.no_grad():
            self.teacher.eval()
            return self.teacher.features(x)

    def logits_and_features(self, student: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        """One forward pass of the student: its logits (B, classes) and features (B, F), read at
        `student_feature_layer` (flattened) or, for the harness's models, from `features`/`head`."""
        if self.student_feature_layer is None:
            _check_has_features(student, "student")
            features = student.features(x)
            return student.head(features), features
        with capture(student, [self.student_feature_layer]) as feats:
            logits = student(x)
        return logits, feats[self.student_feature_layer].flatten(1)

    def new_student(self, spec: ModelSpec | None = None, *, seed: int | None = None) -> nn.Module:
        """A freshly initialised student; the same seed gives the same weights in every arm.
        With a user's `student_template`: the template itself, or (with another `seed`, e.g. a
        second peer or a later generation) a copy of it with its parameters initialised afresh."""
        if spec is None and self.student_template is not None:
            return self.student_template if seed is None else reinitialised_copy(self.student_template, seed)
        seed_everything(self.seed if seed is None else seed)
        return build_model(spec or self.student_spec, self.split)

    def fit(self, modules: nn.Module | list[nn.Module], n_samples: int, batch_loss: Callable[[Tensor], Tensor], *,
            desc: str, deployed: nn.Module | None = None, config: TrainConfig | None = None) -> list[float]:
        """`train` with the epoch chosen on the validation split: `deployed` (default: the first
        module) is scored after every epoch and the best epoch's weights are kept."""
        modules = modules if isinstance(modules, list) else [modules]
        validation = None
        if self.split.x_val is not None:
            validation = Validation(deployed or modules[0], self.split.x_val, self.split.y_val)
        label = f"{self.progress} {desc}" if self.progress else desc
        history = train(modules, n_samples, on_device(batch_loss, modules), config or self.config, label,
                        validation=validation)
        if validation is not None:
            self.chosen_epochs.append(validation.best_epoch)
        return history


def on_device(batch_loss: Callable[[Tensor], Tensor], modules: list[nn.Module]) -> Callable[[Tensor], Tensor]:
    """`train` draws batch indices on the CPU; with the models on another device (a user's
    `device="cuda"`), the indices follow them, as the cached tensors they index do. (Done here,
    not in train.py: that file's bytes are part of the teacher cache key, so any edit to it
    retrains every cached teacher, and the stored results were made with those teachers.)"""
    device = next((p.device for m in modules for p in m.parameters()), torch.device("cpu"))
    return batch_loss if device.type == "cpu" else (lambda idx: batch_loss(idx.to(device)))


def _check_has_features(model: nn.Module, role: str) -> None:
    if not (callable(getattr(model, "features", None)) and isinstance(getattr(model, "head", None), nn.Module)):
        raise ValueError(f"this technique reads the {role}'s features: name the layer that produces them "
                         f"({role}_feature_layer=...; its modules: {', '.join(n for n, _ in model.named_modules() if n)})")


def reinitialised_copy(model: nn.Module, seed: int) -> nn.Module:
    """A deep copy of `model` whose layers are initialised afresh (`reset_parameters`) from `seed`."""
    copy = deepcopy(model)
    seed_everything(seed)
    for module in copy.modules():
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
    return copy


@dataclass(frozen=True)
class Arm:
    key: str
    label: str
    train: Callable[[Context], nn.Module]


@dataclass(frozen=True)
class Procedure:
    """How a technique trains a student, as `reference_impl.distill` calls it: `train(ctx, **settings)`
    returns the trained student. The module's benchmark arms call the same functions, so the API
    and the benchmarks run one implementation. Settings are `train`'s keyword parameters."""
    train: Callable[..., nn.Module]
    teacher: str = "one"  # "one" model, "several" (a list), "none", or "optional" (then `without_teacher`)
    needs_labels: bool = True
    needs_features: bool = False  # reads penultimate features (name the layers for models outside the zoo)
    teacher_setting: str | None = None  # the keyword the teacher(s) go to, when not ctx.teacher
    model_settings: tuple[str, ...] = ()  # settings that hold models (moved to the device with the student)
    without_teacher: Callable[..., nn.Module] | None = None  # with teacher="optional": the teacher-free variant

    def __post_init__(self) -> None:
        if self.teacher not in ("one", "several", "none", "optional"):
            raise ValueError(f"teacher must be 'one', 'several', 'none' or 'optional', got {self.teacher!r}")
        if (self.teacher == "optional") != (self.without_teacher is not None):
            raise ValueError("without_teacher is given exactly when teacher='optional'")


def scratch_student(ctx: Context) -> nn.Module:
    """The baseline: the same student, cross-entropy on the hard labels, same data and budget."""
    student = ctx.new_student()
    x, y = ctx.split.x_train, ctx.split.y_train
    ctx.fit(student, len(y), lambda idx: F.cross_entropy(student(x[idx]), y[idx]), desc="student (hard labels)")
    return student


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
    student_config: TrainConfig = TrainConfig(epochs=100)  # epochs: the largest budget (chosen on validation)
    sesoi: float = DEFAULT_SESOI  # smallest effect size of interest, accuracy; fixed before the first run
    sesoi_reason: str = ""  # why, when larger than the default (never widened after seeing results)
    max_seeds: int = 8  # the CPU budget: every benchmark of the project in about an hour on a 2-core CPU
    teaching_epochs: int = 30  # a teaching run's largest budget (about 2 minutes on a laptop CPU)
    # The softening temperature its distillation arms use (None: no arm softens a distribution with a
    # temperature, so --temperature does not apply). A teaching run's --temperature replaces it.
    temperature: float | None = None
    selection: str = ""  # how settings the project chose (not the paper) were chosen on validation
    # The reported seeds are first_seed, first_seed + 1, ...: a re-run after an inconclusive result
    # starts past every seed reported before, so that no seed already seen is reported again (the
    # earlier run is superseded, not extended), and says why in rerun_reason.
    first_seed: int = 0
    rerun_reason: str = ""
    # A re-run may also plan from the superseded run's spread (the sd of its paired differences
    # and its number of seeds): more seeds than the pilot's three, so a better estimate. The plan
    # assumes the larger of the two 80% upper confidence limits.
    prior_sd: float | None = None
    prior_seeds: int = 0
    notes: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.sesoi < 1:
            raise ValueError(f"{self.key}: sesoi must be an accuracy difference in (0, 1), got {self.sesoi!r}")
        if self.sesoi > DEFAULT_SESOI and not self.sesoi_reason.strip():
            raise ValueError(f"{self.key}: a SESOI above {DEFAULT_SESOI:g} needs a reason (sesoi_reason)")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"{self.key}: temperature must be None or a number > 0, got {self.temperature!r}")
        if self.first_seed < 0 or (self.first_seed > 0) != bool(self.rerun_reason):
            raise ValueError(f"{self.key}: first_seed must be >= 0, and moved past 0 exactly when rerun_reason "
                             f"says why (got first_seed={self.first_seed}, rerun_reason={self.rerun_reason!r})")
        if set(self.reported_seeds(self.max_seeds)) & set(PILOT_SEEDS):
            raise ValueError(f"{self.key}: the reported seeds {self.first_seed}..{self.first_seed + self.max_seeds - 1} "
                             f"must not include the pilot seeds {PILOT_SEEDS}")
        if self.max_seeds < stats.MIN_SEEDS:
            raise ValueError(f"{self.key}: max_seeds must be at least {stats.MIN_SEEDS}, got {self.max_seeds}")
        if self.prior_sd is not None and (not self.rerun_reason or self.prior_sd < 0
                                          or self.prior_seeds < stats.MIN_SEEDS):
            raise ValueError(f"{self.key}: prior_sd is the superseded run's sd (>= 0) over prior_seeds >= "
                             f"{stats.MIN_SEEDS} seeds, for a re-run (rerun_reason), got {self.prior_sd!r} over "
                             f"{self.prior_seeds}")
        keys = [a.key for a in self.arms]
        for role, key in (("treatment", self.claim.treatment), ("reference", self.claim.reference)):
            if key not in keys:
                raise ValueError(f"{self.key}: the claim's {role} arm {key!r} is not among the arms {keys}")

    def reported_seeds(self, n: int) -> tuple[int, ...]:
        """The n seeds a benchmark reports: first_seed onwards."""
        return tuple(range(self.first_seed, self.first_seed + n))

    def arm(self, key: str) -> Arm:
        return next(a for a in self.arms if a.key == key)

    # The runner's three hooks. These are the classifiers'; a sequence experiment
    # (harness/lm/bench.py) supplies its own, and everything else is shared.
    metric_label = "accuracy"  # what `accuracy` in its evaluations measures
    teacher_comparable = True  # whether the teacher's score is in the students' unit (plots draw it beside them)

    @property
    def columns(self) -> str:
        """What the teaching run's table columns mean, said once."""
        return COLUMNS

    def setup(self) -> "Prepared":
        """What every seed shares: the data and the frozen teacher, evaluated once."""
        full, teacher, teacher_evaluation = prepare(self)
        return Prepared(full, teacher, teacher_evaluation, predict_logits(teacher, full.x_test))

    def context(self, prepared: "Prepared", seed: int, config: TrainConfig,
                temperature: float | None = None) -> Context:
        split = student_split(prepared.full, self, seed)
        return Context(split, prepared.teacher, predict_logits(prepared.teacher, split.x_train), self.student,
                       config, seed, temperature=temperature)

    def evaluate(self, student: nn.Module, prepared: "Prepared") -> Evaluation:
        return evaluate(student, prepared.full.x_test, prepared.full.y_test,
                        teacher_logits=prepared.teacher_test_logits)

    def validation_score(self, student: nn.Module, prepared: "Prepared") -> float:
        return evaluate(student, prepared.full.x_val, prepared.full.y_val).accuracy


@dataclass
class Prepared:
    full: Split
    teacher: nn.Module
    teacher_evaluation: Evaluation
    teacher_test_logits: Tensor


@dataclass
class ArmResult:
    key: str
    label: str
    evaluations: list[Evaluation]
    seconds: float
    chosen_epochs: list[list[int]] = field(default_factory=list)  # per seed: the epoch(s) chosen on validation

    @property
    def accuracies(self) -> list[float]:
        return [e.accuracy for e in self.evaluations]

    def mean(self, attr: str = "accuracy") -> float:
        values = [getattr(e, attr) for e in self.evaluations if getattr(e, attr) is not None]
        return float(np.mean(values)) if values else float("nan")

    def sd(self, attr: str = "accuracy") -> float:
        values = [getattr(e, attr) for e in self.evaluations if getattr(e, attr) is not None]
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class SeedPlan:
    """How the number of reported seeds was chosen (stored in the result's provenance)."""
    pilot_seeds: tuple[int, ...]
    pilot_sd: float  # sd of the pilot's paired differences
    needed: int  # seeds for 80% power at the SESOI (at Holm's strictest level) at planning_sd, uncapped
    cap: int  # the experiment's max_seeds
    seeds: int  # what was run: min(max(needed, MIN_REPORTED_SEEDS), cap)
    family_size: int
    planning_sd: float  # the sd the power calculation assumes: an 80% upper confidence limit (see prior)
    prior: tuple[float, int] | None = None  # a re-run's superseded run: (sd, seeds); planning_sd is the larger limit

    @property
    def text(self) -> str:
        capped = f", capped at {self.cap} by the CPU budget" if self.needed > self.cap else ""
        pilot_limit = stats.planning_sd(self.pilot_sd, len(self.pilot_seeds))
        head = (f"{self.seeds} seeds: the pilot (seeds {', '.join(map(str, self.pilot_seeds))}, not reported) "
                f"gave a paired-difference sd of {self.pilot_sd * 100:.2f} points (80% upper confidence limit "
                f"{pilot_limit * 100:.2f})")
        if self.prior is not None:
            sd, n = self.prior
            head += (f"; the superseded run's sd over {n} seeds was {sd * 100:.2f} (limit "
                     f"{stats.planning_sd(sd, n) * 100:.2f}), and the plan assumes the larger limit")
        return (f"{head}, so 80% power at the SESOI (two-sided, α = 0.05/{self.family_size}) "
                f"at that sd needs {self.needed}{capped}")


@dataclass
class ExperimentResult:
    experiment: Experiment
    seeds: list[int]
    teacher: Evaluation
    arms: list[ArmResult]
    test: stats.PairedTest | None  # None with fewer than 3 seeds (a teaching run)
    started: float
    ended: float
    plan: SeedPlan | None = None
    extra: dict = field(default_factory=dict)

    def arm(self, key: str) -> ArmResult:
        return next(a for a in self.arms if a.key == key)

    @property
    def unadjusted_verdict(self) -> str | None:
        """The verdict as if this claim were alone (the stored verdict adjusts over the family)."""
        t = self.test
        return None if t is None else stats.verdict(t.mean, t.p_value, t.equivalence_p_value)

    def minimal_detectable_effect(self, family_size: int) -> float:
        return stats.minimal_detectable_effect(self.test.n, self.test.sd, family_size=family_size)


def prepare(experiment: Experiment) -> tuple[Split, nn.Module, Evaluation]:
    """The full split and the frozen teacher (trained on the whole training split)."""
    full = load_split(experiment.dataset)
    teacher = get_teacher(full, experiment.teacher, experiment.teacher_config)
    return full, teacher, evaluate(teacher, full.x_test, full.y_test)


def student_split(full: Split, experiment: Experiment, seed: int) -> Split:
    """What the student sees on this seed: below 100% labelled, which examples keep their
    labels is drawn per seed, so the subset's luck is part of the measured spread."""
    if experiment.labelled_fraction >= 1:
        return full
    return full.with_labelled_fraction(experiment.labelled_fraction, seed=seed)


def run_experiment(experiment: Experiment, seeds: tuple[int, ...] | None = None,
                   arms: tuple[str, ...] | None = None, log: Callable[[str], None] = print,
                   config: TrainConfig | None = None, temperature: float | None = None) -> ExperimentResult:
    """Every chosen arm on every seed. `log` gets one line per arm and seed, with the elapsed
    time and an estimate of what is left (readable when the output is not a terminal).
    `temperature` overrides the arms' distillation temperature (`Context.softening`; a teaching
    run's --temperature, never a benchmark's)."""
    started = time.time()
    seeds = tuple(seeds if seeds is not None else range(MIN_REPORTED_SEEDS))
    if not seeds:
        raise ValueError("run_experiment needs at least one seed")
    prepared = experiment.setup()
    chosen = [a for a in experiment.arms if arms is None or a.key in arms]
    results = {a.key: ArmResult(a.key, a.label, [], 0.0) for a in chosen}
    steps, done = len(seeds) * len(chosen), 0
    clock = time.perf_counter()
    for seed in seeds:
        ctx = experiment.context(prepared, seed, replace(config or experiment.student_config, seed=seed), temperature)
        for i, arm in enumerate(chosen, 1):
            ctx.progress, ctx.chosen_epochs = f"arm {i}/{len(chosen)}", []
            t0 = time.perf_counter()
            student = arm.train(ctx)
            results[arm.key].seconds += time.perf_counter() - t0
            results[arm.key].chosen_epochs.append(list(ctx.chosen_epochs))
            evaluation = experiment.evaluate(student, prepared)
            results[arm.key].evaluations.append(evaluation)
            done += 1
            elapsed = time.perf_counter() - clock
            log(f"  seed {seed}  arm {i}/{len(chosen)} {arm.key:<14} {experiment.metric_label} {evaluation.accuracy:.4f}  "
                f"epoch {'/'.join(map(str, ctx.chosen_epochs)) or '-'}  "
                f"[{done}/{steps}, {elapsed:.0f} s, about {elapsed / done * (steps - done):.0f} s left]")
    claim = experiment.claim
    test = None
    if len(seeds) >= stats.MIN_SEEDS and claim.treatment in results and claim.reference in results:
        test = stats.paired_test(results[claim.treatment].accuracies, results[claim.reference].accuracies,
                                 sesoi=experiment.sesoi)
    return ExperimentResult(experiment, list(seeds), prepared.teacher_evaluation, list(results.values()), test,
                            started, time.time())


def validation_scores(experiment: Experiment, arm: Arm, seeds: tuple[int, ...] = PILOT_SEEDS) -> list[float]:
    """The arm's score on the validation split, per seed: for choosing a setting the paper
    does not fix (never the test split; the pilot seeds, never the reported ones)."""
    prepared = experiment.setup()
    return [experiment.validation_score(arm.train(experiment.context(
        prepared, seed, replace(experiment.student_config, seed=seed))), prepared) for seed in seeds]


def family_size() -> int:
    """How many claims the project tests: the family its p-values are adjusted over."""
    from reference_impl import registry
    return sum(len(registry.load(name).EXPERIMENTS) for name in registry.technique_names())


def plan_seeds(experiment: Experiment, *, family: int, log: Callable[[str], None] = print) -> SeedPlan:
    """Run the pilot seeds on the claim's two arms and size the real run from their spread."""
    claim = experiment.claim
    pilot = run_experiment(experiment, PILOT_SEEDS, arms=(claim.treatment, claim.reference),
                           log=lambda line: log("  pilot" + line))
    sd = pilot.test.sd
    assumed = stats.planning_sd(sd, len(PILOT_SEEDS))
    prior = None
    if experiment.prior_sd is not None:
        prior = (experiment.prior_sd, experiment.prior_seeds)
        assumed = max(assumed, stats.planning_sd(*prior))
    needed = stats.seeds_needed(assumed, experiment.sesoi, family_size=family, cap=200)
    floor = min(MIN_REPORTED_SEEDS, experiment.max_seeds)
    return SeedPlan(PILOT_SEEDS, sd, needed, experiment.max_seeds, min(max(needed, floor), experiment.max_seeds),
                    family, assumed, prior)


# ---------------------------------------------------------------- presentation
COLUMNS = ("columns: test accuracy is mean ± sd over seeds on the held-out test split; agree w/ teacher is the "
           "fraction of test inputs where the student's top class is the teacher's; ECE is the expected "
           "calibration error (15 confidence bins; 0 = confidence matches accuracy); epoch is the one chosen "
           "on the validation split.")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _points(value: float) -> str:
    return f"{value * 100:+.2f}"


def summary(result: ExperimentResult) -> str:
    e = result.experiment
    n = len(result.seeds)
    rows = [["teacher", e.teacher.describe(), f"{result.teacher.n_params:,}", f"{result.teacher.accuracy:.4f}",
             "", "", ""]]
    for arm in result.arms:
        acc = f"{arm.mean():.4f}" + (f" ± {arm.sd():.4f}" if n > 1 else "")
        epochs = [e for per_seed in arm.chosen_epochs for e in per_seed[-1:]]
        agreement = arm.mean("teacher_agreement")  # NaN when not measured (natural text)
        rows.append([arm.key, arm.label, f"{arm.evaluations[0].n_params:,}", acc,
                     f"{agreement:.3f}" if agreement == agreement else "-", f"{arm.mean('ece'):.3f}",
                     f"{np.mean(epochs):.0f}" if epochs else "-"])
    text = [f"{e.title}  [{e.dataset}, labelled fraction {e.labelled_fraction:g}, seeds {result.seeds}]",
            _table(["", "model", "params", f"test {e.metric_label}", "agree w/ teacher", "ECE", "epoch"], rows)]
    bound = [arm.key for arm in result.arms
             if budget_binds([per_seed[-1] for per_seed in arm.chosen_epochs if per_seed], e.student_config.epochs)]
    if bound and n >= stats.MIN_SEEDS:
        text.append(f"budget: validation chose one of the last 10% of the {e.student_config.epochs} epochs for most "
                    f"seeds of {', '.join(bound)}: still improving when the budget ran out")
    claim = e.claim
    text.append(f"claim: {claim.text} ({claim.source})")
    if result.test is not None:
        t = result.test
        text.append(f"{claim.treatment} - {claim.reference}: {_points(t.mean)} ± {t.sd * 100:.2f} points "
                    f"(95% CI {_points(t.ci_low)} to {_points(t.ci_high)}; paired t-test p = {t.p_value:.3g}; "
                    f"equivalence within ±{e.sesoi * 100:g} points p = {t.equivalence_p_value:.3g}) "
                    f"-> {result.unadjusted_verdict} before adjusting over the family of claims")
        if result.plan is not None:
            text.append(f"seeds: {result.plan.text}; minimal detectable effect "
                        f"{result.minimal_detectable_effect(result.plan.family_size) * 100:.2f} points")
    elif claim.treatment in {a.key for a in result.arms} and claim.reference in {a.key for a in result.arms}:
        d = result.arm(claim.treatment).mean() - result.arm(claim.reference).mean()
        text.append(f"{claim.treatment} - {claim.reference}: {_points(d)} points on {n} seed"
                    f"{'s' if n > 1 else ''}: no verdict from fewer than {stats.MIN_SEEDS} seeds")
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


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_temperature(module: ModuleType, experiment: Experiment, temperature: float | None) -> None:
    """A teaching run's --temperature must be a number > 0, for an experiment whose arms soften
    with a temperature (ValueError otherwise, naming the experiment)."""
    if temperature is None:
        return
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"--temperature must be a number > 0, got {temperature:g}")
    if experiment.temperature is None:
        spec = getattr(module, "__spec__", None)  # under `python -m`, __name__ is "__main__"
        name = (spec.name if spec is not None else module.__name__).rsplit(".", 1)[-1]
        raise ValueError(f"--temperature does not apply to {name} / {experiment.key}: no arm of this experiment "
                         "softens a distribution with a distillation temperature")


def quick_run(module: ModuleType, experiment_key: str | None = None, *, seed: int = 0,
              epochs: int | None = None, temperature: float | None = None) -> ExperimentResult:
    """The teaching run: one seed of one experiment, printed beside the stored benchmark result.
    `temperature` replaces the distillation temperature of the experiment's arms for this run."""
    from .results import stored_result_text
    experiment = find_experiment(module, experiment_key)
    check_temperature(module, experiment, temperature)
    budget = epochs or min(experiment.teaching_epochs, experiment.student_config.epochs)
    config = replace(experiment.student_config, epochs=budget)
    print(f"teaching run: at most {budget} epochs (the benchmark allows {experiment.student_config.epochs}; "
          f"--epochs {experiment.student_config.epochs} to match it)", flush=True)
    changed = temperature is not None and temperature != experiment.temperature
    if changed:
        print(f"temperature T = {temperature:g} (the experiment's: {experiment.temperature:g}); the stored result "
              f"below used {experiment.temperature:g}, so the comparison is not like for like", flush=True)
    t0 = time.perf_counter()
    result = run_experiment(experiment, seeds=(seed,), log=_stderr, config=config, temperature=temperature)
    print(summary(result))
    print(experiment.columns)
    print(f"({time.perf_counter() - t0:.1f} s on this machine; one seed is a demonstration, not evidence)")
    if changed:
        print(f"(this run: temperature {temperature:g}; the arms' labels and the stored result: "
              f"{experiment.temperature:g})")
    print()
    print(stored_result_text(module, experiment))
    return result


def benchmark(module: ModuleType, seeds: tuple[int, ...] | None = None, write: bool = True,
              directory=None, experiment: str | None = None) -> list[ExperimentResult]:
    """Every experiment of the module (or only the one keyed `experiment`): plan the seeds
    (unless given), run, write RDF and plots, then re-adjust the family of all claims in the
    results directory. With `experiment`, the module's other stored results are kept as they are."""
    from .results import git_commit, results_dir, update_family, write_results
    experiments = [find_experiment(module, experiment)] if experiment is not None else module.EXPERIMENTS
    family = family_size()
    commit = git_commit(Path(module.__file__))  # the code this run starts from (edits during it do not count)
    results = []
    for experiment in experiments:
        print(f"\n== {module.__name__.rsplit('.', 1)[-1]} / {experiment.key}", flush=True)
        plan = None
        if seeds is None:
            plan = plan_seeds(experiment, family=family)
            print(f"  seeds: {plan.text}", flush=True)
        result = run_experiment(experiment, seeds if seeds is not None else experiment.reported_seeds(plan.seeds))
        result.plan = plan
        print(summary(result))
        results.append(result)
    if write:
        directory = results_dir(directory)
        for path in write_results(module, results, directory, commit=commit):
            print(f"wrote {path}")
        for path in update_family(directory, family_size=family):
            print(f"wrote {path}")
    return results


def run_cli(module: ModuleType, argv: list[str] | None = None) -> None:
    """`python -m reference_impl.techniques.<name> [--bench] [--seeds N]`, or a quick run
    `[--experiment KEY] [--seed S] [--epochs E] [--temperature T]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__name__}",
                                     description=(module.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="full benchmark: all experiments, planned seeds, "
                        "writes RDF to KD_RESULTS_DIR (default results/)")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"--bench with this many seeds instead of the power calculation (at least {stats.MIN_SEEDS})")
    parser.add_argument("--experiment", default=None, help="quick run: which experiment (default: the first)")
    parser.add_argument("--seed", type=int, default=0, help="quick run: the seed (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="quick run: the largest epoch budget")
    parser.add_argument("--temperature", type=float, default=None,
                        help="quick run: the distillation temperature of the experiment's arms instead of "
                             "their own (only for an experiment whose arms soften with one)")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.seeds is not None and not args.bench:
        parser.error("--seeds applies to --bench (a quick run uses one seed)")
    if args.bench and (args.experiment is not None or args.seed != 0 or args.epochs is not None):
        parser.error("--experiment, --seed and --epochs apply to a quick run (--bench runs every experiment)")
    if args.bench and args.temperature is not None:
        parser.error("--temperature applies to a quick run (--bench uses each experiment's own temperature)")
    if args.seeds is not None and args.seeds < stats.MIN_SEEDS:
        parser.error(f"--seeds must be at least {stats.MIN_SEEDS} (a mean, a spread and a paired test), "
                     f"got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.bench:
        benchmark(module, tuple(range(args.seeds)) if args.seeds else None)
        return
    try:
        check_temperature(module, find_experiment(module, args.experiment), args.temperature)
    except ValueError as exc:
        parser.error(str(exc))
    quick_run(module, args.experiment, seed=args.seed, epochs=args.epochs, temperature=args.temperature)


__all__ = ["Arm", "BASELINE", "Claim", "Context", "Experiment", "ExperimentResult", "SeedPlan", "benchmark",
           "budget_binds", "check_temperature", "family_size", "find_experiment", "n_params", "plan_seeds", "quick_run", "run_cli",
           "run_experiment", "scratch_student", "summary", "validation_scores"]
