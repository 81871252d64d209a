"""The math of soft-target distillation (Hinton et al. 2015), and the traps around it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from reference_impl.techniques.soft_targets import CachedSoftTargets, soft_target_kl, soft_target_loss


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


# CachedSoftTargets: the form the harness trains with, held to soft_target_loss.

def teacher_entropy_term(z_t, T, alpha):
    """α T² · H(p_t^T), batch-averaged: what separates the cross-entropy form from the KL form."""
    p_t = F.softmax(z_t / T, 1)
    return alpha * T**2 * -(p_t * p_t.log()).sum(1).mean()


@pytest.mark.parametrize("T, alpha", [(4.0, 0.9), (1.0, 0.5), (2.5, 0.0), (7.0, 1.0), (20.0, 0.3)])
@pytest.mark.parametrize("batch", [64, 17, 1])
def test_cached_soft_targets_equal_soft_target_loss(T, alpha, batch):
    """Same gradient; the value is larger by the teacher's entropy term, a constant (H(p, q) = H(p) + KL)."""
    n, classes = 300, 10
    # double precision: at T = 20 the entropy term is ~300, and float32 cancellation would hide a real error
    z_t_all = logits(n, classes, seed=20).double()
    y_all = torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(21))
    targets = CachedSoftTargets(z_t_all, y_all, temperature=T, alpha=alpha)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(22))[:batch]  # shuffled, as in training
    z_reference = logits(batch, classes, seed=23, scale=2.0).double().requires_grad_()
    z_cached = z_reference.detach().clone().requires_grad_()
    reference = soft_target_loss(z_reference, z_t_all[idx], y_all[idx], temperature=T, alpha=alpha)
    cached = targets(z_cached, idx)
    reference.backward()
    cached.backward()
    torch.testing.assert_close(cached - teacher_entropy_term(z_t_all[idx], T, alpha), reference.detach())
    torch.testing.assert_close(z_cached.grad, z_reference.grad)


def test_cached_soft_targets_gradient_passes_gradcheck_in_double_precision():
    z_t_all, y_all = logits(12, 5, seed=24).double(), torch.arange(12) % 5
    targets = CachedSoftTargets(z_t_all, y_all, temperature=3.0, alpha=0.7)
    idx = torch.tensor([7, 2, 11, 2])  # a repeated sample is fine
    z = logits(4, 5, seed=25).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: targets(z, idx), (z,))


def test_cached_soft_targets_rows_follow_their_sample_indices():
    """Reordering a batch reorders the gradient's rows and leaves the loss unchanged: row i of the
    logits is always matched with sample idx[i]'s targets (no stale cache alignment)."""
    z_t_all, y_all = logits(50, 6, seed=26), torch.arange(50) % 6
    targets = CachedSoftTargets(z_t_all, y_all, temperature=4.0, alpha=0.9)
    idx, order = torch.tensor([3, 41, 17, 8, 29]), torch.tensor([4, 0, 3, 1, 2])
    z = logits(5, 6, seed=27).requires_grad_()
    z_reordered = z.detach()[order].clone().requires_grad_()
    loss, loss_reordered = targets(z, idx), targets(z_reordered, idx[order])
    loss.backward()
    loss_reordered.backward()
    torch.testing.assert_close(loss_reordered, loss)
    torch.testing.assert_close(z_reordered.grad, z.grad[order])
    shuffled_targets = targets(z.detach(), idx[order])  # logits no longer match their samples
    assert not torch.allclose(shuffled_targets, loss.detach())


def test_cached_soft_targets_hold_no_graph_and_leave_the_teacher_alone():
    z_t_all = logits(20, 4, seed=28).requires_grad_()  # as if straight from a teacher not under no_grad
    before = z_t_all.detach().clone()
    targets = CachedSoftTargets(z_t_all, torch.arange(20) % 4)
    assert not targets.weighted_targets.requires_grad
    z = logits(3, 4, seed=29).requires_grad_()
    targets(z, torch.tensor([0, 5, 9])).backward()
    assert z_t_all.grad is None
    torch.testing.assert_close(z_t_all.detach(), before)


@pytest.mark.parametrize("make_args, words", [
    (lambda z, i: (z.tolist(), i), "torch.Tensor"),
    (lambda z, i: (z, i.float()), "idx"),
    (lambda z, i: (z, i[None]), "idx"),
    (lambda z, i: (z, torch.tensor([0, 1, 2, 10])), "idx must index the 10"),
    (lambda z, i: (z[:, :2], i), "student_logits must have shape"),
    (lambda z, i: (z[:3], i), "student_logits must have shape"),
    (lambda z, i: (z.reshape(2, 6), i), "student_logits must have shape"),  # same element count
    (lambda z, i: (z[0], i[:1]), "student_logits must have shape"),  # 1-D logits for one index
    (lambda z, i: (z.double(), i), "student_logits are torch.float64"),
    (lambda z, i: (z.index_fill(0, torch.tensor([1]), float("nan")), i), "student_logits contains NaN"),
    (lambda z, i: (z.index_fill(0, torch.tensor([2]), float("inf")), i), "student_logits contains NaN"),
])
def test_cached_soft_targets_bad_batch_raises_value_error_naming_it(make_args, words):
    targets = CachedSoftTargets(logits(10, 3, seed=30), torch.arange(10) % 3)
    with pytest.raises(ValueError, match=words):
        targets(*make_args(logits(4, 3, seed=31), torch.arange(4)))


def test_cached_soft_targets_bad_construction_raises_value_error_naming_it():
    z_t, y = logits(6, 3, seed=32), torch.arange(6) % 3
    for kwargs, word in (({"temperature": 0.0}, "temperature"), ({"temperature": -2.0}, "temperature"),
                         ({"alpha": -0.1}, "alpha"), ({"alpha": 1.01}, "alpha")):
        with pytest.raises(ValueError, match=word):
            CachedSoftTargets(z_t, y, **kwargs)
    bad = z_t.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="teacher_logits"):
        CachedSoftTargets(bad, y)
    with pytest.raises(ValueError, match="labels"):
        CachedSoftTargets(z_t, torch.tensor([0, 1, 2, 3, 0, 1]))
    with pytest.raises(ValueError, match="labels"):
        CachedSoftTargets(z_t, y[:5])


def test_cross_entropy_and_kd_is_ce_plus_t_squared_kl_with_weight_one():
    """The task part RKD and SP add their term to: CE + T²·KL(p_t^T ‖ p_s^T), computed here from the
    definitions (sum over classes of p_t (log p_t − log p_s), averaged over the batch)."""
    from reference_impl.techniques.soft_targets import cross_entropy_and_kd
    g = torch.Generator().manual_seed(3)
    z_s, z_t, y = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g) * 3, torch.tensor([0, 1, 2, 3, 4, 0])
    T = 2.5
    p_t = torch.softmax(z_t / T, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(z_s / T, 1))).sum(1).mean()
    ce = -torch.log_softmax(z_s, 1)[torch.arange(6), y].mean()
    torch.testing.assert_close(cross_entropy_and_kd(z_s, y, z_t, kd_temperature=T), ce + T**2 * kl)
    torch.testing.assert_close(cross_entropy_and_kd(z_s, y, None, kd_temperature=None), ce)
    with pytest.raises(ValueError, match="teacher_logits are required"):
        cross_entropy_and_kd(z_s, y, None, kd_temperature=T)
    with pytest.raises(ValueError, match="kd_temperature"):
        cross_entropy_and_kd(z_s, y, z_t, kd_temperature=0.0)
