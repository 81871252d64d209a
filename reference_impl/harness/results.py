"""Benchmark results as RDF (ML-Schema + PROV) and as plots, in KD_RESULTS_DIR (default results/).

One Turtle file per technique module, loaded by `kd build` beside the ontology:

    kdr:<module>--<experiment>            a kdo:BenchmarkResult: the claim, its SESOI, the paired
                                          difference with its interval, the raw p-values of the
                                          difference and equivalence tests, the seed plan
    kdr:<module>--<experiment>--<arm>     a kdo:ArmResult: mean and sd over seeds, chosen epochs
    kdr:<module>--<experiment>--<arm>--seed<N>   a mls:ModelEvaluation per seed (accuracy)
    kdr:<module>--<experiment>--run       a prov:Activity / mls:Run with the provenance:
                                          dataset, seeds, git commit, torch, CPU and its
                                          instruction sets, threads, dates

and one file for the family of all claims, rewritten whenever a module's results are:

    family.ttl    per result: Holm-adjusted p-values and the verdict (stats.py), the family size
    forest.png    every claim's difference and interval against its ±SESOI band, by verdict
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import textwrap
from pathlib import Path
from types import ModuleType

import pyoxigraph as ox
import torch

from kb.namespaces import KD, KDI, KDO, KDR, PREFIXES

from . import stats
from .bench import ArmResult, Experiment, ExperimentResult
from .evaluate import Evaluation
from .bench import family_size as planned_family_size

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"
FAMILY_FILE = "family.ttl"
FOREST_PLOT = "forest.png"


def results_dir(directory: Path | str | None = None) -> Path:
    """Where results go: the argument, else KD_RESULTS_DIR, else results/ in the repository."""
    return Path(directory or os.environ.get("KD_RESULTS_DIR") or RESULTS_DIR)

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


def cpu_flags() -> str:
    """The vector instruction sets that change floating-point results between machines."""
    interesting = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in interesting if f in flags)
    except OSError:
        pass
    return "unknown"


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


def command_line_seeds_text(seeds: list[int]) -> str:
    return (f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]}) set on the command line (kd bench --seeds {len(seeds)}), "
            "not planned from a pilot: no power calculation; the minimal detectable effect says what this many "
            "seeds could see")


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
    t.add(base, kdo + "metric", _lit(e.metric_label))
    t.add(base, kdo + "teacherAccuracy", _lit(result.teacher.accuracy))
    if not e.teacher_comparable:
        t.add(base, kdo + "teacherComparable", _lit(False))
    t.add(base, kdo + "teacherParameters", _lit(result.teacher.n_params))
    t.add(base, kdo + "studentEpochs", _lit(e.student_config.epochs))
    t.add(base, kdo + "epochSelection", _lit(
        f"epoch chosen per arm and seed on the validation split: best validation {e.metric_label} within {e.student_config.epochs} epochs, stopping after "
        f"{e.student_config.stopping_patience()} epochs without improvement"))
    t.add(base, kdo + "nSeeds", _lit(len(result.seeds)))
    t.add(base, kdo + "seeds", _lit(" ".join(map(str, result.seeds))))
    t.add(base, kdo + "sesoi", _lit(float(e.sesoi)))
    if e.sesoi_reason:
        t.add(base, kdo + "sesoiReason", _lit(e.sesoi_reason))
    if e.selection:
        t.add(base, kdo + "selectionProcedure", _lit(e.selection))
    if e.rerun_reason:
        t.add(base, kdo + "rerunReason", _lit(e.rerun_reason))
    if e.notes:
        t.add(base, PREFIXES["skos"] + "note", _lit(e.notes))
    t.add(base, kdo + "plot", _lit(plot))
    t.add(base, prov + "wasGeneratedBy", run)
    c, claim = result.test, e.claim
    t.add(base, kdo + "treatmentArm", f"{base}--{claim.treatment}")
    t.add(base, kdo + "referenceArm", f"{base}--{claim.reference}")
    t.add(base, kdo + "meanDifference", _lit(c.mean))
    t.add(base, kdo + "sdDifference", _lit(c.sd))
    t.add(base, kdo + "ciLow", _lit(c.ci_low))
    t.add(base, kdo + "ciHigh", _lit(c.ci_high))
    t.add(base, kdo + "pValue", _lit(c.p_value))
    t.add(base, kdo + "equivalencePValue", _lit(c.equivalence_p_value))
    if result.plan is not None:
        family = result.plan.family_size
        t.add(base, kdo + "seedPlan", _lit(result.plan.text))
        t.add(base, kdo + "pilotSdDifference", _lit(result.plan.pilot_sd))
        t.add(base, kdo + "planningSdDifference", _lit(result.plan.planning_sd))
        t.add(base, kdo + "seedsNeeded", _lit(result.plan.needed))
        t.add(base, kdo + "minimalDetectableEffect", _lit(result.minimal_detectable_effect(family)))
    else:  # `kd bench --seeds N`: the seeds were set by hand, so the result says there was no plan
        t.add(base, kdo + "seedPlan", _lit(command_line_seeds_text(result.seeds)))
        t.add(base, kdo + "minimalDetectableEffect", _lit(result.minimal_detectable_effect(planned_family_size())))
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
        epochs = [per_seed[-1] for per_seed in arm.chosen_epochs if per_seed]
        if epochs:
            t.add(a, kdo + "chosenEpochs", _lit(" ".join(map(str, epochs))))
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
    t.add(run, kdo + "cpuFlags", _lit(cpu_flags()))
    t.add(run, kdo + "threads", _lit(torch.get_num_threads()))
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
        e = result.experiment
        teacher = [result.teacher.accuracy] if e.teacher_comparable else []  # else another unit (its own tokens)
        if teacher:
            ax.axhline(teacher[0] * 100, color="#c0504d", linestyle="--", label="teacher")
            ax.legend(loc="lower right", fontsize=8)
        lows = [min(a.accuracies) for a in result.arms] + teacher
        highs = [max(a.accuracies) for a in result.arms] + teacher
        ax.set_ylim(max(0, min(lows) * 100 - 8), min(100, max(highs) * 100 + 4))
        ax.set_xticks(range(len(names)), names, rotation=15)
        ax.set_ylabel(f"test {e.metric_label} (%)")
        c, claim = result.test, result.experiment.claim
        ax.set_title(f"{result.experiment.key}: {claim.treatment} − {claim.reference} = {c.mean * 100:+.1f} pts\n"
                     f"({result.unadjusted_verdict} before family adjustment, {len(result.seeds)} seeds, "
                     f"{result.experiment.dataset})", fontsize=9)
    fig.suptitle(textwrap.fill(title, width=int(9 * 5.2 * len(results))), fontsize=10)  # about 9 characters an inch
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(module: ModuleType, results: list[ExperimentResult], directory: Path | None = None, *,
                  commit: str | None = None) -> list[Path]:
    """`commit`: the code version the run started from (`git_commit` when it started); by default
    the version now, which is marked as modified if the code changed while the run went on."""
    for r in results:
        if r.test is None:
            raise ValueError(f"{r.experiment.key}: results need at least {stats.MIN_SEEDS} seeds, got {len(r.seeds)}")
    directory = results_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = module.__name__.rsplit(".", 1)[-1]
    ttl_path = directory / f"{name}.ttl"
    kept_triples, kept_results = _kept_results(module, results, ttl_path)
    new = {r.experiment.key: r for r in results}
    plotted = [r for e in module.EXPERIMENTS if (r := new.get(e.key) or kept_results.get(e.key)) is not None]
    plot_path = directory / f"{name}.png"
    plot_results(plotted, plot_path, f"{name}: {(module.__doc__ or '').strip().splitlines()[0]}")
    commit = commit or git_commit(Path(module.__file__))
    triples = kept_triples
    for r in results:
        triples += result_triples(name, module.CONCEPT, r, plot=f"results/{plot_path.name}",
                                  commit=commit, torch_version=torch.__version__)
    header = (f"# Benchmark results of reference_impl.techniques.{name}, written by `kd bench {name}`.\n"
              "# Generated: do not edit by hand; rerun the benchmark instead.\n").encode()
    body = ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES)
    _write_atomically(ttl_path, header + body)
    return [ttl_path, plot_path]


def _kept_results(module: ModuleType, results: list[ExperimentResult],
                  ttl_path: Path) -> tuple[list[ox.Triple], dict[str, ExperimentResult]]:
    """The stored results of the module's experiments that `results` does not re-run (as
    triples, and rebuilt for the plot), so that benchmarking one experiment keeps the others.
    Stored experiments the module no longer has are dropped."""
    if not ttl_path.exists():
        return [], {}
    rerun = {r.experiment.key for r in results}
    others = [e for e in module.EXPERIMENTS if e.key not in rerun]
    if not others:
        return [], {}
    in_file_order = list(ox.parse(path=str(ttl_path), format=ox.RdfFormat.TURTLE))  # so the file's diff stays small
    store = ox.Store()
    store.extend(in_file_order)
    name = module.__name__.rsplit(".", 1)[-1]
    triples, kept = [], {}
    for experiment in others:
        base = f"{KDR}{name}--{experiment.key}"
        mine = [q.triple for q in in_file_order if isinstance(q.subject, ox.NamedNode)
                and (q.subject.value == base or q.subject.value.startswith(base + "--"))]
        if mine:
            triples += mine
            kept[experiment.key] = stored_result(store, name, experiment)
    return triples, kept


PER_SEED_QUERY = f"""PREFIX kdo: <{KDO}> PREFIX mls: <http://www.w3.org/ns/mls#>
SELECT ?arm ?seed ?value WHERE {{ ?r kdo:hasArm ?a . ?a kdo:armKey ?arm ; kdo:evaluation ?m .
  ?m kdo:seed ?seed ; mls:hasValue ?value }} ORDER BY ?arm ?seed"""


def _score_only(score: float) -> Evaluation:
    return Evaluation(accuracy=score, per_class_accuracy=[], teacher_agreement=None, ece=None, n_params=0,
                      latency_us=None)


def stored_result(store: ox.Store, module_name: str, experiment: Experiment) -> ExperimentResult:
    """A stored result rebuilt from its per-seed scores, enough to plot it: the arms' scores,
    the teacher's, and the paired test recomputed with `stats.paired_test` (so the figures are
    the stored ones). No timings, ECE or provenance."""
    iri = ox.NamedNode(f"{KDR}{module_name}--{experiment.key}")
    teacher = next(store.quads_for_pattern(iri, ox.NamedNode(KDO + "teacherAccuracy"), None), None)
    if teacher is None:
        raise ValueError(f"no stored result for {module_name} / {experiment.key}")
    scores: dict[str, dict[int, float]] = {}
    for row in store.query(PER_SEED_QUERY.replace("?r kdo:hasArm", f"<{iri.value}> kdo:hasArm")):
        scores.setdefault(row["arm"].value, {})[int(row["seed"].value)] = float(row["value"].value)
    seeds = sorted(next(iter(scores.values())))
    arms = [ArmResult(a.key, a.label, [_score_only(scores[a.key][s]) for s in seeds], 0.0)
            for a in experiment.arms if a.key in scores]
    by_key = {a.key: a for a in arms}
    claim = experiment.claim
    test = stats.paired_test(by_key[claim.treatment].accuracies, by_key[claim.reference].accuracies,
                             sesoi=experiment.sesoi)
    return ExperimentResult(experiment, seeds, _score_only(float(teacher.object.value)), arms, test, 0.0, 0.0)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ---------------------------------------------------------------- the family of claims
FAMILY_QUERY = f"""
PREFIX kdo: <{KDO}>
SELECT ?r ?technique ?key ?mean ?low ?high ?p ?peq ?sesoi ?n WHERE {{
  ?r a kdo:BenchmarkResult ; kdo:technique ?technique ; kdo:experimentKey ?key ; kdo:meanDifference ?mean ;
     kdo:ciLow ?low ; kdo:ciHigh ?high ; kdo:pValue ?p ; kdo:nSeeds ?n .
  OPTIONAL {{ ?r kdo:equivalencePValue ?peq }} OPTIONAL {{ ?r kdo:sesoi ?sesoi }}
}} ORDER BY ?r"""


def read_claims(directory: Path) -> list[dict]:
    """Every result in the directory's module files (not the family file), as plain values."""
    return _claims([p for p in sorted(directory.glob("*.ttl")) if p.name != FAMILY_FILE])


