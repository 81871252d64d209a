"""Where distillation helps: regime curves.

A benchmark answers one claim in one setting. Users ask a different question: *with my amount
of labelled data and my student size, is distillation worth it?* This module measures, for
soft targets and three other techniques, the gain over the same student trained on hard labels

    gain(f, h) = accuracy(technique; f, h) − accuracy(hard labels; f, h)

as a function of the labelled fraction f (1, 3, 10, 30, 100% of MNIST-1D's 4,000 training
inputs, student MLP 64) and of the student's capacity h (MLP 16, 64, 256 on all the data).

The protocol is the benchmarks' (bench.py): the teacher is the soft_targets CNN, trained once
on the whole training split (the object every point asks about: "this teacher's knowledge
given to a student with fewer labels"); below 100%, *both* arms see only the labelled subset,
drawn per seed, as in Hinton et al.'s 3% experiment; each technique's arm is the treatment arm
of one of its own experiments, unchanged (its settings are that experiment's); every arm's
epoch is chosen on the validation split; the arms of a seed share the student's
initialisation, the subset and the batch order, so the gain is a paired difference.

Budgets: an epoch at 1% is a single step, so the largest budget grows as the subset shrinks,
min(6000, max(300, 300 / f)) epochs (about 6,000 to 19,000 steps), with early stopping after a
quarter of it without a better validation score. 300 epochs on the full set, as in the MLP
benchmarks (soft_targets.STUDENT_CONFIG): at 100, validation chose one of the last ten epochs for
most distilled students (they were still improving), and a budget that binds understates a slowly
converging technique. Where it still binds (kb.budget), the page says so at the point.

The points are descriptive, not claims: they have a mean gain and a 95% paired t-interval
over the seeds, no verdict, and they are not part of the family of claims adjusted by Holm
(which tests the papers' claims). `kd regimes` runs them and writes results/regimes.ttl and
results/regimes.png.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import stats
from .bench import Arm, Context, Experiment, find_experiment, prepare, scratch_student, student_split
from .evaluate import evaluate
from .models import ModelSpec
from .train import TrainConfig, predict_logits

# technique module -> (its experiment, the arm whose method the curve measures)
TECHNIQUES: dict[str, tuple[str, str]] = {
    "soft_targets": ("soft-vs-hard", "distilled"),
    "decoupled_kd": ("dkd-vs-kd", "dkd"),
    "relational_kd": ("rkd-vs-scratch", "rkd"),
    "similarity_preserving": ("sp-vs-scratch", "sp"),
}
FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0)
SIZES = ((16,), (64,), (256,))
DEFAULT_HIDDEN = (64,)
SEEDS = (0, 1, 2, 3, 4)
AXES = ("labelled fraction", "student size")


@dataclass(frozen=True)
class Condition:
    fraction: float  # of the training split that keeps its labels (and that the student sees)
    hidden: tuple[int, ...]  # the student MLP's hidden widths

    @property
    def key(self) -> str:
        return f"f{self.fraction:g}-mlp{'-'.join(map(str, self.hidden))}"

    @property
    def epochs(self) -> int:
        """The largest budget: 300 epochs on the full set, more on a small subset (see above)."""
        return min(6000, max(300, round(300 / self.fraction)))

    def axes(self) -> list[str]:
        """The curves this condition lies on (the default student on all the data lies on both)."""
        on = []
        if self.hidden == DEFAULT_HIDDEN:
            on.append(AXES[0])
        if self.fraction == 1.0:
            on.append(AXES[1])
        return on


def grid(fractions=FRACTIONS, sizes=SIZES) -> list[Condition]:
    """The conditions of both curves, each once."""
    conditions = [Condition(f, DEFAULT_HIDDEN) for f in fractions]
    conditions += [Condition(1.0, h) for h in sizes if Condition(1.0, h) not in conditions]
    return conditions


@dataclass
class Point:
    """One technique at one condition: accuracies per seed of the technique and the baseline."""
    technique: str  # module name
    concept: str
    arm_label: str
    condition: Condition
    parameters: int
    seeds: list[int]
    accuracies: list[float]
    baseline: list[float]
    chosen_epochs: list[int]  # the technique's, per seed (chosen on validation)
    baseline_epochs: list[int] = field(default_factory=list)  # the hard-label student's
    budget: int = 0  # the largest budget the arms had

    @property
    def gains(self) -> list[float]:
        return [a - b for a, b in zip(self.accuracies, self.baseline)]

    def interval(self) -> stats.PairedTest:
        return stats.paired_test(self.accuracies, self.baseline, sesoi=0.01)


def _treatments(techniques) -> list[tuple[str, str, Arm, Experiment]]:
    from reference_impl import registry
    out = []
    for name in techniques:
        if name not in TECHNIQUES:
            raise ValueError(f"no regime curve for {name!r}: choose among {', '.join(TECHNIQUES)}")
        module = registry.load(name)
        experiment = find_experiment(module, TECHNIQUES[name][0])
        out.append((name, module.CONCEPT, experiment.arm(TECHNIQUES[name][1]), experiment))
    first = out[0][3]
    for name, _, _, e in out:
        if (e.dataset, e.teacher, e.teacher_config) != (first.dataset, first.teacher, first.teacher_config):
            raise ValueError(f"{name}: its experiment {e.key} uses another teacher or dataset than {out[0][0]}")
    return out


def run_regimes(techniques=tuple(TECHNIQUES), conditions: list[Condition] | None = None,
                seeds=SEEDS, log: Callable[[str], None] = print,
                epochs: Callable[[Condition], int] | None = None) -> list[Point]:
    """Every technique and the hard-label baseline at every condition and seed (`epochs`
    overrides the budget, for tests)."""
    if len(seeds) < stats.MIN_SEEDS:
        raise ValueError(f"regime curves need at least {stats.MIN_SEEDS} seeds, got {len(seeds)}")
    treatments = _treatments(techniques)
    experiment = treatments[0][3]
    full, teacher, _ = prepare(experiment)
    teacher_test_logits = predict_logits(teacher, full.x_test)
    conditions = conditions or grid()
    points: dict[tuple[str, Condition], Point] = {}
    steps, done, clock = len(conditions) * len(seeds) * (len(treatments) + 1), 0, time.perf_counter()
    for condition in conditions:
        spec = ModelSpec("mlp", hidden=condition.hidden)
        budget = epochs(condition) if epochs else condition.epochs
        setting = replace(experiment, labelled_fraction=condition.fraction)
        for seed in seeds:
            split = student_split(full, setting, seed)
            ctx = Context(split, teacher, predict_logits(teacher, split.x_train), spec,
                          TrainConfig(epochs=budget, seed=seed), seed)
            scores = {}
            for key, arm in [("baseline", Arm("baseline", "", scratch_student))] + [(t[0], t[2]) for t in treatments]:
                ctx.chosen_epochs = []
                ev = evaluate(arm.train(ctx), full.x_test, full.y_test, teacher_logits=teacher_test_logits)
                scores[key] = (ev, ctx.chosen_epochs[-1] if ctx.chosen_epochs else 0)
                done += 1
            elapsed = time.perf_counter() - clock
            log(f"  {condition.key:<14} seed {seed}  baseline {scores['baseline'][0].accuracy:.4f}  "
                + "  ".join(f"{t[0]} {scores[t[0]][0].accuracy - scores['baseline'][0].accuracy:+.4f}"
                            for t in treatments)
                + f"  [{done}/{steps}, {elapsed:.0f} s, about {elapsed / done * (steps - done):.0f} s left]")
            for name, concept, arm, _ in treatments:
                point = points.setdefault((name, condition), Point(
                    name, concept, arm.label, condition, scores[name][0].n_params, [], [], [], [], [], budget))
                point.seeds.append(seed)
                point.accuracies.append(scores[name][0].accuracy)
                point.baseline.append(scores["baseline"][0].accuracy)
                point.chosen_epochs.append(scores[name][1])
                point.baseline_epochs.append(scores["baseline"][1])
    return list(points.values())


# ---------------------------------------------------------------- RDF and plot
REGIMES_FILE, REGIMES_PLOT = "regimes.ttl", "regimes.png"


def regime_triples(points: list[Point], *, plot: str, started: float, ended: float, commit: str,
                   dataset: str = "", teacher: str = ""):
    from kb.namespaces import KD, KDI, KDO, KDR, PREFIXES

    from .results import RDF_TYPE, _lit, _Triples, cpu_model
    t = _Triples()
    rdfs, prov = PREFIXES["rdfs"], PREFIXES["prov"]
    run = KDR + "regimes--run"
    for name in sorted({p.technique for p in points}):
        curve = f"{KDR}regimes--{name}"
        first = next(p for p in points if p.technique == name)
        t.add(curve, RDF_TYPE, KDO + "RegimeCurve")
        t.add(curve, rdfs + "label", _lit(f"Gain over hard labels by labelled fraction and student size: {name}"))
        t.add(curve, KDO + "technique", KD + first.concept)
        t.add(curve, KDO + "implementation", KDI + name)
        t.add(curve, KDO + "armLabel", _lit(first.arm_label))
        t.add(curve, KDO + "plot", _lit(plot))
        if dataset:
            t.add(curve, KDO + "dataset", _lit(dataset))
        if teacher:
            t.add(curve, KDO + "teacherModel", _lit(teacher))
        t.add(curve, prov + "wasGeneratedBy", run)
        for p in (p for p in points if p.technique == name):
            node = f"{curve}--{p.condition.key}"
            test = p.interval()
            t.add(curve, KDO + "hasPoint", node)
            t.add(node, RDF_TYPE, KDO + "RegimePoint")
            for axis in p.condition.axes():
                t.add(node, KDO + "regimeAxis", _lit(axis))
            t.add(node, KDO + "labelledFraction", _lit(float(p.condition.fraction)))
            t.add(node, KDO + "studentModel", _lit(ModelSpec("mlp", hidden=p.condition.hidden).describe()))
            t.add(node, KDO + "parameters", _lit(p.parameters))
            t.add(node, KDO + "studentEpochs", _lit(p.budget or p.condition.epochs))
            t.add(node, KDO + "nSeeds", _lit(len(p.seeds)))
            t.add(node, KDO + "seeds", _lit(" ".join(map(str, p.seeds))))
            t.add(node, KDO + "meanAccuracy", _lit(float(np.mean(p.accuracies))))
            t.add(node, KDO + "baselineAccuracy", _lit(float(np.mean(p.baseline))))
            t.add(node, KDO + "meanDifference", _lit(test.mean))
            t.add(node, KDO + "sdDifference", _lit(test.sd))
            t.add(node, KDO + "ciLow", _lit(test.ci_low))
            t.add(node, KDO + "ciHigh", _lit(test.ci_high))
            t.add(node, KDO + "chosenEpochs", _lit(" ".join(map(str, p.chosen_epochs))))
            if p.baseline_epochs:
                t.add(node, KDO + "baselineChosenEpochs", _lit(" ".join(map(str, p.baseline_epochs))))
    t.add(run, RDF_TYPE, prov + "Activity")
    t.add(run, prov + "startedAtTime", _lit(dt.datetime.fromtimestamp(started, dt.UTC).isoformat(), "dateTime"))
    t.add(run, prov + "endedAtTime", _lit(dt.datetime.fromtimestamp(ended, dt.UTC).isoformat(), "dateTime"))
    t.add(run, KDO + "wallSeconds", _lit(ended - started))
    t.add(run, KDO + "gitCommit", _lit(commit))
    t.add(run, KDO + "cpu", _lit(cpu_model()))
    return t.items


def plot_regimes(points: list[Point], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, axis in zip(axes, AXES):
        for name in sorted({p.technique for p in points}):
            on = sorted((p for p in points if p.technique == name and axis in p.condition.axes()),
                        key=lambda p: p.condition.fraction if axis == AXES[0] else p.parameters)
            if not on:
                continue
            xs = [p.condition.fraction * 100 if axis == AXES[0] else p.parameters for p in on]
            tests = [p.interval() for p in on]
            ys = [t.mean * 100 for t in tests]
            err = [[(t.mean - t.ci_low) * 100 for t in tests], [(t.ci_high - t.mean) * 100 for t in tests]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=name)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("labelled fraction (%), student MLP 64" if axis == AXES[0] else
                      "student parameters (MLP 16, 64, 256), all labels")
        ax.set_ylabel("gain over hard labels (accuracy points)")
        ax.set_title(f"gain vs {axis} (mean, 95% CI over seeds)", fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_regimes(points: list[Point], directory: Path | None = None, *, started: float, ended: float) -> list[Path]:
    import pyoxigraph as ox

    from kb.namespaces import PREFIXES

    from .results import ROOT, _write_atomically, git_commit, results_dir
    directory = results_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    plot_path = directory / REGIMES_PLOT
    plot_regimes(points, plot_path)
    experiment = _treatments(sorted({p.technique for p in points}))[0][3]
    triples = regime_triples(points, plot=f"results/{REGIMES_PLOT}", started=started, ended=ended,
                             commit=git_commit(ROOT / "reference_impl" / "harness" / "regimes.py"),
                             dataset=experiment.dataset, teacher=experiment.teacher.describe())
    header = (b"# Regime curves: gain over hard labels by labelled fraction and student size.\n"
              b"# Generated by `kd regimes` (reference_impl/harness/regimes.py): do not edit by hand.\n")
    path = directory / REGIMES_FILE
    _write_atomically(path, header + ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES))
    return [path, plot_path]


def table(points: list[Point]) -> str:
    lines = [f"{'technique':<22} {'condition':<14} {'params':>7} {'baseline':>8} {'gain (points)':>15}  95% CI"]
    for p in sorted(points, key=lambda p: (p.technique, p.condition.hidden, p.condition.fraction)):
        t = p.interval()
        lines.append(f"{p.technique:<22} {p.condition.key:<14} {p.parameters:>7,} {np.mean(p.baseline):>8.4f} "
                     f"{t.mean * 100:>+8.2f} ± {t.sd * 100:4.2f}  [{t.ci_low * 100:+.2f}, {t.ci_high * 100:+.2f}]")
    return "\n".join(lines)


def main(techniques=tuple(TECHNIQUES), seeds=SEEDS, directory: Path | None = None) -> list[Path]:
    started = time.time()
    points = run_regimes(techniques, seeds=seeds)
    print(table(points))
    paths = write_regimes(points, directory, started=started, ended=time.time())
    for path in paths:
        print(f"wrote {path}")
    return paths


if __name__ == "__main__":
    main()

__all__ = ["AXES", "Condition", "FRACTIONS", "Point", "SIZES", "TECHNIQUES", "grid", "main", "run_regimes",
           "write_regimes"]
