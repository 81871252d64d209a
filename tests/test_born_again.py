"""Born-again networks (Furlanello et al. 2018): the loss, the generation chain and the fair comparison."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, TrainConfig, build_model, load_split, n_params
from reference_impl.harness.bench import scratch_student
from reference_impl.techniques.born_again import (
    born_again_generations, born_again_loss, born_again_student, teach_next_generation)


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_value_is_kl_teacher_to_student_at_temperature_one():
    z_s, z_t = logits(5, 7, seed=1), logits(5, 7, seed=2)
    p_s, p_t = F.softmax(z_s, 1), F.softmax(z_t, 1)
    torch.testing.assert_close(born_again_loss(z_s, z_t), (p_t * (p_t.log() - p_s.log())).sum(1).mean())
    assert not torch.allclose(born_again_loss(z_s, z_t), (p_s * (p_s.log() - p_t.log())).sum(1).mean())


def test_gradient_equals_cross_entropy_with_the_teachers_distribution():
    """∂/∂z_s CE(p_t, p_s) = ∂/∂z_s KL(p_t ‖ p_s) = (p_s − p_t) / batch: the paper's loss, same gradient."""
    z_s, z_t = logits(6, 5, seed=3).requires_grad_(), logits(6, 5, seed=4)
    born_again_loss(z_s, z_t).backward()
    expected = (F.softmax(z_s.detach(), 1) - F.softmax(z_t, 1)) / 6
    torch.testing.assert_close(z_s.grad, expected)
    z = z_s.detach().clone().requires_grad_()
    F.cross_entropy(z, F.softmax(z_t, 1)).backward()  # soft-label cross-entropy
    torch.testing.assert_close(z.grad, expected)


def test_zero_iff_distributions_match_and_no_gradient_reaches_the_teacher():
    z = logits(4, 3, seed=5)
    assert float(born_again_loss(z, z.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(born_again_loss(z, logits(4, 3, seed=6))) > 0
    z_t = logits(4, 3, seed=7).requires_grad_()
    born_again_loss(logits(4, 3, seed=8).requires_grad_(), z_t).backward()
    assert z_t.grad is None


def test_bad_input_raises_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="teacher_logits"):
        born_again_loss(logits(2, 3), logits(2, 4))
    bad = logits(2, 3)
    bad[0, 1] = float("inf")
    with pytest.raises(ValueError, match="student_logits"):
        born_again_loss(bad, logits(2, 3))
    with pytest.raises(ValueError, match="student_logits"):
        born_again_loss(logits(6), logits(6))


SPEC = ModelSpec("mlp", hidden=(16,))


@pytest.fixture(scope="module")
def ctx():
    split = load_split("digits")
    return Context(split, build_model(SPEC, split), torch.zeros(len(split.y_train), 10), SPEC,
                   TrainConfig(epochs=2, seed=4), 4)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_generation_zero_is_exactly_the_baseline_network_of_the_same_seed(ctx):
    """The fair comparison: the BAN student's teacher is the baseline arm's own network for this seed."""
    gen0, gen1 = born_again_generations(ctx, generations=1)
    assert same_weights(gen0, scratch_student(ctx))
    assert all(not p.requires_grad for p in gen0.parameters()) and not gen0.training  # frozen teacher
    assert type(gen1) is type(gen0) and n_params(gen1) == n_params(gen0)  # identical architecture
    assert not same_weights(gen1, gen0)


def test_student_starts_from_a_fresh_initialisation(ctx, monkeypatch):
    import reference_impl.techniques.born_again as ban
    seen = []
    monkeypatch.setattr(type(ctx), "fit", lambda self, student, *a, **k: seen.append(student.state_dict()))
    teacher = scratch_student(ctx)
    teach_next_generation(teacher, ctx, 1)
    assert len(seen) == 2  # the scratch teacher, then generation 1
    assert not all(torch.equal(seen[-1][k], v) for k, v in ctx.new_student().state_dict().items())


def test_student_learns_the_teachers_outputs_sample_by_sample(ctx):
    """Cached teacher logits are indexed with the batch indices: a student trained long enough
    agrees with its teacher (misaligned targets would be noise)."""
    long = Context(ctx.split, ctx.teacher, ctx.teacher_train_logits, SPEC, TrainConfig(epochs=15, seed=4), 4)
    gen0, gen1 = born_again_generations(long, generations=1)
    x = ctx.split.x_train
    agreement = (gen0(x).argmax(1) == gen1(x).argmax(1)).float().mean()
    assert agreement > 0.8  # misaligned targets would give about 0.1


def test_chains_and_bad_generation_counts(ctx):
    assert len(born_again_generations(ctx, generations=2)) == 3
    assert same_weights(born_again_student(ctx, 2), born_again_generations(ctx, 2)[-1])  # deterministic
    with pytest.raises(ValueError, match="generations"):
        born_again_generations(ctx, generations=0)
    with pytest.raises(ValueError, match="generation"):
        teach_next_generation(scratch_student(ctx), ctx, 0)