def _claims(paths: list[Path]) -> list[dict]:
    store = ox.Store()
    for path in paths:
        store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    rows = []
    for solution in store.query(FAMILY_QUERY):
        value = lambda name: None if solution[name] is None else solution[name].value  # noqa: E731
        rows.append({"iri": solution["r"].value, "technique": value("technique"), "key": value("key"),
                     "mean": float(value("mean")), "low": float(value("low")), "high": float(value("high")),
                     "p": float(value("p")), "n": int(value("n")),
                     "peq": None if value("peq") is None else float(value("peq")),
                     "sesoi": None if value("sesoi") is None else float(value("sesoi"))})
    return rows


def adjust_family(claims: list[dict], family_size: int) -> list[dict]:
    """Holm over the family, for both tests. Claims planned but without a result (not run yet,
    or run by an older method without an equivalence test) count as p = 1: they cannot be
    rejected, and the family size is never understated."""
    m = max(family_size, len(claims))
    padding = [1.0] * (m - len(claims))
    adjusted = stats.holm([c["p"] for c in claims] + padding)
    adjusted_eq = stats.holm([1.0 if c["peq"] is None else c["peq"] for c in claims] + padding)
    out = []
    for c, p, peq in zip(claims, adjusted, adjusted_eq):
        method_complete = c["peq"] is not None
        out.append({**c, "p_adjusted": p, "peq_adjusted": peq if method_complete else None,
                    "verdict": stats.verdict(c["mean"], p, peq if method_complete else 1.0)})
    return out


