"""Distil your own model: every technique on any `nn.Module`, through one function.

    >>> import torch
    >>> from torch import nn
    >>> from reference_impl import distill
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(256, 20), torch.randint(0, 4, (256,))
    >>> teacher = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    >>> student = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 4))
    >>> result = distill(teacher, student, (x, y), technique="soft_targets", epochs=2,
    ...                  validation=(x[:64], y[:64]), temperature=4.0, alpha=0.9)
    >>> result.student is student, result.metrics["technique"], len(result.metrics["chosen_epochs"])
    (True, 'soft_targets', 1)

`distill(teacher, student, data, technique=..., **settings)` builds the same `Context` the
benchmarks build from an Experiment and calls the technique's `PROCEDURE`, the function its
benchmark arms call: one implementation serves both. The settings are that function's
keyword parameters (`techniques()` lists them, with their defaults); an unknown one is an
error, not ignored.

What it does for you, and the rules it enforces:
- the teacher is frozen (eval mode, so BatchNorm statistics and dropout stay fixed; no
  gradients) and its outputs on your data are computed once, then indexed with each batch
  (optionally cached on disk, keyed by a fingerprint of the teacher's weights and the data);
- the student trains in train mode (its own BatchNorm and dropout work normally);
- with a validation set, the epoch is chosen on it and the best epoch's weights are kept;
- feature-based techniques read the layers you name (`hint_layer=`, `layers=`,
  `student_feature_layer=`...); a wrong name lists the model's modules.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import registry
from .harness.bench import Context, Procedure, scratch_student
from .harness.data import Split
from .harness.evaluate import evaluate
from .harness.train import TrainConfig, freeze, predict_logits, seed_everything

NO_LABEL = -1  # stands in for labels a label-free technique never reads


@dataclass
class Distilled:
    """What `distill` returns: the trained student (in eval mode) and what was measured."""
    student: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)


def procedure(technique: str) -> Procedure:
    """The technique's `PROCEDURE` (ValueError naming the known techniques if there is none)."""
    module = registry.load(technique)
    if registry.family_of(technique) != "classification":
        raise ValueError(f"{technique} is a language-model technique: distill trains classifiers. Call its loss "
                         f"on your model's logits and masks in your own training loop (see {module.__name__})")
    found = getattr(module, "PROCEDURE", None)
    if not isinstance(found, Procedure):
        raise ValueError(f"{module.__name__} defines no PROCEDURE, so distill cannot run it")
    return found


def settings_of(technique: str, *, without_teacher: bool = False) -> dict[str, Any]:
    """The settings `distill` accepts for a technique, with their defaults (`inspect.Parameter.empty`
    where one is required); `without_teacher`: those of its teacher-free variant (reverse_distillation).
    Feature-based techniques also take teacher_feature_layer / student_feature_layer."""
    found = procedure(technique)
    function = found.train
    if without_teacher:
        if found.without_teacher is None:
            raise ValueError(f"{technique} has no teacher-free variant")
        function = found.without_teacher
    return {name: p.default for name, p in _settings(found, function).items()}


def techniques() -> dict[str, dict[str, Any]]:
    """Every technique `distill` runs, with its settings and their defaults."""
    return {name: settings_of(name) for name in registry.technique_names(family="classification")}


