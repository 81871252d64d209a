"""The public API on models the zoo never builds: BatchNorm, dropout, 2-D convolutions, named layers.

Every technique runs through `reference_impl.distill` on user-defined networks; the teacher must
come out bit-identical (frozen: eval mode, running statistics untouched, no gradients) and the
student's own BatchNorm must have trained.
"""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reference_impl
from reference_impl import api, losses, registry
from reference_impl.harness.data import load_split

N_TRAIN, N_VAL = 192, 64


class ImageNet(nn.Module):
    """A user's CNN for 8x8 digits: conv-BN-ReLU sections, dropout, a named penultimate layer."""

    def __init__(self, width: int, n_classes: int = 10, p: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                                    nn.MaxPool2d(2))
        self.drop = nn.Dropout(p)
        self.penultimate = nn.Sequential(nn.Linear(2 * width, 16), nn.ReLU())
        self.classifier = nn.Linear(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 64) or (B, 1, 8, 8) -> (B, classes)
        h = self.stage2(self.stem(x.view(-1, 1, 8, 8)))
        return self.classifier(self.penultimate(self.drop(h.mean(dim=(2, 3)))))


class Tabular(nn.Module):
    """A user's MLP with BatchNorm1d and dropout."""

    def __init__(self, width: int, n_classes: int = 10):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(64, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.1))
        self.out = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x.flatten(1)))


@pytest.fixture(scope="module")
def digits():
    split = load_split("digits")
    return ((split.x_train[:N_TRAIN], split.y_train[:N_TRAIN]), (split.x_val[:N_VAL], split.y_val[:N_VAL]))


def fresh(cls, *args, seed=0):
    torch.manual_seed(seed)
    return cls(*args)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# technique -> (teacher factory, student factory, settings); every technique of the registry is here
CASES = {
    "soft_targets": ("cnn", "cnn", {"temperature": 3.0}),
    "decoupled_kd": ("cnn", "mlp", {"beta": 2.0, "warmup_epochs": 1}),
    "logit_matching": ("cnn", "mlp", {}),
    "multi_teacher": ("cnns", "mlp", {"weighted": True}),
    "munge": ("cnn", "mlp", {"multiplier": 1}),
    "born_again": (None, "cnn", {"generations": 1}),
    "deep_mutual_learning": (None, "mlp", {}),
    "teacher_assistant": ("cnn", "mlp", {"assistants": "assistant"}),
    "reverse_distillation": ("mlp", "cnn", {}),
    "fitnets": ("cnn", "cnn", {"hint_layer": "stage2", "guided_layer": "stem", "hint_epochs": 1}),
    "attention_transfer": ("cnn", "cnn", {"layers": ["stem"], "teacher_layers": ["stem"]}),
    "relational_kd": ("cnn", "mlp", {"teacher_feature_layer": "penultimate", "student_feature_layer": "hidden"}),
    "similarity_preserving": ("cnn", "mlp", {"teacher_feature_layer": "penultimate", "student_feature_layer": "hidden"}),
    "contrastive_rd": ("cnn", "mlp", {"teacher_feature_layer": "penultimate", "student_feature_layer": "hidden"}),
    "be_your_own_teacher": (None, "cnn", {"exit_layers": ["stem"], "student_feature_layer": "penultimate"}),
}
MODELS = {"cnn": lambda seed: fresh(ImageNet, 8, seed=seed), "mlp": lambda seed: fresh(Tabular, 32, seed=seed),
          "assistant": lambda seed: fresh(Tabular, 48, seed=seed),
          "cnns": lambda seed: [fresh(ImageNet, 8, seed=seed + k) for k in range(2)]}


def test_every_technique_of_the_registry_is_reachable_and_tested_here():
    assert set(CASES) == set(registry.technique_names(family="classification")) == set(api.techniques())


