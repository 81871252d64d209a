"""The math of logit matching (Ba & Caruana 2014) and its relation to soft targets (Hinton et al. 2015)."""

from __future__ import annotations

import pytest
import torch

from reference_impl.harness import ModelSpec, Split, TrainConfig
from reference_impl.harness.bench import Context
from reference_impl.techniques import logit_matching
from reference_impl.techniques.logit_matching import logit_matching_loss
from reference_impl.techniques.soft_targets import soft_target_kl


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def centred(z):
    return z - z.mean(1, keepdim=True)


def test_value_is_half_squared_error_summed_over_classes_averaged_over_batch():
    z_s, z_t = logits(6, 4, seed=1), logits(6, 4, seed=2)
    by_hand = sum(0.5 * float(((z_s[n] - z_t[n]) ** 2).sum()) for n in range(6)) / 6
    assert float(logit_matching_loss(z_s, z_t)) == pytest.approx(by_hand, rel=1e-6)
    # not F.mse_loss (mean over elements too): that would be 2/classes times smaller
    assert float(torch.nn.functional.mse_loss(z_s, z_t)) == pytest.approx(by_hand * 2 / 4, rel=1e-6)


def test_gradient_matches_closed_form():
    """d/dz_s [1/(2B) Σ‖z_s − z_t‖²] = (z_s − z_t) / B; the teacher gets no gradient."""
    z_s = logits(8, 10, seed=3).requires_grad_()
    z_t = logits(8, 10, seed=4).requires_grad_()
    logit_matching_loss(z_s, z_t.detach()).backward()
    torch.testing.assert_close(z_s.grad, (z_s.detach() - z_t.detach()) / 8)
    assert z_t.grad is None


def test_zero_iff_logits_match_and_not_shift_invariant():
    z = logits(5, 7, seed=5)
    assert float(logit_matching_loss(z, z.clone())) == 0.0
    for seed in range(10):
        assert float(logit_matching_loss(logits(5, 7, seed=seed), logits(5, 7, seed=seed + 50))) > 0
    # unlike the softmax, squared error sees a constant shift c of all logits: 1/2 · classes · c²
    assert float(logit_matching_loss(z, z + 2.0)) == pytest.approx(0.5 * 7 * 4.0, rel=1e-6)
    assert float(soft_target_kl(z, z + 2.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("n_classes", [3, 10, 50])
def test_soft_target_gradient_tends_to_logit_matching_gradient_over_classes(n_classes):
    """Hinton §2.1, Eq. (4): for zero-mean logits, the gradient of T²·KL tends to 1/N times the
    gradient of this loss as T grows (N classes)."""
    batch = 16
    z_s = centred(logits(batch, n_classes, seed=8, scale=1.0))
    z_t = centred(logits(batch, n_classes, seed=9, scale=1.0))
    z = z_s.clone().requires_grad_()
    logit_matching_loss(z, z_t).backward()
    matching_grad = z.grad.clone()
    errors = []
    for T in (1.0, 5.0, 20.0, 100.0):
        z = z_s.clone().requires_grad_()
        soft_target_kl(z, z_t, T).backward()
        errors.append(float((n_classes * z.grad - matching_grad).norm() / matching_grad.norm()))
    assert errors == sorted(errors, reverse=True)  # closer and closer
    assert errors[-1] < 0.01


def test_limit_for_non_zero_mean_logits_matches_the_centred_logits():
    """Without zero-mean logits the limit is logit matching of the per-case centred logits."""
    n_classes, batch = 10, 8
    z_s = (logits(batch, n_classes, seed=10, scale=1.0) + 3.0).double()
    z_t = (logits(batch, n_classes, seed=11, scale=1.0) - 1.0).double()
    z = z_s.clone().requires_grad_()
    soft_target_kl(z, z_t, 500.0).backward()
    limit = n_classes * z.grad

    def matching_grad(a, b):
        a = a.clone().requires_grad_()
        logit_matching_loss(a, b).backward()
        return a.grad

    centred_grad, raw_grad = matching_grad(centred(z_s), centred(z_t)), matching_grad(z_s, z_t)
    assert float((limit - centred_grad).norm() / centred_grad.norm()) < 0.01
    assert float((limit - raw_grad).norm() / raw_grad.norm()) > 0.5


def test_student_arm_keeps_teacher_logits_aligned_with_shuffled_batches(monkeypatch):
    """The batch loss must pair each input with its own teacher logits, whatever the order."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=g)
    y = torch.randint(0, 3, (20,), generator=g)
    split = Split("toy", x, y, x, y, 3, (5,))
    z_t = torch.randn(20, 3, generator=g) * 4
    ctx = Context(split, None, z_t, ModelSpec("mlp", hidden=(4,)), TrainConfig(epochs=1), seed=0)
    seen = {}

    def fake_train(self, student, n, batch_loss, **kwargs):
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(1))[:7]
        seen["loss"] = float(batch_loss(idx).detach())
        seen["expected"] = float(logit_matching_loss(student(x[idx]), z_t[idx]).detach())
        seen["n"] = n

    monkeypatch.setattr(Context, "fit", fake_train)
    logit_matching.logit_matching_student(ctx)
    assert seen["n"] == 20
    assert seen["loss"] == pytest.approx(seen["expected"])


def test_bad_tensors_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="teacher_logits"):
        logit_matching_loss(logits(2, 3), logits(2, 4))
    bad = logits(2, 3)
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="student_logits"):
        logit_matching_loss(bad, logits(2, 3))
    with pytest.raises(ValueError, match="teacher_logits"):
        logit_matching_loss(logits(2, 3), bad)
    with pytest.raises(ValueError, match="student_logits"):
        logit_matching_loss(logits(3), logits(3))
