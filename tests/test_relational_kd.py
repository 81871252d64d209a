"""The math of relational knowledge distillation (Park et al. 2019): distance- and angle-wise
potentials, their invariances, and the traps around them."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import Context, TrainConfig
from reference_impl.harness.data import Split
from reference_impl.harness.models import ModelSpec, build_model
from reference_impl.techniques import relational_kd
from reference_impl.techniques.relational_kd import (
    angle_potential, distance_potential, rkd_angle_loss, rkd_distance_loss, rkd_loss, rkd_objective,
)


def embeddings(*shape, seed=0, scale=1.0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


def huber(a, b):
    d = (a - b).abs()
    return torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()


def test_distance_potential_is_distance_over_mean_off_diagonal_distance():
    e = embeddings(7, 5, seed=1, dtype=torch.float64)
    d = torch.cdist(e, e)
    mu = d.sum() / (7 * 6)  # mean over pairs i != j
    torch.testing.assert_close(distance_potential(e), d / mu)
    assert distance_potential(e)[~torch.eye(7, dtype=torch.bool)].mean().item() == pytest.approx(1.0)


def mu_by_loops(e):
    """Eq. (4) written out: the mean of ‖e_i − e_j‖₂ over the ordered pairs i ≠ j with a distance > 0."""
    total, count = 0.0, 0
    for i in range(len(e)):
        for j in range(len(e)):
            d = torch.linalg.vector_norm(e[i] - e[j]).item()
            if i != j and d > 0:
                total, count = total + d, count + 1
    return total / count


@pytest.mark.parametrize("duplicates", [(), ((3, 1),), ((3, 1), (5, 1), (6, 2))])
def test_mu_is_the_mean_distance_over_the_pairs_at_a_positive_distance(duplicates):
    """μ counts neither the zero diagonal nor pairs of inputs with the same embedding, as the
    authors' code (mean of the positive entries); b(b − 1) or b² would shrink μ with each duplicate."""
    e = embeddings(8, 5, seed=19, dtype=torch.float64)
    for copy, original in duplicates:
        e[copy] = e[original]
    d = torch.tensor([[torch.linalg.vector_norm(e[i] - e[j]).item() for j in range(8)] for i in range(8)],
                     dtype=torch.float64)
    mu = mu_by_loops(e)
    torch.testing.assert_close(distance_potential(e), d / mu)
    positive = d > 0
    assert distance_potential(e)[~positive].eq(0).all()
    assert distance_potential(e)[positive].mean().item() == pytest.approx(1.0)
    if duplicates:  # the old normaliser, over all b(b − 1) off-diagonal pairs, differs
        assert mu != pytest.approx(d.sum().item() / (8 * 7))
    for c in (1e-3, 7.0, 1e3):  # and ψ_D stays invariant to the scale of the embedding
        torch.testing.assert_close(distance_potential(c * e), distance_potential(e))


