"""The math of soft-target distillation (Hinton et al. 2015), and the traps around it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from reference_impl.techniques.soft_targets import soft_target_kl, soft_target_loss


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_gradient_matches_closed_form():
    """d/dz_s [T² KL(p_t‖p_s)] = T (p_s − p_t) / batch for softened p = softmax(z/T)."""
    z_s = logits(8, 10, seed=1).requires_grad_()
    z_t = logits(8, 10, seed=2)
    for T in (1.0, 2.0, 7.5):
        z_s.grad = None
        soft_target_kl(z_s, z_t, T).backward()
        expected = T * (F.softmax(z_s.detach() / T, 1) - F.softmax(z_t / T, 1)) / 8
        torch.testing.assert_close(z_s.grad, expected)


def test_value_is_kl_teacher_to_student_with_batchmean():
    """KL(p_t ‖ p_s) summed over classes, averaged over the batch (not over elements), × T²."""
    z_s, z_t, T = logits(5, 7, seed=3), logits(5, 7, seed=4), 3.0
    p_t, p_s = F.softmax(z_t / T, 1), F.softmax(z_s / T, 1)
    by_hand = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * T**2
    torch.testing.assert_close(soft_target_kl(z_s, z_t, T), by_hand)
    swapped = (p_s * (p_s.log() - p_t.log())).sum(1).mean() * T**2
    assert not torch.allclose(soft_target_kl(z_s, z_t, T), swapped)  # direction matters
    elementwise_mean = by_hand / 7
    assert not torch.allclose(soft_target_kl(z_s, z_t, T), elementwise_mean)


def test_nonnegative_and_zero_iff_distributions_match():
    z = logits(6, 5, seed=5)
    assert float(soft_target_kl(z, z.clone(), 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_target_kl(z, z + 2.5, 4.0)) == pytest.approx(0.0, abs=1e-6)  # shift-invariant softmax
    for seed in range(20):
        assert float(soft_target_kl(logits(6, 5, seed=seed), logits(6, 5, seed=seed + 100), 2.0)) > 0


def test_t_squared_keeps_gradient_scale_comparable_across_temperatures():
    z_s = logits(64, 10, seed=6)
    z_t = logits(64, 10, seed=7)
    z_s, z_t = z_s - z_s.mean(1, keepdim=True), z_t - z_t.mean(1, keepdim=True)

    def grad_norm(T, scaled):
        z = z_s.clone().requires_grad_()
        loss = soft_target_kl(z, z_t, T)
        (loss if scaled else loss / T**2).backward()
        return float(z.grad.norm())

    with_factor = [grad_norm(T, True) for T in (2, 5, 10, 20)]
    without = [grad_norm(T, False) for T in (2, 5, 10, 20)]
    assert max(with_factor) / min(with_factor) < 2.5
    assert without[0] / without[-1] > 50  # without T² the soft gradient fades like 1/T²


def test_high_temperature_limit_is_logit_matching():
    """Hinton §2.1: for zero-mean logits, as T → ∞ the gradient → (z_s − z_t)/N per sample."""
    n_classes, batch = 10, 16
    z_s, z_t = logits(batch, n_classes, seed=8, scale=1.0), logits(batch, n_classes, seed=9, scale=1.0)
    z_s, z_t = z_s - z_s.mean(1, keepdim=True), z_t - z_t.mean(1, keepdim=True)
    logit_matching_grad = (z_s - z_t) / n_classes / batch  # of (1/2N)‖z_s − z_t‖², batch-averaged
    errors = []
    for T in (1.0, 5.0, 20.0, 100.0):
        z = z_s.clone().requires_grad_()
        soft_target_kl(z, z_t, T).backward()
        errors.append(float((z.grad - logit_matching_grad).norm() / logit_matching_grad.norm()))
    assert errors == sorted(errors, reverse=True)  # closer and closer
    assert errors[-1] < 0.01


def test_loss_combines_hard_and_soft_terms():
    z_s, z_t, y = logits(4, 3, seed=10), logits(4, 3, seed=11), torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(soft_target_loss(z_s, z_t, y, temperature=2.0, alpha=0.0), F.cross_entropy(z_s, y))
    torch.testing.assert_close(soft_target_loss(z_s, z_t, y, temperature=2.0, alpha=1.0), soft_target_kl(z_s, z_t, 2.0))


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"alpha": 1.5}, "alpha"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        soft_target_loss(logits(2, 3), logits(2, 3), torch.tensor([0, 1]), **kwargs)


def test_bad_tensors_raise_value_error_naming_them():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="teacher_logits"):
        soft_target_loss(logits(2, 3), logits(2, 4), y)
    bad = logits(2, 3)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="student_logits"):
        soft_target_loss(bad, logits(2, 3), y)
    with pytest.raises(ValueError, match="teacher_logits"):
        soft_target_loss(logits(2, 3), bad, y)
    with pytest.raises(ValueError, match="labels"):
        soft_target_loss(logits(2, 3), logits(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        soft_target_loss(logits(2, 3), logits(2, 3), torch.tensor([0.0, 1.0]))
