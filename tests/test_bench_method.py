"""The benchmark method end to end, on tiny budgets: planning, per-seed data, RDF, the family,
the teaching run's output. The statistics themselves are pinned in test_stats.py."""

from __future__ import annotations

import inspect
import math
import sys
from dataclasses import replace
from pathlib import Path

import pyoxigraph as ox
import pytest
import torch

from kb.namespaces import KDO, KDR
from reference_impl import registry
from reference_impl.harness import (Context, ModelSpec, Split, TrainConfig, bench, build_model, predict_logits,
                                    stats)
from reference_impl.harness.bench import (BASELINE, Arm, Claim, Experiment, benchmark, plan_seeds, run_cli,
                                          run_experiment, student_split)
from reference_impl.harness.data import load_split
from reference_impl.harness.results import (FAMILY_FILE, adjust_family, read_claims, stored_result_text,
                                            update_family, write_results)
from reference_impl.techniques import born_again, reverse_distillation, soft_targets

FAST = TrainConfig(epochs=1)


def tiny(experiment: Experiment) -> Experiment:
    return replace(experiment, student_config=replace(experiment.student_config, epochs=1))


def first_run(experiment: Experiment) -> Experiment:
    """The experiment as a first run (not a re-run), with the default cap."""
    return replace(experiment, first_seed=0, rerun_reason="", prior_sd=None, prior_seeds=0, max_seeds=8)


def test_experiments_declare_a_sesoi_and_a_budget_before_they_run():
    base = soft_targets.EXPERIMENTS[0]
    assert base.sesoi == 0.01 and base.max_seeds >= 5
    with pytest.raises(ValueError, match="needs a reason"):
        replace(base, sesoi=0.02)
    assert replace(base, sesoi=0.02, sesoi_reason="a 10-class task with a 2-point test noise floor").sesoi == 0.02
    with pytest.raises(ValueError, match="sesoi must be"):
        replace(base, sesoi=0.0)
    with pytest.raises(ValueError, match="max_seeds must be at least 3"):
        replace(base, max_seeds=2)
    with pytest.raises(ValueError, match="treatment arm 'nope'"):
        replace(base, claim=replace(base.claim, treatment="nope"))


def test_the_labelled_subset_is_drawn_per_seed_and_the_test_split_is_shared():
    three = soft_targets.EXPERIMENTS[1]
    full = load_split(three.dataset)
    a, b = student_split(full, three, 0), student_split(full, three, 1)
    assert len(a.y_train) == len(b.y_train) and not torch.equal(a.x_train, b.x_train)
    assert torch.equal(student_split(full, three, 0).x_train, a.x_train)  # the same seed, the same subset
    assert student_split(full, soft_targets.EXPERIMENTS[0], 5) is full


def test_one_seed_gives_no_verdict_and_cannot_be_written(tmp_path):
    result = run_experiment(tiny(soft_targets.EXPERIMENTS[0]), seeds=(0,), log=lambda line: None)
    assert result.test is None and result.unadjusted_verdict is None
    with pytest.raises(ValueError, match="at least 3 seeds"):
        write_results(soft_targets, [result], tmp_path)
    assert "no verdict from fewer than 3 seeds" in bench.summary(result)


def test_cli_refuses_fewer_than_three_seeds_and_quick_run_options_with_bench(capsys):
    for argv in (["--bench", "--seeds", "1"], ["--bench", "--seeds", "2"], ["--seeds", "5"],
                 ["--bench", "--seed", "3"], ["--bench", "--epochs", "3"], ["--epochs", "0"]):
        with pytest.raises(SystemExit) as stop:
            run_cli(soft_targets, argv)
        assert stop.value.code == 2, argv
    err = capsys.readouterr().err
    assert "--seeds must be at least 3" in err and "apply to a quick run" in err