@pytest.mark.parametrize("technique", sorted(CASES))
def test_every_technique_trains_a_user_model_with_batchnorm_and_dropout(technique, digits):
    teacher_kind, student_kind, settings = CASES[technique]
    teacher = MODELS[teacher_kind](100) if teacher_kind else None
    if technique == "teacher_assistant":  # the chain needs a teacher larger than the assistant
        teacher = fresh(ImageNet, 16, seed=100)
    student = MODELS[student_kind](1)
    settings = {k: (MODELS[v](2) if k == "assistants" else v) for k, v in settings.items()}
    if technique == "teacher_assistant":
        settings["assistants"] = [settings["assistants"]]
    teachers = teacher if isinstance(teacher, list) else [teacher] if teacher is not None else []
    before = [snapshot(t) for t in teachers]
    student_before = snapshot(student)
    data, validation = digits
    result = reference_impl.distill(teacher, student, data, technique=technique, validation=validation, epochs=2,
                                    batch_size=64, **settings)
    for t, state in zip(teachers, before):  # frozen: weights AND BatchNorm running statistics unchanged
        assert all(torch.equal(state[k], v) for k, v in t.state_dict().items()), technique
        assert not t.training and not any(p.requires_grad for p in t.parameters())
    trained = result.student
    if technique not in ("born_again",):  # a later generation is a fresh copy, not the object passed
        assert trained is student
    assert not trained.training
    bn = next(m for m in trained.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    assert int(bn.num_batches_tracked) > 0  # the student's own BatchNorm trained normally
    changed = [k for k, v in trained.state_dict().items() if k in student_before and not torch.equal(v, student_before[k])]
    assert changed, technique
    metrics = result.metrics
    assert metrics["technique"] == technique and 0 <= metrics["validation_accuracy"] <= 1
    assert metrics["chosen_epochs"] and all(1 <= e <= 2 for e in metrics["chosen_epochs"])


def test_teacher_stays_in_eval_mode_while_the_student_trains(digits, monkeypatch):
    """The teacher's BatchNorm and dropout must not run in train mode at any point of distillation."""
    teacher, student = MODELS["cnn"](0), MODELS["mlp"](1)
    modes = []
    teacher.register_forward_hook(lambda m, i, o: modes.append(m.training))
    student_modes = []
    student.register_forward_hook(lambda m, i, o: student_modes.append(m.training))
    reference_impl.distill(teacher, student, digits[0], technique="soft_targets", epochs=1)
    assert modes and not any(modes)
    assert any(student_modes)  # the student trained in train mode (dropout and BatchNorm batch statistics)


def test_data_loader_and_tensors_give_the_same_student(digits):
    (x, y), _ = digits
    students = []
    for data in ((x, y), DataLoader(TensorDataset(x, y), batch_size=50, shuffle=False)):
        student = MODELS["mlp"](1)
        reference_impl.distill(MODELS["cnn"](0), student, data, technique="soft_targets", epochs=1, seed=3)
        students.append(snapshot(student))
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])


def test_settings_reach_the_procedure(digits, monkeypatch):
    seen = {}
    from reference_impl.techniques import soft_targets

    def spy(ctx, *, temperature=4.0, alpha=0.9):
        seen.update(temperature=temperature, alpha=alpha, epochs=ctx.config.epochs, lr=ctx.config.lr,
                    batch=ctx.config.batch_size, seed=ctx.seed)
        return ctx.new_student()

    monkeypatch.setattr(soft_targets, "PROCEDURE", api.Procedure(spy))
    reference_impl.distill(MODELS["cnn"](0), MODELS["mlp"](1), digits[0], technique="soft_targets", epochs=7,
                           lr=0.01, batch_size=16, seed=5, temperature=2.5, alpha=0.3)
    assert seen == {"temperature": 2.5, "alpha": 0.3, "epochs": 7, "lr": 0.01, "batch": 16, "seed": 5}