def update_family(directory: Path | None = None, *, family_size: int) -> list[Path]:
    """Rewrite family.ttl (adjusted p-values, verdicts) and forest.png from the module files."""
    directory = results_dir(directory)
    claims = adjust_family(read_claims(directory), family_size)
    t = _Triples()
    kdo = KDO
    for c in claims:
        t.add(c["iri"], RDF_TYPE, kdo + "BenchmarkResult")
        t.add(c["iri"], kdo + "adjustedPValue", _lit(c["p_adjusted"]))
        if c["peq_adjusted"] is not None:
            t.add(c["iri"], kdo + "adjustedEquivalencePValue", _lit(c["peq_adjusted"]))
        t.add(c["iri"], kdo + "verdict", _lit(c["verdict"]))
        t.add(c["iri"], kdo + "familySize", _lit(max(family_size, len(claims))))
        t.add(c["iri"], kdo + "multiplicityCorrection", _lit("Holm"))
    header = (b"# The family of all claims: Holm-adjusted p-values and verdicts (reference_impl/harness/stats.py).\n"
              b"# Generated by `kd bench` from the other files here: do not edit by hand.\n")
    path = directory / FAMILY_FILE
    _write_atomically(path, header + ox.serialize(t.items, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES))
    forest = directory / FOREST_PLOT
    plot_forest(claims, forest)
    return [path, forest]


