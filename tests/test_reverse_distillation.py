"""Reversed and teacher-free distillation (Yuan et al. 2020): the designed distribution, Tf-KD_reg's
relation to label smoothing, and the weak-teacher arms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, Split, TrainConfig, build_model, freeze, n_params, predict_logits
from reference_impl.techniques import reverse_distillation
from reference_impl.techniques.reverse_distillation import (AUTHORS_KL_CLASSES, EXPERIMENTS, REKD_SOFT_WEIGHT,
                                                            TFKD_REG_SOFT_WEIGHT, designed_distribution,
                                                            student_taught_by, tfkd_reg_loss,
                                                            weighted_soft_target_loss)
from reference_impl.techniques.soft_targets import soft_target_kl, soft_target_loss


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


# ---------------------------------------------------------------- the authors' effective weight
def authors_kd_loss(z_s, z_t, labels, alpha, tau):
    """Their loss_kd, written out: nn.KLDivLoss() has reduction "mean", over batch and classes."""
    kl_mean = F.kl_div(F.log_softmax(z_s / tau, dim=1), F.softmax(z_t / tau, dim=1), reduction="mean")
    return (1 - alpha) * F.cross_entropy(z_s, labels) + alpha * tau**2 * kl_mean


def test_the_authors_constants_give_the_weights_derived_in_the_docstring():
    assert AUTHORS_KL_CLASSES == 100
    assert REKD_SOFT_WEIGHT == pytest.approx(0.01)
    assert TFKD_REG_SOFT_WEIGHT == pytest.approx(1.0)
    assert 0.6 * 20.0**2 * REKD_SOFT_WEIGHT == pytest.approx(2.4)  # α τ² / 100 on KL_batchmean


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")  # the authors' reduction, on purpose
@pytest.mark.parametrize("alpha, tau, seed", [(0.6, 20.0, 10), (1.0, 20.0, 11), (0.6, 4.0, 12), (0.3, 1.0, 13)])
def test_rekd_loss_at_100_classes_is_the_authors_mean_reduced_kd_loss(alpha, tau, seed):
    """(1−α)CE + α·τ²·KL_batchmean/100 = the authors' (1−α)CE + α·τ²·KL_mean at K = 100, value and
    gradient; the weighted soft term alone is α·τ²·F.kl_div(..., reduction="mean")."""
    n_classes, batch = AUTHORS_KL_CLASSES, 16
    z1 = logits(batch, n_classes, seed=seed).requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    z_t = logits(batch, n_classes, seed=seed + 100)
    y = torch.randint(0, n_classes, (batch,), generator=torch.Generator().manual_seed(seed))
    ours = weighted_soft_target_loss(z1, z_t, y, temperature=tau, alpha=alpha)
    theirs = authors_kd_loss(z2, z_t, y, alpha, tau)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    # the soft term alone: the loss less its (1 − α)·CE
    z = z1.detach()
    soft = weighted_soft_target_loss(z, z_t, y, temperature=tau, alpha=alpha) - (1 - alpha) * F.cross_entropy(z, y)
    log_p_s, p_t = F.log_softmax(z / tau, 1), F.softmax(z_t / tau, 1)
    kl_mean = F.kl_div(log_p_s, p_t, reduction="mean")
    # "mean" is the elementwise mean over batch · classes (guards against a change of F.kl_div's "mean")
    torch.testing.assert_close(kl_mean, (p_t * (p_t.log() - log_p_s)).sum() / (batch * n_classes))
    torch.testing.assert_close(soft, alpha * tau**2 * kl_mean)
    torch.testing.assert_close(soft, alpha * soft_target_kl(z, z_t, tau) / 100)


def test_soft_weight_is_a_separate_multiplier_on_the_correct_kl():
    """soft_weight = 1 gives soft_targets.soft_target_loss; any weight scales only the soft term."""
    z, z_t = logits(6, K, seed=20), logits(6, K, seed=21)
    torch.testing.assert_close(weighted_soft_target_loss(z, z_t, LABELS, temperature=4.0, alpha=0.7, soft_weight=1.0),
                               soft_target_loss(z, z_t, LABELS, temperature=4.0, alpha=0.7))
    hard, kl = F.cross_entropy(z, LABELS), soft_target_kl(z, z_t, 4.0)
    for w in (0.01, 0.5, 3.0):
        torch.testing.assert_close(weighted_soft_target_loss(z, z_t, LABELS, temperature=4.0, alpha=0.7, soft_weight=w),
                                   0.3 * hard + 0.7 * w * kl)
    designed_kl = soft_target_kl(z, designed_distribution(LABELS, K).log(), 20.0)
    torch.testing.assert_close(tfkd_reg_loss(z, LABELS, alpha=0.4, soft_weight=0.25),
                               0.6 * hard + 0.4 * 0.25 * designed_kl)


def record_training(monkeypatch, record):
    """Replace training, whether the arms call the harness's `train` or `Context.fit`, by `record`."""
    def fake_train(model, *args, **kwargs):
        record(model, next(a for a in (*args, *kwargs.values()) if callable(a) and not isinstance(a, torch.nn.Module)))
        return []

    monkeypatch.setattr(reverse_distillation, "train", fake_train, raising=False)
    monkeypatch.setattr(Context, "fit", lambda self, model, *args, **kwargs: fake_train(model, *args, **kwargs),
                        raising=False)