def test_seed_plan_follows_the_pilot_spread_and_the_cap(monkeypatch):
    # a first run (not a re-run) with the default cap
    experiment = first_run(soft_targets.EXPERIMENTS[0])
    calls = []

    class Pilot:
        def __init__(self, sd):
            self.test = stats.PairedTest((0.0,) * 3, 0.0, sd, 0.0, 0.0, 1.0, 1.0, 0.01)

    def fake_run(exp, seeds, arms=None, log=None, config=None):
        calls.append((seeds, arms))
        return Pilot(fake_run.sd)

    monkeypatch.setattr(bench, "run_experiment", fake_run)
    fake_run.sd = 0.0005  # a quiet difference: the floor of 5 seeds
    plan = plan_seeds(experiment, family=20)
    assert calls[-1] == (bench.PILOT_SEEDS, ("distilled", "baseline"))  # pilot seeds, the claim's two arms only
    assert not set(bench.PILOT_SEEDS) & set(range(plan.seeds))  # never among the reported seeds
    # the plan assumes the pilot sd's 80% upper confidence limit: 2.1169 × s for a 3-seed pilot
    assert plan.planning_sd == pytest.approx(0.0005 * math.sqrt(2 / (-2 * math.log(0.8))), rel=1e-9)
    assert plan.needed == stats.seeds_needed(plan.planning_sd, 0.01, family_size=20) < 5 and plan.seeds == 5
    assert "80% upper confidence limit 0.11" in plan.text
    fake_run.sd = 0.004  # enough seeds at the pilot's own sd, too few at its upper limit
    plan = plan_seeds(experiment, family=20)
    assert stats.seeds_needed(0.004, 0.01, family_size=20) < plan.needed
    assert plan.seeds == min(plan.needed, experiment.max_seeds) and 5 < plan.needed
    # a re-run plans from the larger of the pilot's and the superseded run's upper limits
    rerun = replace(experiment, first_seed=100, rerun_reason="superseded", prior_sd=0.008, prior_seeds=5)
    plan = plan_seeds(rerun, family=20)
    assert plan.planning_sd == pytest.approx(stats.planning_sd(0.008, 5), rel=1e-12)
    assert plan.planning_sd > stats.planning_sd(0.004, 3)
    assert plan.needed == stats.seeds_needed(stats.planning_sd(0.008, 5), 0.01, family_size=20)
    assert "superseded run's sd over 5 seeds was 0.80" in plan.text
    with pytest.raises(ValueError, match="prior_sd"):
        replace(experiment, prior_sd=0.008, prior_seeds=5)  # only for a re-run
    with pytest.raises(ValueError, match="prior_sd"):
        replace(rerun, prior_seeds=2)
    fake_run.sd = 0.05  # far too noisy: capped by the budget, and said so
    plan = plan_seeds(experiment, family=20)
    assert plan.needed > experiment.max_seeds and plan.seeds == experiment.max_seeds
    assert f"capped at {experiment.max_seeds}" in plan.text and "not reported" in plan.text


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A three-seed, one-epoch benchmark of soft_targets written to a private results directory."""
    directory = tmp_path_factory.mktemp("results")
    experiments = [tiny(e) for e in soft_targets.EXPERIMENTS]
    module = type(soft_targets)("reference_impl.techniques.soft_targets")
    module.__dict__.update({k: v for k, v in vars(soft_targets).items() if k != "EXPERIMENTS"})
    module.EXPERIMENTS = experiments
    results = benchmark(module, seeds=(0, 1, 2), directory=directory)
    return directory, module, results


def test_results_carry_the_method_and_the_family_adjusts_them(written):
    directory, module, results = written
    assert {p.name for p in directory.iterdir()} == {"soft_targets.ttl", "soft_targets.png", FAMILY_FILE, "forest.png"}
    claims = read_claims(directory)
    assert [c["key"] for c in claims] == [e.key for e in module.EXPERIMENTS]
    for claim, result in zip(claims, results):
        assert claim["p"] == pytest.approx(result.test.p_value, abs=1e-6)
        assert claim["peq"] == pytest.approx(result.test.equivalence_p_value, abs=1e-6)
        assert claim["sesoi"] == 0.01
    m = bench.family_size()
    assert m >= 20  # every experiment of every module, not just the two written here
    store = ox.Store()
    store.load(path=str(directory / FAMILY_FILE), format=ox.RdfFormat.TURTLE)
    expected = stats.holm([c["p"] for c in claims] + [1.0] * (m - len(claims)))  # absent claims count as p = 1
    for claim, p_adjusted in zip(claims, expected):
        values = {q.predicate.value: q.object.value
                  for q in store.quads_for_pattern(ox.NamedNode(claim["iri"]), None, None)}
        assert float(values[KDO + "adjustedPValue"]) == pytest.approx(p_adjusted, abs=1e-6)
        assert int(values[KDO + "familySize"]) == m
        assert values[KDO + "verdict"] == stats.verdict(claim["mean"], p_adjusted,
                                                        float(values[KDO + "adjustedEquivalencePValue"]))


def test_seeds_set_on_the_command_line_are_said_to_be_unplanned(written):
    directory, module, results = written
    store = ox.Store()
    store.load(path=str(directory / "soft_targets.ttl"), format=ox.RdfFormat.TURTLE)
    rows = list(store.query(f"SELECT ?plan ?mde WHERE {{ ?r <{KDO}seedPlan> ?plan ; <{KDO}minimalDetectableEffect> ?mde }}"))
    assert len(rows) == len(results)
    assert rows[0]["plan"].value.startswith("3 seeds (0-2) set on the command line (kd bench --seeds 3), not planned")
    t = results[0].test
    expected = stats.minimal_detectable_effect(3, t.sd, family_size=bench.family_size())
    assert any(float(r["mde"].value) == pytest.approx(expected, abs=1e-6) for r in rows)  # stored to 6 decimals


def test_provenance_records_epochs_chosen_on_validation_and_the_machine(written):
    directory, _, results = written
    store = ox.Store()
    store.load(path=str(directory / "soft_targets.ttl"), format=ox.RdfFormat.TURTLE)
    rows = list(store.query(f"""PREFIX kdo: <{KDO}> PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?epochs ?selection ?flags ?threads WHERE {{ ?r kdo:hasArm ?a ; kdo:epochSelection ?selection ;
        prov:wasGeneratedBy ?run . ?a kdo:chosenEpochs ?epochs . ?run kdo:cpuFlags ?flags ; kdo:threads ?threads }}"""))
    assert len(rows) == 4  # two experiments × two arms
    for row in rows:
        assert row["epochs"].value == "1 1 1"  # one epoch allowed, on every seed
        assert "validation split" in row["selection"].value
        assert int(row["threads"].value) == torch.get_num_threads()


def test_family_counts_missing_equivalence_tests_as_not_rejected():
    claims = [{"iri": "a", "mean": 0.001, "p": 0.9, "peq": None}, {"iri": "b", "mean": 0.001, "p": 0.9, "peq": 1e-6}]
    adjusted = adjust_family(claims, family_size=2)
    assert adjusted[0]["verdict"] == "inconclusive" and adjusted[0]["peq_adjusted"] is None
    assert adjusted[1]["verdict"] == "no practical effect"
    assert adjusted[1]["peq_adjusted"] == pytest.approx(2e-6)


def test_teaching_run_prints_the_stored_result_and_progress(written, capsys, monkeypatch):
    directory, module, _ = written
    monkeypatch.setenv("KD_RESULTS_DIR", str(directory))
    bench.quick_run(module, "soft-vs-hard", seed=4, epochs=1)
    out, err = capsys.readouterr()
    assert "seeds [4]" in out and "one seed is a demonstration, not evidence" in out
    assert "columns:" in out and "ECE is the expected calibration error" in out
    assert f"stored benchmark (3 seeds, {directory / 'soft_targets.ttl'})" in out
    assert "Holm-adjusted" in out and str(directory / "soft_targets.png") in out
    lines = [line for line in err.splitlines() if "arm " in line]
    assert len(lines) == 2 and "arm 1/2 baseline" in lines[0] and "arm 2/2 distilled" in lines[1]
    assert "s left]" in lines[0]


def test_stored_result_text_without_results(tmp_path):
    assert "none yet" in stored_result_text(soft_targets, soft_targets.EXPERIMENTS[0], tmp_path)


def test_a_custom_arm_sees_its_own_seed_subset(monkeypatch):
    seen = []
    three = tiny(soft_targets.EXPERIMENTS[1])

    def record(ctx):
        seen.append((ctx.seed, ctx.split.x_train[:1].clone(), ctx.teacher_train_logits.shape[0]))
        return bench.scratch_student(ctx)

    experiment = replace(three, arms=(three.arms[0], Arm("distilled", "records", record)))
    run_experiment(experiment, seeds=(0, 1), log=lambda line: None)
    assert [s for s, _, _ in seen] == [0, 1] and not torch.equal(seen[0][1], seen[1][1])
    assert all(n == len(student_split(load_split("mnist1d"), three, 0).y_train) for _, _, n in seen)


def test_claim_dataclass_still_names_its_arms():
    assert Claim("x", "y", "a", "b").reference == "b" and isinstance(Path("."), Path)


def test_verify_reruns_the_stored_seeds_and_catches_a_changed_result(written, tmp_path):
    from reference_impl.harness.verify import verify
    directory, module, _ = written
    lines: list[str] = []
    assert verify(module, directory, log=lines.append)  # deterministic on one machine: reproduces
    text = "\n".join(lines)
    assert "re-running seeds (0, 1, 2)" in text and "inside the interval" in text and "same" in text
    assert "stored on:" in text and "this one:" in text
    # a stored result whose interval excludes what the code produces now is not reproduced
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for path in directory.iterdir():
        (tampered / path.name).write_bytes(path.read_bytes())
    ttl = tampered / "soft_targets.ttl"
    store = ox.Store()
    store.load(path=str(ttl), format=ox.RdfFormat.TURTLE)
    for quad in list(store.quads_for_pattern(None, ox.NamedNode(KDO + "ciLow"), None)):
        store.remove(quad)
        store.add(ox.Quad(quad.subject, quad.predicate, ox.Literal("0.5", datatype=quad.object.datatype)))
    ttl.write_bytes(store.dump(format=ox.RdfFormat.TURTLE, from_graph=ox.DefaultGraph()))
    lines.clear()
    assert not verify(module, tampered, log=lines.append)
    assert "OUTSIDE the interval" in "\n".join(lines)
    assert not verify(module, tmp_path / "nothing", log=lines.append)


# ---------------------------------------------------------------- the teaching run's --temperature
def toy_context(temperature: float | None = None) -> Context:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    split = Split("toy", x, y, x, y, 3, (8,))
    torch.manual_seed(1)
    teacher = build_model(ModelSpec("mlp", hidden=(6,)), split).eval()
    return Context(split, teacher, predict_logits(teacher, x), ModelSpec("mlp", hidden=(4,)), FAST, seed=0,
                   temperature=temperature)


def test_softening_returns_the_arms_own_temperature_unless_overridden():
    assert toy_context().softening(4.0) == 4.0 and toy_context().softening(20.0) == 20.0
    assert toy_context(2.0).softening(4.0) == 2.0 and toy_context(2.0).softening(20.0) == 2.0


def test_experiments_declare_a_positive_temperature_or_none():
    base = soft_targets.EXPERIMENTS[0]
    assert base.temperature == 4.0 and born_again.EXPERIMENTS[0].temperature is None
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be None or a number > 0"):
            replace(base, temperature=bad)


@pytest.fixture
def recorded_temperatures(monkeypatch):
    """The temperature every soft-target loss is built with (soft_targets.distilled_student's)."""
    seen: list[float] = []

    class Recording(soft_targets.CachedSoftTargets):
        def __init__(self, *args, temperature, **kwargs):
            seen.append(temperature)
            super().__init__(*args, temperature=temperature, **kwargs)

    monkeypatch.setattr(soft_targets, "CachedSoftTargets", Recording)
    return seen


def test_the_override_reaches_the_loss(recorded_temperatures):
    arm = soft_targets.EXPERIMENTS[0].arm("distilled")  # distilled_student(ctx, temperature=4.0, ...)
    arm.train(toy_context())
    arm.train(toy_context(2.0))
    assert recorded_temperatures == [4.0, 2.0]


def test_run_experiment_puts_the_override_into_every_context():
    seen = []

    def record(ctx):
        seen.append((ctx.seed, ctx.temperature, ctx.softening(4.0)))
        return ctx.new_student()  # untrained: only the context matters here

    experiment = replace(tiny(soft_targets.EXPERIMENTS[0]), arms=(BASELINE, Arm("distilled", "records", record)))
    run_experiment(experiment, seeds=(0, 1), arms=("distilled",), log=lambda line: None, temperature=2.5)
    run_experiment(experiment, seeds=(0,), arms=("distilled",), log=lambda line: None)
    assert seen == [(0, 2.5, 2.5), (1, 2.5, 2.5), (0, None, 4.0)]


def test_label_smoothing_keeps_its_temperature_of_one_under_the_override(monkeypatch):
    seen = []
    real = reverse_distillation.tfkd_reg_loss

    def recording(*args, temperature, **kwargs):
        seen.append(temperature)
        return real(*args, temperature=temperature, **kwargs)

    monkeypatch.setattr(reverse_distillation, "tfkd_reg_loss", recording)
    free = next(e for e in reverse_distillation.EXPERIMENTS if e.key == "teacher-free")
    for key in ("tfkd_reg", "label_smoothing"):
        seen.clear()
        free.arm(key).train(toy_context(2.0))
        assert set(seen) == {2.0 if key == "tfkd_reg" else 1.0}, key


def test_quick_run_says_the_temperature_differs_from_the_stored_result(monkeypatch, capsys):
    class Stop(Exception):
        pass

    passed = []

    def fake_run(experiment, seeds, log, config, temperature):
        passed.append((seeds, temperature))
        raise Stop

    monkeypatch.setattr(bench, "run_experiment", fake_run)
    with pytest.raises(Stop):
        bench.quick_run(soft_targets, "soft-vs-hard", seed=3, temperature=2.0)
    assert passed == [((3,), 2.0)]
    out = capsys.readouterr().out
    assert "temperature T = 2 (the experiment's: 4); the stored result below used 4" in out


def test_quick_run_refuses_a_temperature_where_no_arm_softens_with_one():
    with pytest.raises(ValueError, match="does not apply to born_again / ban-vs-teacher: no arm"):
        bench.quick_run(born_again, temperature=2.0)
    with pytest.raises(ValueError, match="must be a number > 0, got 0"):
        bench.quick_run(soft_targets, temperature=0.0)


@pytest.mark.parametrize("module, argv, message", [
    (born_again, ["--temperature", "2"], "--temperature does not apply to born_again / ban-vs-teacher"),
    (soft_targets, ["--bench", "--temperature", "2"], "--temperature applies to a quick run"),
    (soft_targets, ["--temperature", "0"], "--temperature must be a number > 0, got 0"),
    (soft_targets, ["--temperature", "-1"], "--temperature must be a number > 0, got -1"),
    (soft_targets, ["--temperature", "nan"], "--temperature must be a number > 0, got nan"),
])
def test_module_command_line_refuses_a_temperature_that_does_not_apply(module, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(module, argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def _sources_calling_softening(module) -> bool:
    """Whether the module, or a technique module it takes a function or an arm from, calls ctx.softening."""
    functions = [obj for obj in vars(module).values() if callable(obj)]
    functions += [arm.train for experiment in module.EXPERIMENTS for arm in experiment.arms]
    modules = {module} | {sys.modules[f.__module__] for f in functions
                          if getattr(f, "__module__", "").startswith("reference_impl.techniques.")}
    return any("ctx.softening(" in inspect.getsource(m) for m in modules)


def test_every_experiment_with_a_temperature_lets_the_override_reach_its_arms():
    declared = {}
    for name in registry.technique_names():
        module = registry.load(name)
        for experiment in module.EXPERIMENTS:
            if experiment.temperature is not None:
                declared[f"{name}/{experiment.key}"] = experiment.temperature
                assert _sources_calling_softening(module), f"{name}/{experiment.key}"
    # the techniques defined with temperature 1 (or none) declare none: --temperature is refused there
    for name in ("born_again", "deep_mutual_learning", "munge"):
        assert all(e.temperature is None for e in registry.load(name).EXPERIMENTS), name
    assert declared["soft_targets/soft-vs-hard"] == 4.0 and declared["reverse_distillation/teacher-free"] == 20.0


def test_a_rerun_reports_fresh_seeds_and_says_why(monkeypatch, tmp_path):
    base = tiny(first_run(soft_targets.EXPERIMENTS[0]))
    with pytest.raises(ValueError, match="rerun_reason"):
        replace(base, first_seed=100)  # fresh seeds need a stated reason
    with pytest.raises(ValueError, match="rerun_reason"):
        replace(base, rerun_reason="why")  # and a reason needs fresh seeds
    with pytest.raises(ValueError, match="pilot seeds"):
        replace(base, first_seed=998, rerun_reason="overlaps the pilot", max_seeds=5)
    rerun = replace(base, first_seed=100, rerun_reason="supersedes the 5-seed run of seeds 0-4", max_seeds=6)
    assert rerun.reported_seeds(3) == (100, 101, 102) and base.reported_seeds(3) == (0, 1, 2)
    seen = []
    real_run = bench.run_experiment

    def fake_plan(experiment, *, family, log=print):
        return bench.SeedPlan(bench.PILOT_SEEDS, 0.01, 4, experiment.max_seeds, 3, family, 0.02)

    def spy_run(experiment, seeds=None, *args, **kwargs):
        seen.append(tuple(seeds))
        return real_run(experiment, seeds, *args, **kwargs)

    monkeypatch.setattr(bench, "plan_seeds", fake_plan)
    monkeypatch.setattr(bench, "run_experiment", spy_run)
    module = type(soft_targets)("reference_impl.techniques.soft_targets")
    module.__dict__.update({k: v for k, v in vars(soft_targets).items() if k != "EXPERIMENTS"})
    module.EXPERIMENTS = [rerun]
    benchmark(module, directory=tmp_path)
    assert seen == [(100, 101, 102)]
    store = ox.Store()
    store.load(path=str(tmp_path / "soft_targets.ttl"), format=ox.RdfFormat.TURTLE)
    rows = list(store.query(f"SELECT ?seeds ?why WHERE {{ ?r <{KDO}seeds> ?seeds ; <{KDO}rerunReason> ?why }}"))
    assert [(r["seeds"].value, r["why"].value) for r in rows] == [("100 101 102", "supersedes the 5-seed run of seeds 0-4")]


def test_the_stored_result_is_found_under_python_dash_m():
    # `python -m reference_impl.techniques.born_again` runs the module as __main__; its spec keeps the name
    main = type(born_again)("__main__")
    main.__dict__.update({k: v for k, v in vars(born_again).items() if k != "__name__"})
    assert main.__name__ == "__main__" and main.__spec__.name.endswith("born_again")
    text = stored_result_text(main, born_again.EXPERIMENTS[0])
    assert "born_again.ttl" in text and "__main__" not in text


def test_benchmarking_one_experiment_keeps_the_modules_other_stored_results(written, tmp_path):
    import shutil
    directory, module, results = written
    copy = tmp_path / "results"
    shutil.copytree(directory, copy)
    first, second = module.EXPERIMENTS

    def triples_of(path: Path, key: str) -> set:
        store = ox.Store()
        store.load(path=str(path), format=ox.RdfFormat.TURTLE)
        base = f"{KDR}soft_targets--{key}"
        return {q.triple for q in store if q.subject.value == base or q.subject.value.startswith(base + "--")}

    before = triples_of(copy / "soft_targets.ttl", first.key)
    old_second = triples_of(copy / "soft_targets.ttl", second.key)
    assert before and old_second
    again = benchmark(module, seeds=(3, 4, 5), directory=copy, experiment=second.key)
    assert [r.experiment.key for r in again] == [second.key]
    assert triples_of(copy / "soft_targets.ttl", first.key) == before  # kept as it was, triple for triple
    claims = {c["key"]: c for c in read_claims(copy)}
    assert set(claims) == {first.key, second.key}
    assert claims[first.key]["p"] == pytest.approx(results[0].test.p_value, abs=1e-6)
    assert claims[second.key]["p"] == pytest.approx(again[0].test.p_value, abs=1e-6)
    seeds = {t.object.value for t in triples_of(copy / "soft_targets.ttl", second.key)
             if t.predicate.value == KDO + "seeds"}
    assert seeds == {"3 4 5"}  # the re-run replaced the old seeds 0-2, not added to them
    with pytest.raises(ValueError, match="no experiment 'nope'"):
        benchmark(module, seeds=(0, 1, 2), directory=copy, experiment="nope")


def test_refreshing_citations_rewrites_only_the_cited_source(written, tmp_path, monkeypatch):
    import importlib.util
    import shutil
    directory, module, results = written
    copy = tmp_path / "results"
    shutil.copytree(directory, copy)
    spec = importlib.util.spec_from_file_location("refresh", Path(__file__).resolve().parents[1] / "scripts" /
                                                  "refresh_citations.py")
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    corrected = type(module)(module.__name__)
    corrected.__dict__.update(vars(module))
    first = module.EXPERIMENTS[0]
    corrected.EXPERIMENTS = [replace(first, claim=replace(first.claim, source="arXiv:1503.02531, section 3, Table 1")),
                             *module.EXPERIMENTS[1:]]
    monkeypatch.setattr(refresh.registry, "load", lambda name: corrected)
    path = copy / "soft_targets.ttl"
    original = path.read_text()
    assert refresh.refresh("soft_targets", copy, dry_run=True) and path.read_text() == original
    changes = refresh.refresh("soft_targets", copy)
    assert len(changes) == 1 and "+ arXiv:1503.02531, section 3, Table 1" in changes[0]
    new_lines, old_lines = path.read_text().splitlines(), original.splitlines()
    differing = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert len(new_lines) == len(old_lines) and len(differing) == 1
    assert "kdo:claimSource" in differing[0][1] and "section 3, Table 1" in differing[0][1]
    assert refresh.refresh("soft_targets", copy) == []  # current now: nothing to do
    # the notes (the setting in words) are descriptive too
    assert first.notes
    corrected.EXPERIMENTS[0] = replace(corrected.EXPERIMENTS[0], notes="The setting, described correctly.")
    before = path.read_text().splitlines()
    changes = refresh.refresh("soft_targets", copy)
    assert len(changes) == 1 and changes[0].startswith("soft_targets / " + first.key + " note:")
    differing = [(a, b) for a, b in zip(before, path.read_text().splitlines()) if a != b]
    assert len(differing) == 1 and "skos:note" in differing[0][1] and "described correctly" in differing[0][1]


def test_results_say_what_they_measure_and_replot_from_the_stored_scores(written, monkeypatch):
    directory, module, results = written
    store = ox.Store()
    store.load(path=str(directory / "soft_targets.ttl"), format=ox.RdfFormat.TURTLE)
    metrics = {r["m"].value for r in store.query(f"SELECT ?m WHERE {{ ?r <{KDO}metric> ?m }}")}
    assert metrics == {"accuracy"}
    assert not list(store.quads_for_pattern(None, ox.NamedNode(KDO + "teacherComparable"), None))
    import importlib.util
    spec = importlib.util.spec_from_file_location("replot", Path(__file__).resolve().parents[1] / "scripts" / "replot.py")
    replot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replot)
    for experiment, result in zip(module.EXPERIMENTS, results):
        again = replot.stored_result(store, "soft_targets", experiment)
        assert again.seeds == result.seeds and [a.key for a in again.arms] == [a.key for a in result.arms]
        assert again.test.mean == pytest.approx(result.test.mean, abs=1e-6)
        assert again.test.p_value == pytest.approx(result.test.p_value, rel=1e-4)
        assert again.teacher.accuracy == pytest.approx(result.teacher.accuracy, abs=1e-6)
    with pytest.raises(ValueError, match="no stored result for soft_targets / nope"):
        replot.stored_result(store, "soft_targets", replace(module.EXPERIMENTS[0], key="nope"))
