"""Teacher-assistant distillation (Mirzadeh et al. 2020): the chain, its freezing, its sizes."""

from __future__ import annotations

import pytest
import torch

from reference_impl.harness import Context, ModelSpec, Split, TrainConfig, build_model, freeze, n_params, predict_logits
from reference_impl.techniques import soft_targets, teacher_assistant
from reference_impl.techniques.teacher_assistant import (ASSISTANT, TEACHER, TINY_STUDENT, assistant_chain,
                                                         check_sizes)

BIG, MID, SMALL = ModelSpec("mlp", hidden=(32,)), ModelSpec("mlp", hidden=(8,)), ModelSpec("mlp", hidden=(3,))


def tiny_split(n_features=8, n_classes=3) -> Split:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, n_features, generator=g), torch.randint(0, n_classes, (60,), generator=g)
    return Split("synthetic", x[:40], y[:40], x[40:], y[40:], n_classes, (n_features,))


def tiny_context(student=SMALL, epochs=2) -> Context:
    split = tiny_split()
    torch.manual_seed(1)
    teacher = freeze(build_model(BIG, split))
    return Context(split, teacher, predict_logits(teacher, split.x_train), student, TrainConfig(epochs=epochs), seed=0)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_the_student_learns_from_the_assistant_not_from_the_teacher(monkeypatch):
    ctx = tiny_context()
    steps, cached_logits = [], []
    real_step, real_targets = teacher_assistant.distil_step, teacher_assistant.CachedSoftTargets

    def spy_step(student, teacher, ctx_, **kwargs):
        steps.append((student, teacher))
        return real_step(student, teacher, ctx_, **kwargs)

    def spy_targets(teacher_logits, labels, **kwargs):
        cached_logits.append(teacher_logits.clone())
        return real_targets(teacher_logits, labels, **kwargs)

    monkeypatch.setattr(teacher_assistant, "distil_step", spy_step)
    monkeypatch.setattr(teacher_assistant, "CachedSoftTargets", spy_targets)
    student = assistant_chain(ctx, (MID,))
    assert len(steps) == 2 and len(cached_logits) == 2
    (assistant, first_teacher), (last_student, second_teacher) = steps
    assert first_teacher is ctx.teacher and second_teacher is assistant and last_student is student
    assert n_params(assistant) == n_params(build_model(MID, ctx.split))
    # the second step's soft targets are the trained assistant's outputs, the first step's the teacher's
    z_assistant, z_teacher = predict_logits(assistant, ctx.split.x_train), ctx.teacher_train_logits
    torch.testing.assert_close(cached_logits[1], z_assistant)
    assert not torch.isclose(cached_logits[1], z_teacher).all(1).any()
    torch.testing.assert_close(cached_logits[0], z_teacher)


def test_the_assistant_is_trained_first_then_frozen_and_unchanged_while_teaching(monkeypatch):
    ctx = tiny_context()
    initial = params_of(ctx.new_student(MID))  # new_student reseeds: the chain's assistant starts here
    observed = {}
    real_step = teacher_assistant.distil_step

    def spy_step(student, teacher, ctx_, **kwargs):
        if teacher is ctx.teacher:
            return real_step(student, teacher, ctx_, **kwargs)
        observed["before"] = params_of(teacher)  # the second step: the assistant teaches
        result = real_step(student, teacher, ctx_, **kwargs)
        observed["after"] = params_of(teacher)
        observed["frozen"] = not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        return result

    monkeypatch.setattr(teacher_assistant, "distil_step", spy_step)
    teacher_before = params_of(ctx.teacher)
    assistant_chain(ctx, (MID,))
    assert observed["frozen"]
    assert all(torch.equal(a, b) for a, b in zip(observed["before"], observed["after"]))
    assert not all(torch.equal(a, b) for a, b in zip(initial, observed["before"]))  # it had learnt first
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, params_of(ctx.teacher)))


def test_without_assistants_the_chain_is_direct_soft_target_kd():
    ctx = tiny_context()
    direct = assistant_chain(ctx, ())
    reference = soft_targets.distilled_student(ctx, temperature=4.0, alpha=0.9)
    assert all(torch.equal(a, b) for a, b in zip(direct.parameters(), reference.parameters()))


def test_the_experiment_chain_is_ordered_teacher_assistant_student():
    split = tiny_split(n_features=40, n_classes=10)  # mnist1d's shapes
    sizes = [n_params(build_model(s, split)) for s in (TEACHER, ASSISTANT, TINY_STUDENT)]
    assert sizes[0] > sizes[1] > sizes[2]
    ctx = tiny_context()
    expected = [n_params(ctx.teacher), n_params(build_model(MID, ctx.split)), n_params(build_model(SMALL, ctx.split))]
    assert check_sizes(ctx.teacher, (MID,), SMALL, ctx) == expected


@pytest.mark.parametrize("assistants, student, word", [
    ((BIG,), SMALL, r"assistants\[0\]"),  # assistant as large as the teacher
    ((ModelSpec("mlp", hidden=(64,)),), SMALL, r"assistants\[0\]"),  # larger than the teacher
    ((MID,), MID, "student"),  # student as large as the assistant
    ((SMALL, MID), SMALL, r"assistants\[1\]"),  # assistants growing
    ((), BIG, "student"),  # direct KD into a student as large as the teacher
])
def test_sizes_out_of_order_raise_value_error_naming_the_model(assistants, student, word):
    ctx = tiny_context(student=student)
    with pytest.raises(ValueError, match=word):
        assistant_chain(ctx, assistants)


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": -4.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"alpha": 1.2}, "alpha"), ({"alpha": -0.5}, "alpha"),
])
def test_bad_hyperparameters_raise_before_any_training(kwargs, word, monkeypatch):
    monkeypatch.setattr(Context, "fit", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match=word):
        assistant_chain(tiny_context(), (MID,), **kwargs)
