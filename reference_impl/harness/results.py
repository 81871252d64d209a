"""Benchmark results as RDF (ML-Schema + PROV) and as a plot, in results/.

One Turtle file per technique module, loaded by `kd build` beside the ontology:

    kdr:<module>--<experiment>            a kdo:BenchmarkResult: the claim, the verdict, the
                                          paired difference with its interval and p-value
    kdr:<module>--<experiment>--<arm>     a kdo:ArmResult: mean and sd over seeds
    kdr:<module>--<experiment>--<arm>--seed<N>   a mls:ModelEvaluation per seed (accuracy)
    kdr:<module>--<experiment>--run       a prov:Activity / mls:Run with the provenance:
                                          dataset, seeds, git commit, torch, CPU, dates
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from types import ModuleType

import pyoxigraph as ox
import torch

from kb.namespaces import KD, KDI, KDO, KDR, PREFIXES

from .bench import ExperimentResult

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"

RDF_TYPE = PREFIXES["rdf"] + "type"
XSD = PREFIXES["xsd"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(module_file: Path) -> str:
    """HEAD, marked when the code that ran is not HEAD's: the harness or this module modified,
    or this module not committed at all. Unrelated untracked files do not count."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=5)
    try:
        head = git("rev-parse", "HEAD").stdout.strip()
        if not head:
            return "unknown"
        modified = git("status", "--porcelain", "--untracked-files=no", "--",
                       "reference_impl/harness", str(module_file)).stdout.strip()
        untracked = git("ls-files", "--error-unmatch", str(module_file)).returncode != 0
        return head + ("+uncommitted-changes" if modified or untracked else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class _Triples:
    def __init__(self) -> None:
        self.items: list[ox.Triple] = []

    def add(self, s: str, p: str, o: ox.NamedNode | ox.Literal | str) -> None:
        obj = ox.NamedNode(o) if isinstance(o, str) else o
        self.items.append(ox.Triple(ox.NamedNode(s), ox.NamedNode(p), obj))


def _lit(value, datatype: str | None = None) -> ox.Literal:
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(value, int):
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + "integer"))
    if isinstance(value, float):
        return ox.Literal(repr(round(value, 6)), datatype=ox.NamedNode(XSD + "double"))
    if datatype:
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + datatype))
    return ox.Literal(str(value))


