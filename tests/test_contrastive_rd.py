"""The math of contrastive representation distillation (Tian et al. 2020): the embedding heads,
the NCE critic loss, the memory bank, and the traps around them (alignment of positives,
a frozen teacher with a trained head)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from reference_impl.techniques.contrastive_rd import CRDLoss, Embed, nce_loss


def unit(*shape, seed=0, dtype=torch.float32):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def test_embeddings_of_different_widths_land_normalised_in_the_same_space():
    torch.manual_seed(0)
    g_s, g_t = Embed(64, 128), Embed(128, 128)
    s, t = g_s(torch.randn(10, 64) * 50), g_t(torch.randn(10, 128) * 0.01)
    assert s.shape == t.shape == (10, 128)
    torch.testing.assert_close(s.norm(dim=1), torch.ones(10))
    torch.testing.assert_close(t.norm(dim=1), torch.ones(10))


def test_nce_loss_matches_the_critic_formula():
    """h = p / (p + N/M), p = e^{score/τ}/Z; loss = −mean_i [log h(pos_i) + Σ_j log(1 − h(neg_ij))]."""
    a, p = unit(6, 8, seed=1, dtype=torch.float64), unit(6, 8, seed=2, dtype=torch.float64)
    neg = unit(20, 8, seed=3, dtype=torch.float64)
    tau, m, log_z = 0.1, 500, 3.0
    density = lambda score: torch.exp(score / tau) / math.exp(log_z)  # noqa: E731
    noise = 20 / m
    h_pos = density((a * p).sum(1)) / (density((a * p).sum(1)) + noise)
    h_neg = density(a @ neg.T) / (density(a @ neg.T) + noise)
    by_hand = -(h_pos.log() + (1 - h_neg).log().sum(1)).mean()
    torch.testing.assert_close(nce_loss(a, p, neg, temperature=tau, n_data=m, log_normaliser=log_z), by_hand)


def test_loss_decreases_as_the_student_embedding_moves_towards_the_teacher_embedding_of_the_same_input():
    # student and teacher embeddings in the first 16 dimensions, negatives in the other 16: every
    # negative score stays 0, so only the positive pairs change as the student moves
    teacher = F.pad(unit(16, 16, seed=4), (0, 16))
    student = F.pad(unit(16, 16, seed=5), (0, 16))
    negatives = F.pad(unit(256, 16, seed=6), (16, 0))
    losses = []
    for step in torch.linspace(0, 1, 11):
        moved = F.normalize(student + step * (teacher - student), dim=1)
        losses.append(nce_loss(moved, teacher, negatives, temperature=0.07, n_data=4000, log_normaliser=9.0).item())
    assert all(a > b for a, b in zip(losses, losses[1:]))
    # with unconstrained random negatives too: a student equal to the teacher scores far better than a random one
    negatives = unit(256, 32, seed=6)
    teacher, student = unit(16, 32, seed=4), unit(16, 32, seed=5)
    kwargs = dict(temperature=0.07, n_data=4000, log_normaliser=9.0)
    assert nce_loss(teacher, teacher, negatives, **kwargs) < nce_loss(student, teacher, negatives, **kwargs) - 5


def test_loss_increases_as_a_negative_moves_towards_the_anchor():
    anchor, positive = unit(1, 8, seed=10), unit(1, 8, seed=11)
    others = unit(20, 8, seed=12)
    losses = []
    for step in torch.linspace(0, 1, 6):
        negatives = torch.cat([F.normalize(others[:1] + step * (anchor - others[:1]), dim=1), others[1:]])
        losses.append(nce_loss(anchor, positive, negatives, temperature=0.07, n_data=1000, log_normaliser=5.0).item())
    assert all(a < b for a, b in zip(losses, losses[1:]))


def test_positives_are_same_index_pairs_shuffling_one_side_raises_the_loss():
    teacher = unit(32, 16, seed=7)
    student = F.normalize(teacher + 0.3 * unit(32, 16, seed=8), dim=1)  # aligned row by row
    negatives = unit(128, 16, seed=9)
    kwargs = dict(temperature=0.07, n_data=4000, log_normaliser=9.0)
    aligned = nce_loss(student, teacher, negatives, **kwargs)
    for seed in range(5):
        perm = torch.randperm(32, generator=torch.Generator().manual_seed(seed))
        assert nce_loss(student, teacher[perm], negatives, **kwargs) > aligned + 1.0
        assert nce_loss(student[perm], teacher, negatives, **kwargs) > aligned + 1.0


def make_crd(n_data=40, width=16, seed=0):
    """A CRD loss whose two heads are the same map, so that identical features give identical embeddings."""
    torch.manual_seed(seed)
    crd = CRDLoss(width, width, n_data, embed_dim=8, n_negatives=32)
    crd.embed_teacher.load_state_dict(crd.embed_student.state_dict())
    features = torch.randn(n_data, width)
    crd.initialise_memory(features, features)
    crd.log_normaliser.fill_(5.0)  # fixed Z so that losses are comparable
    return crd, features


def test_memory_bank_alignment_shuffled_features_raise_the_loss():
    crd, features = make_crd()
    idx = torch.arange(0, 40, 2)
    torch.manual_seed(1)
    aligned = copy.deepcopy(crd)(features[idx], features[idx], idx)
    torch.manual_seed(1)  # the same negatives
    shuffled = copy.deepcopy(crd)(features[idx.flip(0)], features[idx], idx)  # student rows misaligned with idx
    assert shuffled > aligned + 1.0


def test_memory_is_updated_with_momentum_and_renormalised_only_for_the_batch():
    crd, features = make_crd()
    before_s, before_t = crd.student_memory.clone(), crd.teacher_memory.clone()
    idx = torch.tensor([3, 7, 11])
    new = torch.randn(3, 16)
    crd(new, new * 2, idx)
    with torch.no_grad():
        expected_s = F.normalize(0.5 * before_s[idx] + 0.5 * crd.embed_student(new), dim=1)
    torch.testing.assert_close(crd.student_memory[idx], expected_s)
    torch.testing.assert_close(crd.student_memory.norm(dim=1), torch.ones(40))
    others = torch.ones(40, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(crd.student_memory[others], before_s[others])
    assert torch.equal(crd.teacher_memory[others], before_t[others])
    assert not torch.equal(crd.teacher_memory[idx], before_t[idx])


def test_normalising_constant_is_estimated_once_on_the_first_batch():
    """Z = M · mean e^{score/τ} over the first batch's positive and negative scores (RepDistiller)."""
    torch.manual_seed(2)
    crd = CRDLoss(6, 10, 50, embed_dim=8, n_negatives=16)
    assert torch.isnan(crd.log_normaliser).all()
    idx = torch.arange(8)
    s_features, t_features = torch.randn(8, 6), torch.randn(8, 10)
    teacher_memory = crd.teacher_memory.clone()
    torch.manual_seed(5)
    crd(s_features, t_features, idx)
    torch.manual_seed(5)
    negatives = torch.randint(50, (16,))  # the draw the forward pass made
    with torch.no_grad():
        anchor = crd.embed_student(s_features)
        scores = torch.cat([(anchor * teacher_memory[idx]).sum(1), (anchor @ teacher_memory[negatives].T).flatten()])
    expected = math.log(50 * torch.exp(scores / 0.07).double().mean().item())
    assert crd.log_normaliser[0].item() == pytest.approx(expected, rel=1e-4)
    first = crd.log_normaliser.clone()
    assert torch.isfinite(first).all()
    crd(torch.randn(8, 6), torch.randn(8, 10), idx + 8)
    assert torch.equal(crd.log_normaliser, first)