def captured_batch_loss(monkeypatch, arm_fn, ctx):
    """Run an arm with training replaced by a recorder; return its student and the batch loss it built."""
    seen = {}
    record_training(monkeypatch, lambda model, batch_loss: seen.update(model=model, batch_loss=batch_loss))
    arm_fn(ctx)
    model = seen["model"]
    return (model[0] if isinstance(model, list) else model), seen["batch_loss"]


def test_the_re_kd_and_de_kd_arms_train_on_the_authors_effective_weight(tmp_path, monkeypatch):
    """The arms' batch loss is (1−α)CE + α·τ²·KL_batchmean/100 at α = 0.6, τ = 20, computed independently."""
    ctx = tiny_context(tmp_path, monkeypatch)
    monkeypatch.setattr(reverse_distillation, "TEACHER", ModelSpec("mlp", hidden=(16,)))
    x, y = ctx.split.x_train, ctx.split.y_train
    idx = torch.tensor([0, 3, 7, 12, 25, 39])
    for arm in EXPERIMENTS[0].arms[1:]:
        assert "1/100" in arm.label
        student, batch_loss = captured_batch_loss(monkeypatch, arm.train, ctx)
        teacher = ctx.teacher if arm.key == "reverse" else reverse_distillation.defective_teacher(ctx)
        with torch.no_grad():
            z_s, z_t = student(x[idx]), predict_logits(teacher, x)[idx]
            p_t = F.softmax(z_t / 20, 1)
            kl_batchmean = (p_t * (p_t.log() - F.log_softmax(z_s / 20, 1))).sum(1).mean()
            expected = 0.4 * F.cross_entropy(z_s, y[idx]) + 0.6 * 400 * kl_batchmean / 100
            torch.testing.assert_close(batch_loss(idx), expected)
            # not the earlier, 100 times stronger soft term
            assert not torch.allclose(batch_loss(idx), 0.4 * F.cross_entropy(z_s, y[idx]) + 0.6 * 400 * kl_batchmean)


def test_the_tfkd_reg_arm_trains_on_unit_soft_weight(tmp_path, monkeypatch):
    """Tf-KD_reg: the authors' multiplier 100 cancels their mean over 100 classes, so the weight is 1."""
    ctx = tiny_context(tmp_path, monkeypatch)
    x, y = ctx.split.x_train, ctx.split.y_train
    idx = torch.tensor([1, 2, 5, 30])
    student, batch_loss = captured_batch_loss(monkeypatch, EXPERIMENTS[1].arms[1].train, ctx)
    with torch.no_grad():
        z = student(x[idx])
        p_d = designed_distribution(y[idx], ctx.split.n_classes, 0.99)
        p_d_tau = F.softmax(p_d.log() / 20, 1)
        kl = (p_d_tau * (p_d_tau.log() - F.log_softmax(z / 20, 1))).sum(1).mean()
        torch.testing.assert_close(batch_loss(idx), 0.9 * F.cross_entropy(z, y[idx]) + 0.1 * 400 * kl)


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


@pytest.mark.parametrize("bad", [0.0, -0.01, float("nan"), float("inf"), True, False, "0.01", None])
def test_bad_soft_weight_raises_value_error_naming_it(bad, tmp_path, monkeypatch):
    z, z_t = logits(2, 3), logits(2, 3, seed=1)
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="soft_weight"):
        weighted_soft_target_loss(z, z_t, labels, soft_weight=bad)
    with pytest.raises(ValueError, match="soft_weight"):
        tfkd_reg_loss(z, labels, soft_weight=bad)
    ctx = tiny_context(tmp_path, monkeypatch)
    record_training(monkeypatch, lambda *a: pytest.fail("trained with a bad soft_weight"))
    with pytest.raises(ValueError, match="soft_weight"):
        student_taught_by(ctx.teacher, ctx, soft_weight=bad)
    with pytest.raises(ValueError, match="soft_weight"):
        reverse_distillation.tfkd_reg_student(ctx, soft_weight=bad)


@pytest.mark.parametrize("kwargs, word", [
    ({"alpha": 1.5}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"alpha": True}, "alpha"),
    ({"temperature": 0.0}, "temperature"),
])
def test_weighted_soft_target_loss_rejects_bad_alpha_and_temperature(kwargs, word):
    with pytest.raises(ValueError, match=word):
        weighted_soft_target_loss(logits(2, 3), logits(2, 3, seed=1), torch.tensor([0, 1]), **kwargs)


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
