"""Reversed and teacher-free distillation (Yuan et al. 2020): the designed distribution, Tf-KD_reg's
relation to label smoothing, and the weak-teacher arms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, Split, TrainConfig, build_model, freeze, n_params, predict_logits
from reference_impl.techniques import reverse_distillation
from reference_impl.techniques.reverse_distillation import (EXPERIMENTS, designed_distribution, student_taught_by,
                                                            tfkd_reg_loss)
from reference_impl.techniques.soft_targets import soft_target_kl


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


LABELS = torch.tensor([0, 3, 9, 3, 5, 1])
K = 10


@pytest.mark.parametrize("a", [0.99, 0.9, 0.5, 0.1, 0.01])
def test_designed_distribution_sums_to_one_with_a_on_the_true_class(a):
    p = designed_distribution(LABELS, K, a)
    assert p.shape == (6, K)
    torch.testing.assert_close(p.sum(1), torch.ones(6))
    torch.testing.assert_close(p[torch.arange(6), LABELS], torch.full((6,), a))
    others = p[F.one_hot(LABELS, K) == 0]
    torch.testing.assert_close(others, torch.full_like(others, (1 - a) / (K - 1)))


def test_designed_distribution_is_a_label_smoothed_target_and_uniform_at_a_equal_one_over_k():
    """p^d = (1 − ε)·onehot + ε·u with ε = K(1 − a)/(K − 1); a = 1/K gives ε = 1, the uniform u."""
    for a in (0.99, 0.9, 0.3):
        eps = K * (1 - a) / (K - 1)
        torch.testing.assert_close(designed_distribution(LABELS, K, a),
                                   (1 - eps) * F.one_hot(LABELS, K).float() + eps / K)
    torch.testing.assert_close(designed_distribution(LABELS, K, 1 / K), torch.full((6, K), 1 / K))


@pytest.mark.parametrize("a, alpha", [(0.99, 0.1), (0.9, 0.5), (0.7, 1.0)])
def test_at_temperature_one_tfkd_reg_is_label_smoothing_up_to_a_constant(a, alpha):
    """(1−α)CE + α KL(p^d‖p) = CE with label smoothing α·ε − α·H(p^d): equal up to a constant, same gradient."""
    eps = K * (1 - a) / (K - 1)
    entropy = -(a * math.log(a) + (1 - a) * math.log((1 - a) / (K - 1)))
    z1 = logits(6, K, seed=1).requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    tf = tfkd_reg_loss(z1, LABELS, correct_prob=a, temperature=1.0, alpha=alpha)
    ls = F.cross_entropy(z2, LABELS, label_smoothing=alpha * eps) - alpha * entropy
    torch.testing.assert_close(tf, ls)
    tf.backward()
    ls.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_with_a_uniform_designed_distribution_tfkd_reg_is_the_papers_label_smoothing_as_kd():
    """Yuan et al.: LSR = (1−α)H(q,p) + α(KL(u‖p) + H(u)), i.e. KD from a uniform virtual teacher."""
    z, alpha = logits(6, K, seed=2), 0.3
    u, log_p = torch.full((6, K), 1 / K), F.log_softmax(z, 1)
    kl_uniform = (u * (u.log() - log_p)).sum(1).mean()
    tf = tfkd_reg_loss(z, LABELS, correct_prob=1 / K, temperature=1.0, alpha=alpha)
    torch.testing.assert_close(tf, (1 - alpha) * F.cross_entropy(z, LABELS) + alpha * kl_uniform)
    torch.testing.assert_close(tf + alpha * math.log(K), F.cross_entropy(z, LABELS, label_smoothing=alpha))


@pytest.mark.parametrize("a, tau", [(0.99, 20.0), (0.9, 4.0), (0.99, 1.0)])
def test_value_and_gradient_at_temperature_match_the_equation_by_hand(a, tau):
    """p^d_τ ∝ (p^d)^(1/τ); L = (1−α)CE + α τ² KL(p^d_τ‖softmax(z/τ)), KL batch-averaged."""
    alpha = 0.4
    z = logits(6, K, seed=3).requires_grad_()
    p_d = designed_distribution(LABELS, K, a)
    p_d_tau = p_d ** (1 / tau) / (p_d ** (1 / tau)).sum(1, keepdim=True)
    p_s_tau = F.softmax(z.detach() / tau, 1)
    by_hand = ((1 - alpha) * F.cross_entropy(z.detach(), LABELS)
               + alpha * tau**2 * (p_d_tau * (p_d_tau.log() - p_s_tau.log())).sum(1).mean())
    loss = tfkd_reg_loss(z, LABELS, correct_prob=a, temperature=tau, alpha=alpha)
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    expected = ((1 - alpha) * (F.softmax(z.detach(), 1) - F.one_hot(LABELS, K)) + alpha * tau * (p_s_tau - p_d_tau)) / 6
    torch.testing.assert_close(z.grad, expected)
    reuse = (1 - alpha) * F.cross_entropy(z, LABELS) + alpha * soft_target_kl(z, p_d.log(), tau)
    torch.testing.assert_close(loss, reuse)


def test_softening_keeps_the_designed_form_and_flattens_towards_uniform():
    """softmax(log p^d / τ) is again a on the true class and equal elsewhere, with a_τ falling to 1/K."""
    a, previous = 0.99, 1.0
    for tau in (1.0, 2.0, 5.0, 20.0, 1000.0):
        soft = F.softmax(designed_distribution(LABELS, K, a).log() / tau, dim=1)
        a_tau = float(soft[0, LABELS[0]])
        closed_form = a ** (1 / tau) / (a ** (1 / tau) + (K - 1) * ((1 - a) / (K - 1)) ** (1 / tau))
        assert a_tau == pytest.approx(closed_form, rel=1e-5)
        torch.testing.assert_close(soft, designed_distribution(LABELS, K, a_tau))
        assert a_tau < previous
        previous = a_tau
    assert previous == pytest.approx(1 / K, abs=1e-3)


def test_minimised_when_the_student_reproduces_the_designed_distribution():
    """With α = 1 the loss is τ²·KL ≥ 0, zero exactly when softmax(z/τ) = p^d_τ, i.e. z = log p^d + c."""
    p_d = designed_distribution(LABELS, K, 0.99)
    for tau in (1.0, 20.0):
        assert float(tfkd_reg_loss(p_d.log() + 2.0, LABELS, temperature=tau, alpha=1.0)) == pytest.approx(0, abs=1e-5)
        assert float(tfkd_reg_loss(logits(6, K, seed=4), LABELS, temperature=tau, alpha=1.0)) > 0


def tiny_context(tmp_path, monkeypatch) -> Context:
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 8, generator=g), torch.randint(0, 3, (60,), generator=g)
    split = Split("synthetic", x[:40], y[:40], x[40:], y[40:], 3, (8,))
    monkeypatch.setattr(reverse_distillation, "load_split", lambda name: split)
    torch.manual_seed(1)
    weak = freeze(build_model(ModelSpec("mlp", hidden=(2,)), split))
    return Context(split, weak, predict_logits(weak, split.x_train), ModelSpec("mlp", hidden=(32,)),
                   TrainConfig(epochs=2), seed=0)


def test_weak_teacher_teaches_and_stays_frozen_while_the_stronger_student_learns(tmp_path, monkeypatch):
    ctx = tiny_context(tmp_path, monkeypatch)
    assert n_params(ctx.teacher) < n_params(ctx.new_student())  # reversed: the teacher is the smaller model
    before = [p.clone() for p in ctx.teacher.parameters()]
    initial = [p.detach().clone() for p in ctx.new_student().parameters()]
    student = student_taught_by(ctx.teacher, ctx)
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.teacher.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(initial, student.parameters()))
    monkeypatch.setattr(reverse_distillation, "TEACHER", ModelSpec("mlp", hidden=(16,)))
    defective = reverse_distillation.defective_teacher(ctx)
    assert not defective.training and not any(p.requires_grad for p in defective.parameters())


def test_the_experiments_teach_a_larger_student_with_a_smaller_teacher():
    weak = EXPERIMENTS[0]
    split = Split("shape-only", torch.zeros(2, 40), torch.zeros(2, dtype=torch.long), torch.zeros(2, 40),
                  torch.zeros(2, dtype=torch.long), 10, (40,))
    assert n_params(build_model(weak.teacher, split)) < n_params(build_model(weak.student, split))
    assert [a.key for a in weak.arms][:2] == ["baseline", "reverse"]
    assert [a.key for a in EXPERIMENTS[1].arms][:2] == ["baseline", "tfkd_reg"]


@pytest.mark.parametrize("kwargs, word", [
    ({"correct_prob": 0.0}, "correct_prob"), ({"correct_prob": 1.0}, "correct_prob"),
    ({"correct_prob": -0.2}, "correct_prob"), ({"correct_prob": 1.5}, "correct_prob"),
    ({"correct_prob": float("nan")}, "correct_prob"), ({"temperature": 0.0}, "temperature"),
    ({"temperature": -1.0}, "temperature"), ({"temperature": float("inf")}, "temperature"),
    ({"alpha": 1.01}, "alpha"), ({"alpha": -0.1}, "alpha"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        tfkd_reg_loss(logits(2, 3), torch.tensor([0, 1]), **kwargs)


def test_bad_tensors_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="labels"):
        tfkd_reg_loss(logits(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        tfkd_reg_loss(logits(2, 3), torch.tensor([0.0, 1.0]))
    bad = logits(2, 3)
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="student_logits"):
        tfkd_reg_loss(bad, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n_classes"):
        designed_distribution(torch.tensor([0, 0]), 1)