def test_teacher_is_frozen_but_its_head_learns():
    torch.manual_seed(3)
    crd = CRDLoss(6, 10, 30, embed_dim=8, n_negatives=16)
    student_features = torch.randn(5, 6, requires_grad=True)
    teacher_features = torch.randn(5, 10, requires_grad=True)  # as if it came from a network with gradients
    crd(student_features, teacher_features, torch.arange(5)).backward()
    assert teacher_features.grad is None
    assert student_features.grad is not None and student_features.grad.abs().sum() > 0
    assert crd.embed_teacher.linear.weight.grad.abs().sum() > 0  # g_T is trained, as in the paper
    assert crd.embed_student.linear.weight.grad.abs().sum() > 0
    assert not any(b.requires_grad for b in crd.buffers())  # the memory bank is not a parameter


@pytest.mark.parametrize("kwargs, word", [
    ({"anchor": torch.randn(4, 8), "positive": torch.randn(5, 8)}, "positive"),
    ({"negatives": torch.randn(10, 7)}, "negatives"),
    ({"anchor": torch.full((4, 8), float("nan"))}, "anchor"),
    ({"anchor": torch.randn(4)}, "anchor"),
    ({"temperature": 0.0}, "temperature"),
    ({"n_data": 0}, "n_data"),
])
def test_bad_nce_input_raises_value_error_naming_it(kwargs, word):
    args = {"anchor": torch.randn(4, 8), "positive": torch.randn(4, 8), "negatives": torch.randn(10, 8),
            "temperature": 0.07, "n_data": 100, **kwargs}
    with pytest.raises(ValueError, match=word):
        nce_loss(args.pop("anchor"), args.pop("positive"), args.pop("negatives"), **args)


@pytest.mark.parametrize("student, teacher, indices, word", [
    (torch.randn(4, 5), torch.randn(4, 10), torch.arange(4), "student_features"),
    (torch.randn(4, 6), torch.randn(4, 9), torch.arange(4), "teacher_features"),
    (torch.randn(4, 6), torch.randn(3, 10), torch.arange(4), "teacher_features"),
    (torch.randn(4, 6), torch.randn(4, 10), torch.arange(3), "indices"),
    (torch.randn(4, 6), torch.randn(4, 10), torch.tensor([0, 1, 2, 30]), "indices"),
    (torch.randn(4, 6), torch.randn(4, 10), torch.tensor([0.0, 1.0, 2.0, 3.0]), "indices"),
    (torch.full((4, 6), float("inf")), torch.randn(4, 10), torch.arange(4), "student_features"),
])
def test_bad_crd_input_raises_value_error_naming_it(student, teacher, indices, word):
    crd = CRDLoss(6, 10, 30, embed_dim=8, n_negatives=16)
    with pytest.raises(ValueError, match=word):
        crd(student, teacher, indices)


@pytest.mark.parametrize("kwargs, word", [({"temperature": -0.1}, "temperature"), ({"momentum": 1.0}, "momentum")])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CRDLoss(6, 10, 30, **kwargs)