def test_distance_loss_with_duplicate_embeddings_is_scale_invariant_and_all_coincident_is_zero():
    s, t = embeddings(10, 4, seed=20), embeddings(10, 6, seed=21)
    s[4] = s[0]
    t[7] = t[2]
    reference = rkd_distance_loss(s, t)
    for c in (1e-2, 30.0):
        torch.testing.assert_close(rkd_distance_loss(c * s, t), reference, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(rkd_distance_loss(s, c * t), reference, rtol=1e-4, atol=1e-6)
    collapsed = torch.ones(5, 3)  # every pair coincides: no pair at d > 0, ψ_D = 0 rather than 0/0
    assert distance_potential(collapsed).eq(0).all()


def test_angle_potential_is_the_cosine_at_the_middle_point():
    e = embeddings(5, 4, seed=2, dtype=torch.float64)
    psi = angle_potential(e)
    for i, j, k in itertools.product(range(5), repeat=3):
        if j in (i, k):
            assert psi[j, i, k] == 0  # no angle at a point with itself
            continue
        expected = F.cosine_similarity(e[i] - e[j], e[k] - e[j], dim=0)
        assert psi[j, i, k].item() == pytest.approx(expected.item(), abs=1e-10)


def test_losses_are_huber_averaged_over_pairs_and_triplets():
    s, t = embeddings(6, 4, seed=3), embeddings(6, 9, seed=4)
    torch.testing.assert_close(rkd_distance_loss(s, t), huber(distance_potential(s), distance_potential(t)))
    torch.testing.assert_close(rkd_angle_loss(s, t), huber(angle_potential(s), angle_potential(t)))
    torch.testing.assert_close(rkd_loss(s, t), 25 * rkd_distance_loss(s, t) + 50 * rkd_angle_loss(s, t))
    torch.testing.assert_close(rkd_loss(s, t, angle_weight=0), 25 * rkd_distance_loss(s, t))
    torch.testing.assert_close(rkd_loss(s, t, distance_weight=0, angle_weight=1.0), rkd_angle_loss(s, t))


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0, 1e3])
def test_distance_loss_is_invariant_to_the_scale_of_either_embedding(c):
    s, t = embeddings(16, 8, seed=5), embeddings(16, 12, seed=6)
    reference = rkd_distance_loss(s, t)
    torch.testing.assert_close(rkd_distance_loss(c * s, t), reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(rkd_distance_loss(s, c * t), reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("c, shift", [(1e-2, 3.0), (4.0, -10.0), (100.0, 0.5)])
def test_angle_loss_is_invariant_to_scale_and_translation(c, shift):
    s, t = embeddings(12, 8, seed=7), embeddings(12, 12, seed=8)
    reference = rkd_angle_loss(s, t)
    torch.testing.assert_close(rkd_angle_loss(c * s + shift, t), reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(rkd_angle_loss(s, c * t + shift), reference, rtol=1e-4, atol=1e-6)
    # distances are translation invariant too
    torch.testing.assert_close(rkd_distance_loss(s + shift, t - shift), rkd_distance_loss(s, t), rtol=1e-4, atol=1e-6)


def test_zero_when_the_student_is_the_teacher_up_to_scale_rotation_and_width():
    t = embeddings(10, 6, seed=9, dtype=torch.float64)
    q, _ = torch.linalg.qr(embeddings(9, 9, seed=10, dtype=torch.float64))
    wider = torch.cat([t, torch.zeros(10, 3, dtype=torch.float64)], dim=1)
    s = 3.5 * wider @ q + 2.0  # wider, rotated, scaled and shifted
    assert rkd_distance_loss(s, t).item() == pytest.approx(0.0, abs=1e-12)
    assert rkd_angle_loss(s, t).item() == pytest.approx(0.0, abs=1e-12)
    assert rkd_loss(0.01 * t, t).item() == pytest.approx(0.0, abs=1e-12)


def test_positive_when_the_structures_differ():
    for seed in range(10):
        s, t = embeddings(8, 4, seed=seed), embeddings(8, 4, seed=seed + 50)
        assert rkd_distance_loss(s, t) > 0 and rkd_angle_loss(s, t) > 0


def test_teacher_embeddings_carry_no_gradient():
    s = embeddings(8, 4, seed=11).requires_grad_()
    t = embeddings(8, 6, seed=12).requires_grad_()
    rkd_loss(s, t).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_gradients_match_finite_differences():
    s = embeddings(5, 3, seed=13, dtype=torch.float64).requires_grad_()
    t = embeddings(5, 4, seed=14, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: rkd_distance_loss(x, t), (s,))
    assert torch.autograd.gradcheck(lambda x: rkd_angle_loss(x, t), (s,))
    assert torch.autograd.gradcheck(lambda x: angle_potential(x), (s,))


def test_duplicate_or_all_zero_student_embeddings_give_finite_gradients():
    """Two inputs with the same embedding (e.g. every ReLU off) have no direction between them:
    the potentials treat them as coincident instead of dividing by zero."""
    s = embeddings(6, 4, seed=15)
    s[2] = s[1]
    s[4] = 0.0
    s[5] = 0.0
    s.requires_grad_()
    loss = rkd_loss(s, embeddings(6, 5, seed=16))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert rkd_loss(torch.zeros(4, 3), embeddings(4, 3)).isfinite()  # a collapsed student


def test_gradient_descent_on_the_student_recovers_the_teacher_structure():
    t = embeddings(12, 6, seed=17)
    s = embeddings(12, 3, seed=18).requires_grad_()
    optimiser = torch.optim.Adam([s], lr=0.05)
    start = rkd_loss(s, t).item()
    for _ in range(300):
        optimiser.zero_grad()
        rkd_loss(s, t).backward()
        optimiser.step()
    assert rkd_loss(s, t).item() < 0.2 * start


@pytest.mark.parametrize("student, teacher, word", [
    (torch.randn(8), torch.randn(8, 4), "student_embeddings"),
    (torch.randn(8, 4), torch.randn(8, 4, 2), "teacher_embeddings"),
    (torch.randn(8, 4), torch.randn(7, 4), "teacher_embeddings"),
    (torch.full((8, 4), float("nan")), torch.randn(8, 4), "student_embeddings"),
    (torch.randn(8, 4), torch.full((8, 4), float("inf")), "teacher_embeddings"),
    (torch.randn(2, 4), torch.randn(2, 4), "at least 3"),
])
def test_bad_embeddings_raise_value_error_naming_them(student, teacher, word):
    with pytest.raises(ValueError, match=word):
        rkd_loss(student, teacher)


def test_distance_needs_two_and_angle_three_samples():
    with pytest.raises(ValueError, match="at least 2"):
        rkd_distance_loss(torch.randn(1, 3), torch.randn(1, 3))
    rkd_distance_loss(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="at least 3"):
        rkd_angle_loss(torch.randn(2, 3), torch.randn(2, 3))


@pytest.mark.parametrize("kwargs, word", [
    ({"distance_weight": -1.0}, "distance_weight"), ({"angle_weight": float("nan")}, "angle_weight"),
    ({"angle_weight": True}, "angle_weight"),
])
def test_bad_weights_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        rkd_loss(torch.randn(4, 3), torch.randn(4, 3), **kwargs)


# The "+KD" comparison: its reference arm must be the treatment without the relational term.

def logits(*shape, seed=0):
    return embeddings(*shape, seed=seed, scale=3.0, dtype=torch.float64)


def ce_plus_t2_kl(z_s, z_t, y, temperature):
    """CE + T² · KL(p_t^T ‖ p_s^T), written out independently of the module."""
    log_p_s = torch.log_softmax(z_s / temperature, dim=1)
    p_t = torch.softmax(z_t / temperature, dim=1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(dim=1).mean()
    return F.cross_entropy(z_s, y) + temperature**2 * kl


def test_objective_with_and_without_the_relational_term_differs_by_it_alone():
    """The rkd+kd and kd arms train on rkd_objective with the same CE/KL weights (1 and 1), so
    their losses on the same batch differ by λ_D L_D + λ_A L_A exactly; the old kd arm,
    0.1 · CE + 0.9 · T² KL, does not."""
    z_s, z_t = logits(12, 5, seed=22), logits(12, 5, seed=23)
    f_s, f_t = embeddings(12, 4, seed=24, dtype=torch.float64), embeddings(12, 7, seed=25, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=torch.Generator().manual_seed(26))
    treatment = rkd_objective(z_s, f_s, f_t, y, z_t, kd_temperature=4.0)
    reference = rkd_objective(z_s, f_s, f_t, y, z_t, kd_temperature=4.0, distance_weight=0, angle_weight=0)
    relational = 25 * rkd_distance_loss(f_s, f_t) + 50 * rkd_angle_loss(f_s, f_t)
    assert relational > 0
    torch.testing.assert_close(treatment - reference, relational)
    torch.testing.assert_close(reference, ce_plus_t2_kl(z_s, z_t, y, 4.0))
    old_kd_arm = 0.1 * F.cross_entropy(z_s, y) + 0.9 * (ce_plus_t2_kl(z_s, z_t, y, 4.0) - F.cross_entropy(z_s, y))
    assert (reference - old_kd_arm).abs() > 1e-3  # the test tells the two weightings apart
    # without KD: CE + the relational term
    torch.testing.assert_close(rkd_objective(z_s, f_s, f_t, y, None, kd_temperature=None),
                               F.cross_entropy(z_s, y) + relational)


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


def test_the_kd_arm_is_the_rkd_kd_arm_without_rkd(monkeypatch):
    """The arms of rkd-complements-kd, run on one batch: same student, same batch, and the
    treatment's loss minus the reference's is the RKD term, the reference being CE + T² KL (T = 4)."""
    experiment = next(e for e in relational_kd.EXPERIMENTS if e.key == "rkd-complements-kd")
    assert (experiment.claim.treatment, experiment.claim.reference) == ("rkd+kd", "kd")
    assert experiment.arms[0].key == "baseline"
    ctx = toy_context()
    seen = batch_losses_of([experiment.arm("kd"), experiment.arm("rkd+kd")], ctx, monkeypatch, relational_kd)
    (student, reference_loss), (other, treatment_loss) = seen["kd"], seen["rkd+kd"]
    for a, b in zip(student.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)  # the same initial student in both arms
    idx = torch.tensor([3, 17, 0, 9, 21, 5, 12, 8])
    x, y = ctx.split.x_train[idx], ctx.split.y_train[idx]
    with torch.no_grad():
        f_s = student.features(x)
        reference, treatment = reference_loss(idx), treatment_loss(idx)
        expected_reference = ce_plus_t2_kl(student.head(f_s).double(), ctx.teacher_train_logits[idx].double(), y, 4.0)
        relational = rkd_loss(f_s, ctx.teacher_train_features[idx])
    torch.testing.assert_close(reference.double(), expected_reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(treatment - reference, relational, rtol=1e-5, atol=1e-5)
    assert relational > 1e-3


@pytest.mark.parametrize("kwargs, word", [
    ({"kd_temperature": 0.0}, "kd_temperature"),
    ({"kd_temperature": 4.0, "teacher_logits": None}, "teacher_logits"),
    ({"kd_temperature": None, "labels": torch.tensor([0, 1, 7, 2])}, "labels"),
    ({"kd_temperature": None, "distance_weight": -1.0}, "distance_weight"),
])
def test_bad_objective_input_raises_value_error_naming_it(kwargs, word):
    args = {"logits": torch.randn(4, 3), "features_s": torch.randn(4, 2), "features_t": torch.randn(4, 5),
            "labels": torch.tensor([0, 1, 2, 2]), "teacher_logits": torch.randn(4, 3)} | kwargs
    with pytest.raises(ValueError, match=word):
        rkd_objective(**args)
