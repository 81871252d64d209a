"""The math of relational knowledge distillation (Park et al. 2019): distance- and angle-wise
potentials, their invariances, and the traps around them."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from reference_impl.techniques.relational_kd import (
    angle_potential, distance_potential, rkd_angle_loss, rkd_distance_loss, rkd_loss,
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
