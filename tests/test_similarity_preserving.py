"""The math of similarity-preserving distillation (Tung & Mori 2019): the row-normalised
batch similarity matrices, the loss, its invariances, and the traps around them."""

from __future__ import annotations

import pytest
import torch

from reference_impl.techniques.similarity_preserving import similarity_matrix, sp_loss


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
