"""The math of similarity-preserving distillation (Tung & Mori 2019): the row-normalised
batch similarity matrices, the loss, its invariances, and the traps around them."""

from __future__ import annotations

import pytest
import torch

from torch.nn import functional as F

from reference_impl.harness import Context, TrainConfig
from reference_impl.harness.data import Split
from reference_impl.harness.models import ModelSpec, build_model
from reference_impl.techniques import similarity_preserving
from reference_impl.techniques.similarity_preserving import similarity_matrix, sp_loss, sp_objective


def activations(*shape, seed=0, scale=1.0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def test_similarity_matrix_is_the_row_normalised_gram_matrix():
    q = activations(6, 5, seed=1, dtype=torch.float64)
    g = q @ q.T
    expected = g / g.norm(dim=1, keepdim=True)
    torch.testing.assert_close(similarity_matrix(q), expected)


@pytest.mark.parametrize("width", [1, 3, 64, 500])
def test_rows_have_unit_norm_and_shape_is_batch_by_batch_whatever_the_width(width):
    g = similarity_matrix(activations(9, width, seed=width))
    assert g.shape == (9, 9)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(9))


def test_teacher_and_student_of_different_widths_and_layouts_are_compared():
    student, teacher = activations(8, 64, seed=2), activations(8, 32, 4, 4, seed=3)  # flat vs (C, H, W) map
    assert similarity_matrix(teacher).shape == similarity_matrix(student).shape == (8, 8)
    torch.testing.assert_close(similarity_matrix(teacher), similarity_matrix(teacher.flatten(1)))
    assert sp_loss(student, teacher) > 0


def test_loss_is_squared_frobenius_distance_over_batch_squared():
    s, t = activations(7, 5, seed=4), activations(7, 11, seed=5)
    by_hand = ((similarity_matrix(t) - similarity_matrix(s)) ** 2).sum() / 7**2
    torch.testing.assert_close(sp_loss(s, t), by_hand)
    assert not torch.allclose(sp_loss(s, t), by_hand * 7)  # divided by b², not by b


def test_zero_iff_the_normalised_similarities_match():
    t = activations(10, 6, seed=6, dtype=torch.float64)
    q, _ = torch.linalg.qr(activations(9, 9, seed=7, dtype=torch.float64))
    wider_rotated = torch.cat([t, torch.zeros(10, 3, dtype=torch.float64)], dim=1) @ q  # same Gram matrix, width 9
    assert sp_loss(wider_rotated, t).item() == pytest.approx(0.0, abs=1e-12)
    for seed in range(10):  # different similarities: strictly positive
        assert sp_loss(activations(10, 6, seed=seed + 20), t.float()) > 0
    # and the loss is exactly the distance between the normalised matrices: zero only where they agree
    s = activations(10, 6, seed=8, dtype=torch.float64)
    assert (similarity_matrix(s) - similarity_matrix(t)).abs().max() > 1e-3 and sp_loss(s, t) > 0