VERDICT_COLOURS = {"held": "#2e7d32", "contradicted": "#c62828", "no practical effect": "#1565c0",
                   "inconclusive": "#757575"}


def plot_forest(claims: list[dict], path: Path, title: str = "Every claim: difference and 95% interval") -> None:
    """One row per claim: the difference with its interval, the ±SESOI band, coloured by verdict."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(claims, key=lambda c: (c["technique"], c["key"]))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4))
    for y, c in enumerate(rows):
        sesoi = (c["sesoi"] or 0.01) * 100
        ax.add_patch(plt.Rectangle((-sesoi, y - 0.4), 2 * sesoi, 0.8, color="#e3ecf5", zorder=0))
        colour = VERDICT_COLOURS[c["verdict"]]
        ax.plot([c["low"] * 100, c["high"] * 100], [y, y], color=colour, linewidth=2)
        ax.plot(c["mean"] * 100, y, "o", color=colour, markersize=5)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{c['technique'].rsplit('#', 1)[-1].rsplit('/', 1)[-1]}: {c['key']}"
                                      for c in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("claimed arm − reference arm (accuracy points); band: ±SESOI")
    handles = [plt.Line2D([], [], color=c, marker="o", label=v) for v, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stored_result_text(module: ModuleType, experiment: Experiment, directory: Path | None = None) -> str:
    """The stored multi-seed result of this experiment, for printing beside a teaching run."""
    directory = results_dir(directory)
    spec = getattr(module, "__spec__", None)  # under `python -m`, __name__ is "__main__"
    name = (spec.name if spec is not None else module.__name__).rsplit(".", 1)[-1]
    ttl = directory / f"{name}.ttl"
    if not ttl.exists():
        return f"stored benchmark: none yet in {directory} (run `kd bench {name}`)"
    claims = {c["key"]: c for c in _claims([ttl])}
    c = claims.get(experiment.key)
    if c is None:
        return f"stored benchmark: {ttl} has no result for {experiment.key} (run `kd bench {name}`)"
    family = _family_values(directory / FAMILY_FILE, c["iri"])
    verdict = family.get("verdict", "not adjusted yet")
    adjusted = family.get("adjustedPValue")
    page = ROOT / "build-site" / "html" / "concepts" / module.CONCEPT / "index.html"
    return "\n".join([
        f"stored benchmark ({c['n']} seeds, {ttl}):",
        f"  {experiment.claim.treatment} - {experiment.claim.reference}: {c['mean'] * 100:+.2f} points, "
        f"95% CI {c['low'] * 100:+.2f} to {c['high'] * 100:+.2f}, p = {c['p']:.3g}"
        + (f" (Holm-adjusted {float(adjusted):.3g})" if adjusted else "") + f" -> {verdict}",
        f"  plot: {directory / (name + '.png')}",
        f"  page: {page if page.exists() else 'concepts/' + module.CONCEPT + '/ on the site (kd site build)'}",
    ])


def _family_values(path: Path, iri: str) -> dict[str, str]:
    if not path.exists():
        return {}
    store = ox.Store()
    store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    return {q.predicate.value.rsplit("#", 1)[-1]: q.object.value
            for q in store.quads_for_pattern(ox.NamedNode(iri), None, None)}


def _stored_arm_seconds(module: ModuleType, directory: Path | None = None) -> dict[str, float]:
    """Per experiment key: seconds of training per seed, summed over arms, from the stored result."""
    path = results_dir(directory) / f"{module.__name__.rsplit('.', 1)[-1]}.ttl"
    if not path.exists():
        return {}
    store = ox.Store()
    store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    query = f"""PREFIX kdo: <{KDO}>
        SELECT ?key (SUM(?s / ?n) AS ?seconds) WHERE {{
          ?r kdo:experimentKey ?key ; kdo:nSeeds ?n ; kdo:hasArm ?a . ?a kdo:trainSeconds ?s }} GROUP BY ?key"""
    return {row["key"].value: float(row["seconds"].value) for row in store.query(query)}


TEACHING_TIMES = "teaching_times.json"  # written by scripts/time_budgets.py --write


def measured_teaching_seconds(directory: Path | None = None) -> dict[str, dict]:
    """`kd run <name> [--experiment key]` wall times measured by scripts/time_budgets.py --write:
    {"<name>/<experiment>": {"seconds", "epochs", "cpu", "date"}}; empty when never measured."""
    import json
    path = results_dir(directory) / TEACHING_TIMES
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def expected_teaching_seconds(module: ModuleType, experiment: Experiment,
                              directory: Path | None = None) -> tuple[float, str] | None:
    """What a one-seed teaching run of the experiment costs, and how that is known: measured by
    scripts/time_budgets.py (whole command, this project's teachers cached), else estimated from
    the stored benchmark's training seconds per seed scaled from its budget to the teaching
    run's (an upper bound: the benchmark's arms stop early less often than they run to the end)."""
    name = module.__name__.rsplit(".", 1)[-1]
    measured = measured_teaching_seconds(directory).get(f"{name}/{experiment.key}")
    if measured:
        return float(measured["seconds"]), "measured"
    per_seed = _stored_arm_seconds(module, directory).get(experiment.key)
    if per_seed is None:
        return None
    budget = min(experiment.teaching_epochs, experiment.student_config.epochs)
    return per_seed * budget / experiment.student_config.epochs, "estimated"