@pytest.mark.parametrize("call, message", [
    (lambda t, s, d: reference_impl.distill(t, s, d, technique="fitnets", hint_layer="layer3"),
     r"'layer3'.*known: .*stem"),
    (lambda t, s, d: reference_impl.distill(t, fresh(Tabular, 32, 7), d), "same number of outputs.*teacher 10.*student 7"),
    (lambda t, s, d: reference_impl.distill(t, s, d[0]), "no labels"),
    (lambda t, s, d: reference_impl.distill(t, s, d, temperture=2.0), "no setting temperture.*temperature, alpha"),
    (lambda t, s, d: reference_impl.distill(None, s, d), "needs a teacher"),
    (lambda t, s, d: reference_impl.distill(t, s, d, technique="deep_mutual_learning"), "uses no teacher"),
    (lambda t, s, d: reference_impl.distill(t, s, d, technique="nonexistent"), "unknown technique 'nonexistent'"),
    (lambda t, s, d: reference_impl.distill(t, s, (d[0], d[1] + 5)), r"labels must be class indices in \[0, 10\)"),
    (lambda t, s, d: reference_impl.distill(t, s, (d[0], d[1].float())), "integer class indices"),
    (lambda t, s, d: reference_impl.distill(t, s, (d[0], d[1][:-1])), "one class index per input"),
    (lambda t, s, d: reference_impl.distill(t, s, d, temperature=0.0), "temperature must be a finite number > 0"),
    (lambda t, s, d: reference_impl.distill(t, s, d, epochs=0), "epochs must be a positive integer"),
    (lambda t, s, d: reference_impl.distill(t, s, d, device="gpu"), "device must be"),
    (lambda t, s, d: reference_impl.distill(t, s, d, device="meta"), "device must be 'cpu' or 'cuda'"),
    (lambda t, s, d: reference_impl.distill(t, s, d, technique="relational_kd"), "name the layer.*_feature_layer"),
    (lambda t, s, d: reference_impl.distill(t, s, d, technique="teacher_assistant"), "needs the setting assistants"),
    (lambda t, s, d: reference_impl.distill(t, s, (d[0][:, :10], d[1])), "cannot take the data's inputs"),
    (lambda t, s, d: reference_impl.distill(t, s, d, validation=(d[0][:, :10], d[1])), "validation inputs have shape"),
])
def test_bad_input_raises_value_error_naming_what_is_wrong(call, message, digits):
    (x, y), _ = digits
    with pytest.raises(ValueError, match=message):
        call(MODELS["cnn"](0), MODELS["mlp"](1), (x[:64], y[:64]))


def test_feature_methods_adapt_shapes_with_their_regressor_or_say_why_not(digits):
    (x, y), _ = digits
    teacher, student = MODELS["cnn"](0), MODELS["cnn"](1)
    # FitNets regresses the student's 8-channel 8x8 stem onto the teacher's 16-channel 4x4 stage: a conv regressor
    reference_impl.distill(teacher, student, (x[:64], y[:64]), technique="fitnets", hint_layer="stage2",
                           guided_layer="stem", hint_epochs=1, epochs=1)
    # the other way round (4x4 onto 8x8) is impossible for the paper's regressor, and the error says so
    with pytest.raises(ValueError, match="cannot be regressed onto"):
        reference_impl.distill(teacher, MODELS["cnn"](1), (x[:64], y[:64]), technique="fitnets", hint_layer="stem",
                               guided_layer="stage2", hint_epochs=1, epochs=1)


def test_teacher_outputs_are_cached_by_fingerprint(digits, tmp_path, monkeypatch):
    (x, y), _ = digits
    teacher = MODELS["cnn"](0)
    calls = []
    original = api.predict_logits
    monkeypatch.setattr(api, "predict_logits", lambda m, data: calls.append(len(data)) or original(m, data))
    for _ in range(2):
        reference_impl.distill(teacher, MODELS["mlp"](1), (x, y), epochs=1, teacher_cache=tmp_path)
    assert calls == [len(x)]  # computed once, then read back
    assert len(list(tmp_path.glob("teacher-logits-*.pt"))) == 1
    other = MODELS["cnn"](5)  # other weights: another fingerprint, computed afresh
    reference_impl.distill(other, MODELS["mlp"](1), (x, y), epochs=1, teacher_cache=tmp_path)
    assert calls == [len(x), len(x)] and len(list(tmp_path.glob("teacher-logits-*.pt"))) == 2
    assert api.fingerprint(teacher, x) != api.fingerprint(teacher, x[1:])


def test_public_modules_doctests_pass():
    for module in (api, losses):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_losses_module_lists_every_name_it_exports():
    assert set(losses.__all__) == {n for n in dir(losses) if not n.startswith("_") and n not in ("annotations",)}
    for name in losses.__all__:
        assert f"`{name}`" in losses.__doc__, name


@pytest.mark.parametrize("name", ["digits_mlp", "mnist_cnn_batchnorm", "hf_tiny_classifier"])
def test_examples_run_with_a_tiny_budget(name, capsys):
    """The three examples of the "Use it on your own model" page, one epoch each (their full runs
    are timed by scripts/time_budgets.py --only examples)."""
    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scores = module.main(epochs=1)
    assert set(scores) >= {"teacher", "student on labels", "seconds"} and len(scores) == 4
    assert all(0 <= v <= 1 for k, v in scores.items() if k != "seconds")
    printed = capsys.readouterr().out
    assert "teacher" in printed and "student on labels" in printed