@pytest.mark.parametrize("c", [1e-3, 0.3, 5.0, 1e3])
def test_invariant_to_the_scale_of_either_side(c):
    s, t = activations(12, 8, seed=9), activations(12, 20, seed=10)
    reference = sp_loss(s, t)
    torch.testing.assert_close(sp_loss(c * s, t), reference, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(sp_loss(s, c * t), reference, rtol=1e-4, atol=1e-7)


def test_teacher_activations_carry_no_gradient():
    s = activations(8, 4, seed=11).requires_grad_()
    t = activations(8, 6, seed=12).requires_grad_()
    sp_loss(s, t).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_gradient_matches_finite_differences():
    s = activations(5, 3, seed=13, dtype=torch.float64).requires_grad_()
    t = activations(5, 7, seed=14, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: sp_loss(x, t), (s,))


def test_an_all_zero_activation_row_gives_a_finite_gradient():
    """An input whose activations are all 0 (every ReLU off) has a zero Gram row: it stays 0
    instead of F.normalize's division by eps, which would send a 1e12 gradient to the student."""
    s = activations(6, 4, seed=15).relu()
    s[3] = 0.0
    s.requires_grad_()
    loss = sp_loss(s, activations(6, 5, seed=16))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert s.grad.abs().max() < 10


def test_gradient_descent_on_the_student_matches_the_teacher_similarities():
    t = activations(16, 10, seed=17).relu()
    s = activations(16, 4, seed=18).requires_grad_()
    optimiser = torch.optim.Adam([s], lr=0.05)
    start = sp_loss(s, t).item()
    for _ in range(300):
        optimiser.zero_grad()
        sp_loss(s, t).backward()
        optimiser.step()
    assert sp_loss(s, t).item() < 0.1 * start


@pytest.mark.parametrize("student, teacher, word", [
    (torch.randn(8), torch.randn(8, 4), "student_activations"),
    (torch.randn(8, 4), torch.randn(8), "teacher_activations"),
    (torch.randn(8, 4), torch.randn(6, 4), "teacher_activations"),
    (torch.full((8, 4), float("nan")), torch.randn(8, 4), "student_activations"),
    (torch.randn(8, 4), torch.full((8, 4), float("inf")), "teacher_activations"),
    ([[1.0, 2.0]], torch.randn(1, 2), "student_activations"),
])
def test_bad_input_raises_value_error_naming_it(student, teacher, word):
    with pytest.raises(ValueError, match=word):
        sp_loss(student, teacher)


# The "+KD" comparison: its reference arm must be the treatment without the SP term.

def ce_plus_t2_kl(z_s, z_t, y, temperature):
    """CE + T² · KL(p_t^T ‖ p_s^T), written out independently of the module."""
    log_p_s = torch.log_softmax(z_s / temperature, dim=1)
    p_t = torch.softmax(z_t / temperature, dim=1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(dim=1).mean()
    return F.cross_entropy(z_s, y) + temperature**2 * kl


def toy_context():
    g = torch.Generator().manual_seed(27)
    x = torch.randn(24, 6, generator=g)
    y = torch.randint(0, 3, (24,), generator=g)
    split = Split("toy", x, y, x, y, 3, (6,))
    torch.manual_seed(28)
    teacher = build_model(ModelSpec("mlp", hidden=(9,)), split).eval()
    with torch.no_grad():
        z_t = 5 * teacher(x)  # sharper than an untrained net's, so that a change of T or weight shows in the KL
    return Context(split, teacher, z_t, ModelSpec("mlp", hidden=(5,)), TrainConfig(epochs=1), seed=0)


def batch_losses_of(arms, ctx, monkeypatch, module):
    """Each arm's student and batch loss, with training replaced by recording them (through the
    module's `train` or the context's `fit`, whichever the arm trains with)."""
    seen = {}
    for arm in arms:
        def record(modules, n_samples, batch_loss, *args, key=arm.key, **kwargs):
            seen[key] = (modules[0] if isinstance(modules, list) else modules, batch_loss)
            return []
        monkeypatch.setattr(module, "train", record, raising=False)
        monkeypatch.setattr(ctx, "fit", record, raising=False)
        arm.train(ctx)
    assert set(seen) == {arm.key for arm in arms}, "an arm trained without going through the module's training call"
    return seen


def test_objective_with_and_without_the_sp_term_differs_by_it_alone():
    """The sp+kd and kd arms train on sp_objective with the same CE/KL weights (1 and 1), so
    their losses on the same batch differ by γ L_SP exactly; the old kd arm,
    0.1 · CE + 0.9 · T² KL, does not."""
    z_s, z_t = activations(12, 5, seed=22, scale=3.0, dtype=torch.float64), activations(12, 5, seed=23, scale=3.0,
                                                                                       dtype=torch.float64)
    f_s, f_t = activations(12, 4, seed=24, dtype=torch.float64), activations(12, 7, seed=25, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=torch.Generator().manual_seed(26))
    treatment = sp_objective(z_s, f_s, f_t, y, z_t, kd_temperature=4.0)
    reference = sp_objective(z_s, f_s, f_t, y, z_t, kd_temperature=4.0, gamma=0.0)
    sp_term = 3000 * sp_loss(f_s, f_t)
    assert sp_term > 0
    torch.testing.assert_close(treatment - reference, sp_term)
    torch.testing.assert_close(reference, ce_plus_t2_kl(z_s, z_t, y, 4.0))
    old_kd_arm = 0.1 * F.cross_entropy(z_s, y) + 0.9 * (ce_plus_t2_kl(z_s, z_t, y, 4.0) - F.cross_entropy(z_s, y))
    assert (reference - old_kd_arm).abs() > 1e-3  # the test tells the two weightings apart
    torch.testing.assert_close(sp_objective(z_s, f_s, f_t, y, None, kd_temperature=None),
                               F.cross_entropy(z_s, y) + sp_term)


def test_the_kd_arm_is_the_sp_kd_arm_without_sp(monkeypatch):
    """The arms of sp-complements-kd, run on one batch: same student, same batch, and the
    treatment's loss minus the reference's is the SP term, the reference being CE + T² KL (T = 4)."""
    experiment = next(e for e in similarity_preserving.EXPERIMENTS if e.key == "sp-complements-kd")
    assert (experiment.claim.treatment, experiment.claim.reference) == ("sp+kd", "kd")
    assert experiment.arms[0].key == "baseline"
    ctx = toy_context()
    seen = batch_losses_of([experiment.arm("kd"), experiment.arm("sp+kd")], ctx, monkeypatch, similarity_preserving)
    (student, reference_loss), (other, treatment_loss) = seen["kd"], seen["sp+kd"]
    for a, b in zip(student.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)  # the same initial student in both arms
    idx = torch.tensor([3, 17, 0, 9, 21, 5, 12, 8])
    x, y = ctx.split.x_train[idx], ctx.split.y_train[idx]
    with torch.no_grad():
        f_s = student.features(x)
        reference, treatment = reference_loss(idx), treatment_loss(idx)
        expected_reference = ce_plus_t2_kl(student.head(f_s).double(), ctx.teacher_train_logits[idx].double(), y, 4.0)
        sp_term = 3000 * sp_loss(f_s, ctx.teacher_train_features[idx])
    torch.testing.assert_close(reference.double(), expected_reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(treatment - reference, sp_term, rtol=1e-5, atol=1e-4)
    assert sp_term > 1e-3


@pytest.mark.parametrize("kwargs, word", [
    ({"gamma": -1.0}, "gamma"), ({"gamma": float("inf")}, "gamma"), ({"gamma": True}, "gamma"),
    ({"kd_temperature": -4.0}, "kd_temperature"),
    ({"kd_temperature": 4.0, "teacher_logits": None}, "teacher_logits"),
    ({"labels": torch.tensor([0, 1, 3, 2])}, "labels"),
])
def test_bad_objective_input_raises_value_error_naming_it(kwargs, word):
    args = {"logits": torch.randn(4, 3), "features_s": torch.randn(4, 2), "features_t": torch.randn(4, 5),
            "labels": torch.tensor([0, 1, 2, 2]), "teacher_logits": torch.randn(4, 3), "kd_temperature": None} | kwargs
    with pytest.raises(ValueError, match=word):
        sp_objective(**args)