def _settings(found: Procedure, function) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a procedure function after its context, less the one the teacher fills."""
    return {n: p for n, p in list(inspect.signature(function).parameters.items())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != found.teacher_setting}


def distill(teacher: nn.Module | list[nn.Module] | None, student: nn.Module, data, *,
            technique: str = "soft_targets", validation=None, epochs: int = 30, batch_size: int = 64,
            lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, device: str | torch.device = "cpu",
            teacher_cache: str | Path | None = None, progress: bool | None = None,
            teacher_feature_layer: str | None = None, student_feature_layer: str | None = None,
            **settings) -> Distilled:
    """Train `student` from `teacher` on `data` with a technique; returns the student and metrics.

    data, validation: a tuple (inputs, labels) of tensors or arrays, a DataLoader yielding
    (inputs, labels) batches, or inputs alone for label-free techniques (logit_matching, munge).
    Inputs keep their dtype (token ids stay integers), except float64, which becomes float32.
    teacher: a model, a list of models (multi_teacher), or None (born_again,
    deep_mutual_learning, be_your_own_teacher; reverse_distillation without a teacher is Tf-KD).
    The student is trained in place and returned (techniques that train several networks
    return the one the technique deploys: the last born-again generation, DML's peer 1).
    Training: Adam (lr, weight_decay), `epochs` at most, mini-batches of `batch_size`, seeded
    by `seed` (initialisation of any extra network, batch order). `progress`: a bar per training
    stage on a terminal (False: none). `teacher_cache`: a directory where the teacher's outputs on
    `data` are kept, keyed by a fingerprint of the teacher's weights and the data.
    """
    found = procedure(technique)
    return _train(found, technique, teacher, student, data, validation=validation, epochs=epochs,
                  batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, device=device,
                  teacher_cache=teacher_cache, progress=progress, teacher_feature_layer=teacher_feature_layer,
                  student_feature_layer=student_feature_layer, settings=settings)


def train_on_labels(model: nn.Module, data, *, validation=None, epochs: int = 30, batch_size: int = 64,
                    lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, device: str | torch.device = "cpu",
                    progress: bool | None = None) -> Distilled:
    """Train `model` on the hard labels alone (cross-entropy), with exactly the plumbing `distill`
    uses (batches, seeding, Adam, epoch chosen on `validation`): a teacher, or the baseline a
    distilled student should beat at the same budget (the benchmarks' `baseline` arm)."""
    return _train(Procedure(scratch_student, teacher="none"), "labels", None, model, data, validation=validation,
                  epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, device=device,
                  teacher_cache=None, progress=progress, teacher_feature_layer=None, student_feature_layer=None,
                  settings={})


def _train(found: Procedure, technique: str, teacher, student, data, *, validation, epochs, batch_size, lr,
           weight_decay, seed, device, teacher_cache, progress, teacher_feature_layer, student_feature_layer,
           settings) -> Distilled:
    started = time.perf_counter()
    train_settings, variant = _check_settings(technique, found, teacher, settings)
    device = _device(device)
    _check_positive_int(epochs, "epochs")
    _check_positive_int(batch_size, "batch_size")
    if not isinstance(student, nn.Module):
        raise ValueError(f"student must be a torch.nn.Module, got {type(student).__name__}")
    teachers = _teachers(teacher, found)

    x, y = _tensors(data, "data", labels_required=found.needs_labels)
    x_val, y_val = (None, None) if validation is None else _tensors(validation, "validation", labels_required=True)
    if x_val is not None and x_val.shape[1:] != x.shape[1:]:
        raise ValueError(f"validation inputs have shape {tuple(x_val.shape[1:])} per sample but data has "
                         f"{tuple(x.shape[1:])}")
    x, x_val = x.to(device), None if x_val is None else x_val.to(device)
    y = torch.full((len(x),), NO_LABEL, dtype=torch.int64) if y is None else y
    y, y_val = y.to(device), None if y_val is None else y_val.to(device)

    student.to(device)
    for t in teachers:
        freeze(t.to(device))
    for name in found.model_settings:
        for model in _as_list(train_settings.get(name, ())):
            if isinstance(model, nn.Module):
                model.to(device)
    n_classes = _check_outputs(teachers, student, x[:2])
    for labels, name in ((y, "data"), (y_val, "validation")):
        if labels is not None and labels.numel() and not (labels == NO_LABEL).all():
            if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
                raise ValueError(f"{name} labels must be class indices in [0, {n_classes}) (the models have "
                                 f"{n_classes} outputs), got values in [{int(labels.min())}, {int(labels.max())}]")

    main_teacher = teachers[0] if teachers else None
    teacher_logits = (_teacher_outputs(main_teacher, x, teacher_cache) if main_teacher is not None
                      else torch.zeros(len(x), n_classes, device=device))
    split = Split(name="user data", x_train=x, y_train=y, x_test=x_val if x_val is not None else x[:0],
                  y_test=y_val if y_val is not None else y[:0], n_classes=n_classes,
                  input_shape=tuple(x.shape[1:]), x_val=x_val, y_val=y_val)
    ctx = Context(split, main_teacher, teacher_logits, None,
                  TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed),
                  seed, student_template=student, teacher_feature_layer=teacher_feature_layer,
                  student_feature_layer=student_feature_layer, progress=technique)
    if found.teacher_setting is not None and teachers:
        train_settings[found.teacher_setting] = teachers if found.teacher == "several" else main_teacher
    seed_everything(seed)
    with _progress_bars(progress):
        trained = variant(ctx, **train_settings)
    trained.eval()
    metrics: dict[str, Any] = {"technique": technique, "settings": dict(settings),
                               "chosen_epochs": list(ctx.chosen_epochs), "seconds": time.perf_counter() - started,
                               "n_train": len(x)}
    if x_val is not None:
        evaluation = evaluate(trained, x_val, y_val, teacher_logits=None if main_teacher is None else
                              predict_logits(main_teacher, x_val))
        metrics.update(validation_accuracy=evaluation.accuracy, validation_ece=evaluation.ece,
                       teacher_agreement=evaluation.teacher_agreement)
    return Distilled(trained, metrics)


@contextmanager
def _progress_bars(show: bool | None) -> Iterator[None]:
    """progress=False silences the training bars (KD_QUIET=1 for the call); None and True leave
    them as the harness shows them: on a terminal, unless KD_QUIET=1 is already set."""
    previous = os.environ.get("KD_QUIET")
    if show is False:
        os.environ["KD_QUIET"] = "1"
    try:
        yield
    finally:
        if show is False:
            if previous is None:
                os.environ.pop("KD_QUIET", None)
            else:
                os.environ["KD_QUIET"] = previous


# ---------------------------------------------------------------- checks and conversions
def _device(device) -> torch.device:
    try:
        found = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but this torch build sees no CUDA device")
    if found.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (the devices the project supports), got {device!r}")
    return found


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_settings(technique: str, found: Procedure, teacher, settings: dict) -> tuple[dict, Any]:
    variant = found.train
    if found.teacher == "optional" and teacher is None:
        variant = found.without_teacher
    allowed = _settings(found, variant)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(f"{technique} has no setting {', '.join(unknown)}; its settings: "
                         f"{', '.join(allowed) or 'none'}")
    missing = [n for n, p in allowed.items() if p.default is inspect.Parameter.empty and n not in settings]
    if missing:
        raise ValueError(f"{technique} needs the setting {', '.join(missing)}")
    return dict(settings), variant


def _teachers(teacher, found: Procedure) -> list[nn.Module]:
    if found.teacher == "none":
        if teacher is not None:
            raise ValueError("this technique uses no teacher (the student's own outputs teach): pass teacher=None")
        return []
    if found.teacher == "several":
        teachers = _as_list(teacher)
        if not teachers or not all(isinstance(t, nn.Module) for t in teachers):
            raise ValueError("this technique needs a list of teacher models (torch.nn.Module)")
        return teachers
    if teacher is None:
        if found.teacher == "optional":
            return []
        raise ValueError("this technique needs a teacher model (torch.nn.Module), got None")
    if not isinstance(teacher, nn.Module):
        raise ValueError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    return [teacher]


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _tensors(data, name: str, *, labels_required: bool) -> tuple[Tensor, Tensor | None]:
    """(inputs, labels or None) from tensors, arrays or a DataLoader of (inputs, labels) batches."""
    if isinstance(data, DataLoader):
        inputs, labels = [], []
        for batch in data:
            x, y = (batch[0], batch[1]) if isinstance(batch, (list, tuple)) and len(batch) >= 2 else (
                batch[0] if isinstance(batch, (list, tuple)) else batch, None)
            inputs.append(torch.as_tensor(x))
            if y is not None:
                labels.append(torch.as_tensor(y))
        if not inputs:
            raise ValueError(f"{name} is an empty DataLoader")
        x, y = torch.cat(inputs), torch.cat(labels) if labels else None
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
    elif isinstance(data, (tuple, list)) and len(data) == 1:
        x, y = torch.as_tensor(data[0]), None
    else:
        try:
            x, y = torch.as_tensor(data), None
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{name} must be (inputs, labels), inputs alone, or a DataLoader; "
                             f"got {type(data).__name__}") from None
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(f"{name} inputs must be a non-empty batch (samples, ...), got shape {tuple(x.shape)}")
    if x.dtype == torch.float64:  # NumPy's default: the models' weights are float32
        x = x.float()
    if y is None:
        if labels_required:
            raise ValueError(f"{name} has no labels, and this technique needs them: pass (inputs, labels)")
        return x, None
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"{name} labels must be 1-D with one class index per input ({len(x)}), "
                         f"got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} labels must be integer class indices, got {y.dtype}")
    return x, y.to(torch.int64)