def test_the_sites_settings_table_reads_what_the_api_accepts():
    """The "Use it on your own model" page reads each PROCEDURE with ast (the site never imports
    torch); what it shows must be what distill accepts, defaults included."""
    import inspect

    from kb.sitegen.code import read_procedure
    root = Path(__file__).resolve().parent.parent
    for name in registry.technique_names(family="classification"):
        info = read_procedure(root, registry.module_path(name))
        shown = lambda settings: {k: "" if v is inspect.Parameter.empty else repr(v) for k, v in settings.items()}  # noqa: E731
        assert info.settings == shown(api.settings_of(name)), name
        found = api.procedure(name)
        assert (info.teacher, info.needs_labels, info.needs_features) == \
            (found.teacher, found.needs_labels, found.needs_features), name
        if found.without_teacher is not None:
            assert info.teacher_free_settings == shown(api.settings_of(name, without_teacher=True))


def test_importing_the_package_loads_no_torch_and_keeps_the_techniques_package():
    import subprocess
    import sys
    code = ("import sys, reference_impl, reference_impl.registry as r; assert 'torch' not in sys.modules; "
            "import reference_impl.techniques as t; assert reference_impl.techniques is t and r.technique_names(); "
            "assert callable(reference_impl.distill) and 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_the_readme_example_runs():
    """The README's "Use it on your own model" snippet, executed as written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Use it on your own model"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", section.index("```python"))]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert 0 <= namespace["result"].metrics["validation_accuracy"] <= 1


def test_progress_false_silences_the_bars_for_the_call_only(digits, monkeypatch):
    import os
    import sys
    seen = []
    train_module = sys.modules["reference_impl.harness.train"]  # the module; the package exports its train()
    original = train_module._progress
    monkeypatch.setattr(train_module, "_progress",
                        lambda iterable, desc, total: seen.append(os.environ.get("KD_QUIET")) or original(iterable, desc, total))
    monkeypatch.delenv("KD_QUIET", raising=False)
    reference_impl.distill(MODELS["cnn"](0), MODELS["mlp"](1), digits[0], epochs=1, progress=False)
    assert seen == ["1"] and "KD_QUIET" not in os.environ
    monkeypatch.setenv("KD_QUIET", "0")
    reference_impl.distill(MODELS["cnn"](0), MODELS["mlp"](1), digits[0], epochs=1, progress=False)
    assert seen[-1] == "1" and os.environ["KD_QUIET"] == "0"


def test_attention_transfer_needs_maps_of_one_size_and_says_so(digits):
    """AT compares spatial attention maps position by position: layers of different resolution
    (the teacher's 4x4 stage2 against the student's 8x8 stem) cannot be paired."""
    (x, y), _ = digits
    with pytest.raises(ValueError, match="shape"):
        reference_impl.distill(MODELS["cnn"](0), MODELS["cnn"](1), (x[:64], y[:64]), technique="attention_transfer",
                               layers=["stem"], teacher_layers=["stage2"], epochs=1)
    with pytest.raises(ValueError, match="pair up one to one"):
        reference_impl.distill(MODELS["cnn"](0), MODELS["cnn"](1), (x[:64], y[:64]), technique="attention_transfer",
                               layers=["stem"], teacher_layers=["stem", "stage2"], epochs=1)


def test_extra_networks_are_fresh_copies_of_the_users_architecture(digits):
    """DML's second peer and a born-again generation: the user's architecture, initialised afresh
    from their own seed (different weights, BatchNorm statistics reset), never the student itself."""
    from reference_impl.harness.bench import reinitialised_copy
    student = MODELS["mlp"](1)
    with torch.no_grad():
        student.hidden[1].running_mean.fill_(3.0)
    a, b, again = reinitialised_copy(student, 7), reinitialised_copy(student, 8), reinitialised_copy(student, 7)
    assert a is not student and type(a) is type(student)
    assert not torch.equal(a.out.weight, student.out.weight) and not torch.equal(a.out.weight, b.out.weight)
    assert torch.equal(a.out.weight, again.out.weight)  # seeded
    assert torch.equal(a.hidden[1].running_mean, torch.zeros(32))  # BatchNorm statistics reset
    assert torch.equal(student.hidden[1].running_mean, torch.full((32,), 3.0))  # the original untouched


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_asking_for_cuda_without_one_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="sees no CUDA device"):
        reference_impl.distill(MODELS["cnn"](0), MODELS["mlp"](1), digits[0], device="cuda")
