"""The math of decoupled knowledge distillation (Zhao et al. 2022): TCKD and NCKD recombine
into classical KD with the teacher's target probability as the coupling weight."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from reference_impl.techniques.decoupled_kd import decoupled_terms, dkd_loss, warmup_weight
from reference_impl.techniques.soft_targets import soft_target_kl


def logits(*shape, seed=0, scale=3.0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def labels_for(batch, classes, seed=0):
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed + 1000))


def kl_per_sample(z_s, z_t, T):
    p_t = F.softmax(z_t / T, 1)
    return (p_t * (F.log_softmax(z_t / T, 1) - F.log_softmax(z_s / T, 1))).sum(1)


@pytest.mark.parametrize("T", [1.0, 2.0, 4.0, 10.0])
def test_tckd_and_nckd_recombine_into_classical_kd_per_sample(T):
    """KL(p_t ‖ p_s) = TCKD + (1 − p_t,target^T) · NCKD exactly, sample by sample, Eq. (7)."""
    for seed in range(5):
        z_s, z_t, y = logits(16, 10, seed=seed), logits(16, 10, seed=seed + 50), labels_for(16, 10, seed)
        tckd, nckd, p_target = decoupled_terms(z_s, z_t, y, T)
        torch.testing.assert_close(p_target, F.softmax(z_t / T, 1).gather(1, y[:, None]).squeeze(1))
        torch.testing.assert_close(tckd + (1 - p_target) * nckd, kl_per_sample(z_s, z_t, T), rtol=1e-10, atol=1e-12)


def test_recombined_batch_loss_equals_soft_target_kl_and_coupling_is_the_teachers():
    z_s, z_t, y, T = logits(32, 10, seed=1), logits(32, 10, seed=2), labels_for(32, 10, 1), 4.0
    tckd, nckd, p_target = decoupled_terms(z_s, z_t, y, T)
    torch.testing.assert_close(T**2 * (tckd + (1 - p_target) * nckd).mean(), soft_target_kl(z_s, z_t, T))
    p_student_target = F.softmax(z_s / T, 1).gather(1, y[:, None]).squeeze(1)
    assert not torch.allclose(tckd + (1 - p_student_target) * nckd, kl_per_sample(z_s, z_t, T))


def test_terms_are_nonnegative_and_zero_iff_their_distributions_match():
    for seed in range(20):
        z_s, z_t, y = logits(8, 6, seed=seed), logits(8, 6, seed=seed + 99), labels_for(8, 6, seed)
        tckd, nckd, _ = decoupled_terms(z_s, z_t, y, 2.0)
        assert (tckd >= 0).all() and (nckd >= 0).all()
    z_t, y = logits(8, 6, seed=3), labels_for(8, 6, 3)
    tckd, nckd, _ = decoupled_terms(z_t.clone(), z_t, y, 3.0)
    assert tckd.abs().max() < 1e-12 and nckd.abs().max() < 1e-12
    # Raising only the target logit changes b but not the non-target distribution p̂ ...
    target = F.one_hot(y, 6).double()
    tckd, nckd, _ = decoupled_terms(z_t + 2.0 * target, z_t, y, 3.0)
    assert (tckd > 1e-4).all() and nckd.abs().max() < 1e-12
    # ... and reshuffling the non-target logits while keeping p_t fixed changes p̂ but not b.
    z_s = z_t.clone()
    for i, t in enumerate(y.tolist()):
        others = [c for c in range(6) if c != t]
        z_s[i, others] = z_t[i, others].flip(0)  # same log-sum-exp of non-targets, so same p_t
    tckd, nckd, _ = decoupled_terms(z_s, z_t, y, 3.0)
    assert tckd.abs().max() < 1e-12 and (nckd > 1e-6).all()


def test_gradients_match_closed_forms_and_reach_only_the_student():
    """d T²·mean(TCKD)/dz = T(p_t^S − p_t^T)·[1 at the target, −p̂^S elsewhere]/B;
    d T²·mean(NCKD)/dz = T(p̂^S − p̂^T)/B off the target and 0 at the target."""
    B, C, T = 8, 7, 3.0
    z_t_param = logits(B, C, seed=5).requires_grad_()
    z_s0, y = logits(B, C, seed=6), labels_for(B, C, 6)
    target = F.one_hot(y, C).bool()
    p_s, p_t = F.softmax(z_s0 / T, 1), F.softmax(z_t_param.detach() / T, 1)
    pt_s, pt_t = p_s[target], p_t[target]
    hat_s = (p_s / (1 - pt_s)[:, None]).masked_fill(target, 0)
    hat_t = (p_t / (1 - pt_t)[:, None]).masked_fill(target, 0)

    z_s = z_s0.clone().requires_grad_()
    dkd_loss(z_s, z_t_param, y, temperature=T, alpha=1.0, beta=0.0).backward()
    expected = T * (pt_s - pt_t)[:, None] * torch.where(target, torch.ones_like(hat_s), -hat_s) / B
    torch.testing.assert_close(z_s.grad, expected)
    assert z_t_param.grad is None  # the teacher gets nothing

    z_s = z_s0.clone().requires_grad_()
    dkd_loss(z_s, z_t_param, y, temperature=T, alpha=0.0, beta=1.0).backward()
    torch.testing.assert_close(z_s.grad, T * (hat_s - hat_t) / B)
    assert z_t_param.grad is None


def test_dkd_loss_weights_the_terms_independently():
    z_s, z_t, y, T = logits(10, 5, seed=7), logits(10, 5, seed=8), labels_for(10, 5, 7), 4.0
    tckd, nckd, _ = decoupled_terms(z_s, z_t, y, T)
    for alpha, beta in ((1.0, 8.0), (0.0, 1.0), (2.5, 0.0)):
        torch.testing.assert_close(dkd_loss(z_s, z_t, y, temperature=T, alpha=alpha, beta=beta),
                                   T**2 * (alpha * tckd + beta * nckd).mean())


def test_confident_logits_stay_finite():
    """1 − p_t underflows for a confident model; the log-space computation must not."""
    z_t, y = logits(4, 10, seed=9, dtype=torch.float32), torch.tensor([0, 1, 2, 3])
    z_t = z_t + 200.0 * F.one_hot(y, 10)
    z_s = logits(4, 10, seed=10, dtype=torch.float32).requires_grad_()
    loss = dkd_loss(z_s, z_t, y, temperature=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_s.grad).all()
    same = dkd_loss(z_t.clone(), z_t, y, temperature=1.0)
    assert float(same) == pytest.approx(0.0, abs=1e-5)


def test_warmup_ramps_linearly_then_stays_at_one():
    assert warmup_weight(0, 100) == pytest.approx(0.01)
    assert warmup_weight(49, 100) == pytest.approx(0.5)
    assert warmup_weight(99, 100) == 1.0 and warmup_weight(5000, 100) == 1.0
    assert warmup_weight(0, 0) == 1.0


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"alpha": -1.0}, "alpha"), ({"beta": float("inf")}, "beta"), ({"beta": -0.5}, "beta"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        dkd_loss(logits(2, 4), logits(2, 4), torch.tensor([0, 1]), **kwargs)


def test_bad_tensors_raise_value_error_naming_them():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="teacher_logits"):
        dkd_loss(logits(2, 4), logits(2, 5), y)
    bad = logits(2, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="student_logits"):
        dkd_loss(bad, logits(2, 4), y)
    with pytest.raises(ValueError, match="labels"):
        dkd_loss(logits(2, 4), logits(2, 4), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="labels"):
        dkd_loss(logits(2, 4), logits(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="student_logits"):  # two classes leave no non-target distribution
        dkd_loss(logits(2, 2), logits(2, 2), y)