@torch.no_grad()
def _check_outputs(teachers: list[nn.Module], student: nn.Module, probe: Tensor) -> int:
    """The number of classes; teacher(s) and student must produce (batch, classes) logits of one size."""
    was_training = student.training
    student.eval()
    try:
        outputs = {"teacher" if len(teachers) == 1 else f"teacher {i}": t(probe) for i, t in enumerate(teachers)}
        outputs["student"] = student(probe)
    except RuntimeError as error:
        raise ValueError(f"a model cannot take the data's inputs of shape {tuple(probe.shape[1:])}: {error}") from None
    finally:
        student.train(was_training)
    not_tensors = [k for k, out in outputs.items() if not isinstance(out, Tensor)]
    if not_tensors:
        raise ValueError(f"the {' and '.join(not_tensors)} must return a logits tensor (batch, classes), got "
                         f"{type(outputs[not_tensors[0]]).__name__}; wrap a model that returns an object (e.g. a "
                         "Hugging Face model's output) in a module whose forward returns its .logits")
    shapes = {k: tuple(out.shape) for k, out in outputs.items()}
    bad = {k: s for k, s in shapes.items() if len(s) != 2}
    if bad:
        raise ValueError(f"models must return logits of shape (batch, classes); got {bad}")
    sizes = {k: s[1] for k, s in shapes.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError("teacher and student must have the same number of outputs (classes), got "
                         + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return sizes["student"]


def fingerprint(teacher: nn.Module, x: Tensor) -> str:
    """sha256 of the teacher's weights and buffers (names, shapes, values) and of the inputs."""
    digest = hashlib.sha256()
    for name, tensor in [*teacher.state_dict().items(), ("__inputs__", x)]:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def _teacher_outputs(teacher: nn.Module, x: Tensor, cache: str | Path | None) -> Tensor:
    if cache is None:
        return predict_logits(teacher, x)
    path = Path(cache).expanduser() / f"teacher-logits-{fingerprint(teacher, x)[:32]}.pt"
    if path.exists():
        logits = torch.load(path, map_location=x.device)
        if isinstance(logits, Tensor) and logits.shape[0] == len(x):
            return logits
    logits = predict_logits(teacher, x)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(logits.cpu(), tmp)
    tmp.replace(path)
    return logits


__all__ = ["Distilled", "distill", "fingerprint", "settings_of", "techniques", "train_on_labels"]
