"""The math of multi-teacher distillation (You et al. 2017; CA-MKD weights), and the traps around it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, Split, TrainConfig, build_model, freeze, predict_logits
from reference_impl.techniques import multi_teacher
from reference_impl.techniques.multi_teacher import (confidence_weights, ensemble_logits, mixture_log_probs,
                                                     multi_teacher_kl, multi_teacher_loss)
from reference_impl.techniques.soft_targets import soft_target_kl


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_averaged_target_is_the_mean_of_the_softened_distributions_not_of_the_logits():
    z_t, T = logits(3, 6, 5, seed=1), 2.0
    mean_of_distributions = F.softmax(z_t / T, dim=2).mean(0)
    torch.testing.assert_close(mixture_log_probs(z_t, T).exp(), mean_of_distributions)
    softmax_of_mean_logits = F.softmax(z_t.mean(0) / T, dim=1)
    assert not torch.allclose(mixture_log_probs(z_t, T).exp(), softmax_of_mean_logits, atol=1e-3)


def test_loss_value_is_kl_from_the_mixture_with_batchmean_and_t_squared():
    z_s, z_t, T = logits(6, 5, seed=2), logits(3, 6, 5, seed=3), 3.0
    p_bar, p_s = F.softmax(z_t / T, dim=2).mean(0), F.softmax(z_s / T, dim=1)
    by_hand = (p_bar * (p_bar.log() - p_s.log())).sum(1).mean() * T**2
    torch.testing.assert_close(multi_teacher_kl(z_s, z_t, T), by_hand)
    torch.testing.assert_close(multi_teacher_kl(z_s, list(z_t), T), by_hand)  # a list of teachers works alike


def test_gradient_matches_closed_form():
    """d/dz_s [T² KL(p̄‖p_s)] = T (p_s − p̄) / batch."""
    z_s, z_t = logits(8, 10, seed=4).requires_grad_(), logits(4, 8, 10, seed=5)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4])
    for T in (1.0, 4.0):
        z_s.grad = None
        multi_teacher_kl(z_s, z_t, T, w).backward()
        p_bar = (w[:, None, None] * F.softmax(z_t / T, dim=2)).sum(0)
        torch.testing.assert_close(z_s.grad, T * (F.softmax(z_s.detach() / T, 1) - p_bar) / 8)


def test_mixture_kl_has_the_gradient_of_the_weighted_sum_of_single_teacher_kls():
    """KL(Σ w_m p_m ‖ p_s) − Σ w_m KL(p_m ‖ p_s) does not depend on the student."""
    z_t, w, T = logits(3, 5, 7, seed=6), torch.tensor([0.5, 0.3, 0.2]), 2.0
    grads = []
    for combine in ("mixture", "sum"):
        z_s = logits(5, 7, seed=7).requires_grad_()
        loss = (multi_teacher_kl(z_s, z_t, T, w) if combine == "mixture"
                else sum(w[m] * soft_target_kl(z_s, z_t[m], T) for m in range(3)))
        loss.backward()
        grads.append(z_s.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_one_hot_weight_reduces_to_single_teacher_kd():
    z_s, z_t = logits(6, 5, seed=8), logits(3, 6, 5, seed=9)
    torch.testing.assert_close(multi_teacher_kl(z_s, z_t, 2.0, [0.0, 1.0, 0.0]), soft_target_kl(z_s, z_t[1], 2.0))
    for m in range(3):
        one_hot = F.one_hot(torch.tensor(m), 3).float()
        for T in (1.0, 4.0):
            torch.testing.assert_close(multi_teacher_kl(z_s, z_t, T, one_hot), soft_target_kl(z_s, z_t[m], T))


def test_identical_teachers_reduce_to_single_teacher_kd_whatever_the_weights():
    z_s, z = logits(6, 5, seed=10), logits(6, 5, seed=11)
    w = torch.tensor([[0.2, 0.8]]).expand(6, 2)
    torch.testing.assert_close(multi_teacher_kl(z_s, [z, z.clone()], 3.0, w), soft_target_kl(z_s, z, 3.0))


def test_nonnegative_and_zero_when_student_matches_the_mixture():
    z_t, T = logits(3, 6, 5, seed=12), 2.0
    z_s = T * mixture_log_probs(z_t, T)  # softmax(z_s / T) = p̄
    assert float(multi_teacher_kl(z_s, z_t, T)) == pytest.approx(0.0, abs=1e-5)
    for seed in range(10):
        assert float(multi_teacher_kl(logits(6, 5, seed=seed), z_t, T)) > 0


def test_confidence_weights_sum_to_one_and_favour_the_teacher_that_is_right():
    z_t, y = logits(4, 20, 6, seed=13), torch.randint(0, 6, (20,), generator=torch.Generator().manual_seed(0))
    w = confidence_weights(z_t, y)
    assert w.shape == (20, 4) and (w >= 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(20))
    # by hand: (1 - softmax over teachers of CE) / (M - 1)
    ce = torch.stack([F.cross_entropy(z_t[m], y, reduction="none") for m in range(4)])
    torch.testing.assert_close(w, ((1 - F.softmax(ce, 0)) / 3).T)
    right, wrong = torch.full((1, 3), -5.0), torch.full((1, 3), -5.0)
    right[0, 0], wrong[0, 1] = 5.0, 5.0
    w2 = confidence_weights([right, wrong], torch.tensor([0]))
    assert w2[0, 0] > 0.99 and w2[0, 1] < 0.01
    assert torch.equal(confidence_weights(z_t[:1], y), torch.ones(20, 1))  # a single teacher gets weight 1


def test_per_sample_weights_apply_row_by_row():
    z_s, z_t, T = logits(2, 4, seed=14), logits(2, 2, 4, seed=15), 2.0
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # sample 0 from teacher 0, sample 1 from teacher 1
    expected = (soft_target_kl(z_s[:1], z_t[0, :1], T) + soft_target_kl(z_s[1:], z_t[1, 1:], T)) / 2
    torch.testing.assert_close(multi_teacher_kl(z_s, z_t, T, w), expected)


def test_loss_combines_hard_and_soft_terms():
    z_s, z_t, y = logits(4, 3, seed=16), logits(2, 4, 3, seed=17), torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(multi_teacher_loss(z_s, z_t, y, alpha=0.0), F.cross_entropy(z_s, y))
    torch.testing.assert_close(multi_teacher_loss(z_s, z_t, y, temperature=2.0, alpha=1.0),
                               multi_teacher_kl(z_s, z_t, 2.0))


def tiny_context(tmp_path, monkeypatch) -> Context:
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    split = Split("synthetic", x[:32], y[:32], x[32:], y[32:], 3, (8,))
    monkeypatch.setattr(multi_teacher, "load_split", lambda name: split)
    monkeypatch.setattr(multi_teacher, "TEACHER", ModelSpec("mlp", hidden=(16,)))
    monkeypatch.setattr(multi_teacher, "TEACHER_CONFIG", TrainConfig(epochs=2))
    teacher = freeze(build_model(ModelSpec("mlp", hidden=(16,)), split))
    return Context(split, teacher, predict_logits(teacher, split.x_train), ModelSpec("mlp", hidden=(4,)),
                   TrainConfig(epochs=1), seed=0)


def test_teachers_are_frozen_distinct_and_get_no_gradient(tmp_path, monkeypatch):
    ctx = tiny_context(tmp_path, monkeypatch)
    teachers = multi_teacher.ensemble(ctx, seeds=(0, 1))
    assert len(list(tmp_path.glob("synthetic-*.pt"))) == 2  # the seed is part of the cache key
    for t in teachers:
        assert not t.training and not any(p.requires_grad for p in t.parameters())
    z_t = ensemble_logits(teachers, ctx.split.x_train)
    assert z_t.shape == (2, 32, 3) and not z_t.requires_grad
    assert not torch.allclose(z_t[0], z_t[1])  # differently seeded teachers disagree
    student = build_model(ModelSpec("mlp", hidden=(4,)), ctx.split)
    for p in (p for t in teachers for p in t.parameters()):
        p.grad = None  # a freshly trained teacher still holds its last training gradient
    multi_teacher_loss(student(ctx.split.x_train), z_t, ctx.split.y_train).backward()
    assert all(p.grad is None for t in teachers for p in t.parameters())
    before = [p.clone() for t in teachers for p in t.parameters()]
    for weighted in (False, True):
        multi_teacher.multi_teacher_student(ctx, weighted=weighted)
    assert all(torch.equal(a, b) for a, b in zip(before, [p for t in teachers for p in t.parameters()]))


def test_cached_teacher_outputs_stay_aligned_with_shuffled_batches(tmp_path, monkeypatch):
    """Every per-sample tensor is indexed with the same batch indices (shuffling cannot misalign them)."""
    ctx = tiny_context(tmp_path, monkeypatch)
    seen = []
    real_loss = multi_teacher.multi_teacher_loss

    def spy(student_logits, teacher_logits, labels, **kwargs):
        seen.append((teacher_logits, labels, kwargs["weights"]))
        return real_loss(student_logits, teacher_logits, labels, **kwargs)

    monkeypatch.setattr(multi_teacher, "multi_teacher_loss", spy)
    multi_teacher.multi_teacher_student(ctx, weighted=True)
    z_all = ensemble_logits(multi_teacher.ensemble(ctx), ctx.split.x_train)
    w_all = confidence_weights(z_all, ctx.split.y_train)
    assert seen
    for z_batch, y_batch, w_batch in seen:
        for b in range(len(y_batch)):
            i = int((z_all[0] - z_batch[0, b]).abs().sum(1).argmin())  # the sample this row came from
            torch.testing.assert_close(z_batch[:, b], z_all[:, i])  # every teacher's row is that sample's
            assert int(y_batch[b]) == int(ctx.split.y_train[i])
            torch.testing.assert_close(w_batch[b], w_all[i])


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": -2.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"), ({"alpha": -0.1}, "alpha"),
    ({"weights": torch.tensor([1.5, -0.5])}, "non-negative"), ({"weights": torch.tensor([0.3, 0.3])}, "sum to 1"),
    ({"weights": torch.tensor([0.2, 0.3, 0.5])}, "weights"),
    ({"weights": torch.tensor([float("nan"), 1.0])}, "weights"),
])
def test_bad_hyperparameters_and_weights_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        multi_teacher_loss(logits(2, 3), logits(2, 2, 3), torch.tensor([0, 1]), **kwargs)


def test_bad_tensors_raise_value_error_naming_them():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="teacher_logits.*mismatched"):
        multi_teacher_loss(logits(2, 3), [logits(2, 3), logits(2, 4)], y)
    with pytest.raises(ValueError, match="teacher_logits"):
        multi_teacher_loss(logits(2, 3), [logits(2, 4), logits(2, 4)], y)  # teachers agree, student differs
    with pytest.raises(ValueError, match="teacher_logits"):
        multi_teacher_loss(logits(2, 3), [], y)
    with pytest.raises(ValueError, match="teacher_logits"):
        multi_teacher_loss(logits(2, 3), logits(2, 3), y)  # one teacher must still be stacked (1, batch, classes)
    bad = logits(2, 2, 3)
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="teacher_logits"):
        multi_teacher_loss(logits(2, 3), bad, y)
    with pytest.raises(ValueError, match="student_logits"):
        multi_teacher_loss(bad[1], logits(2, 2, 3), y)
    with pytest.raises(ValueError, match="labels"):
        multi_teacher_loss(logits(2, 3), logits(2, 2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        confidence_weights(logits(2, 2, 3), torch.tensor([0.0, 1.0]))