def result_triples(module_name: str, concept: str, result: ExperimentResult, *, plot: str,
                   commit: str, torch_version: str) -> list[ox.Triple]:
    t = _Triples()
    kdo, prov, mls, rdfs, dcterms = KDO, PREFIXES["prov"], PREFIXES["mls"], PREFIXES["rdfs"], PREFIXES["dcterms"]
    e = result.experiment
    base = f"{KDR}{module_name}--{e.key}"
    run = base + "--run"
    impl = KDI + module_name
    t.add(base, RDF_TYPE, kdo + "BenchmarkResult")
    t.add(base, RDF_TYPE, prov + "Entity")
    t.add(base, rdfs + "label", _lit(f"{e.title}"))
    t.add(base, kdo + "technique", KD + concept)
    t.add(base, kdo + "implementation", impl)
    t.add(base, kdo + "experimentKey", _lit(e.key))
    t.add(base, kdo + "claim", _lit(e.claim.text))
    t.add(base, kdo + "claimSource", _lit(e.claim.source))
    t.add(base, kdo + "dataset", _lit(e.dataset))
    t.add(base, kdo + "labelledFraction", _lit(float(e.labelled_fraction)))
    t.add(base, kdo + "teacherModel", _lit(e.teacher.describe()))
    t.add(base, kdo + "studentModel", _lit(e.student.describe()))
    t.add(base, kdo + "teacherAccuracy", _lit(result.teacher.accuracy))
    t.add(base, kdo + "teacherParameters", _lit(result.teacher.n_params))
    t.add(base, kdo + "studentEpochs", _lit(e.student_config.epochs))
    t.add(base, kdo + "nSeeds", _lit(len(result.seeds)))
    t.add(base, kdo + "seeds", _lit(" ".join(map(str, result.seeds))))
    if e.notes:
        t.add(base, PREFIXES["skos"] + "note", _lit(e.notes))
    t.add(base, kdo + "plot", _lit(plot))
    t.add(base, prov + "wasGeneratedBy", run)
    c = result.comparison
    t.add(base, kdo + "treatmentArm", f"{base}--{c.treatment}")
    t.add(base, kdo + "referenceArm", f"{base}--{c.reference}")
    t.add(base, kdo + "meanDifference", _lit(c.mean))
    t.add(base, kdo + "sdDifference", _lit(c.sd))
    t.add(base, kdo + "ciLow", _lit(c.ci_low))
    t.add(base, kdo + "ciHigh", _lit(c.ci_high))
    t.add(base, kdo + "pValue", _lit(c.p_value if c.p_value == c.p_value else 1.0))
    t.add(base, kdo + "verdict", _lit(c.verdict))
    for arm in result.arms:
        a = f"{base}--{arm.key}"
        t.add(base, kdo + "hasArm", a)
        t.add(a, RDF_TYPE, kdo + "ArmResult")
        t.add(a, kdo + "armKey", _lit(arm.key))
        t.add(a, rdfs + "label", _lit(arm.label))
        t.add(a, kdo + "meanAccuracy", _lit(arm.mean()))
        t.add(a, kdo + "sdAccuracy", _lit(arm.sd()))
        t.add(a, kdo + "meanECE", _lit(arm.mean("ece")))
        agreement = arm.mean("teacher_agreement")
        if agreement == agreement:
            t.add(a, kdo + "meanTeacherAgreement", _lit(agreement))
        t.add(a, kdo + "parameters", _lit(arm.evaluations[0].n_params))
        t.add(a, kdo + "trainSeconds", _lit(arm.seconds))
        for seed, ev in zip(result.seeds, arm.evaluations):
            m = f"{a}--seed{seed}"
            t.add(a, kdo + "evaluation", m)
            t.add(m, RDF_TYPE, mls + "ModelEvaluation")
            t.add(m, mls + "specifiedBy", kdo + "TestAccuracy")
            t.add(m, mls + "hasValue", _lit(ev.accuracy))
            t.add(m, kdo + "seed", _lit(seed))
    t.add(run, RDF_TYPE, prov + "Activity")
    t.add(run, RDF_TYPE, mls + "Run")
    t.add(run, mls + "executes", impl)
    t.add(run, prov + "startedAtTime", _lit(dt.datetime.fromtimestamp(result.started, dt.UTC).isoformat(), "dateTime"))
    t.add(run, prov + "endedAtTime", _lit(dt.datetime.fromtimestamp(result.ended, dt.UTC).isoformat(), "dateTime"))
    t.add(run, kdo + "wallSeconds", _lit(result.ended - result.started))
    t.add(run, kdo + "gitCommit", _lit(commit))
    t.add(run, kdo + "torchVersion", _lit(torch_version))
    t.add(run, kdo + "pythonVersion", _lit(platform.python_version()))
    t.add(run, kdo + "cpu", _lit(cpu_model()))
    t.add(run, kdo + "hardware", _lit(f"{platform.machine()}, {os.cpu_count()} logical CPUs, "
                                      f"torch threads {torch.get_num_threads()}, no GPU used"))
    t.add(run, dcterms + "date", _lit(dt.date.fromtimestamp(result.ended).isoformat(), "date"))
    return t.items


def plot_results(results: list[ExperimentResult], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
    for ax, result in zip(axes[0], results):
        names = [a.key for a in result.arms]
        for i, arm in enumerate(result.arms):
            ax.bar(i, arm.mean() * 100, yerr=arm.sd() * 100, color="#7aa6c2" if i else "#bbbbbb", capsize=4)
            ax.scatter([i] * len(arm.accuracies), [v * 100 for v in arm.accuracies], color="black", s=10, zorder=3)
        ax.axhline(result.teacher.accuracy * 100, color="#c0504d", linestyle="--", label="teacher")
        lows = [min(a.accuracies) for a in result.arms] + [result.teacher.accuracy]
        ax.set_ylim(max(0, min(lows) * 100 - 8), min(100, max(result.teacher.accuracy, *[max(a.accuracies) for a in result.arms]) * 100 + 4))
        ax.set_xticks(range(len(names)), names, rotation=15)
        ax.set_ylabel("test accuracy (%)")
        c = result.comparison
        ax.set_title(f"{result.experiment.key}: {c.treatment} − {c.reference} = {c.mean * 100:+.1f} pts\n"
                     f"({c.verdict}, {len(result.seeds)} seeds, {result.experiment.dataset})", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(module: ModuleType, results: list[ExperimentResult], directory: Path = RESULTS_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    name = module.__name__.rsplit(".", 1)[-1]
    plot_path = directory / f"{name}.png"
    plot_results(results, plot_path, f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}")
    commit = git_commit(Path(module.__file__))
    triples = []
    for r in results:
        triples += result_triples(name, module.CONCEPT, r, plot=f"results/{plot_path.name}",
                                  commit=commit, torch_version=torch.__version__)
    ttl_path = directory / f"{name}.ttl"
    header = (f"# Benchmark results of reference_impl.techniques.{name}, written by `kd bench {name}`.\n"
              "# Generated: do not edit by hand; rerun the benchmark instead.\n").encode()
    body = ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES)
    tmp = ttl_path.with_suffix(".tmp")
    tmp.write_bytes(header + body)
    tmp.replace(ttl_path)
    return [ttl_path, plot_path]
