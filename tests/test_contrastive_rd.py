"""The math of contrastive representation distillation (Tian et al. 2020): the embedding heads,
the NCE critic loss, the memory bank, and the traps around them (alignment of positives,
negatives from other classes only, a frozen teacher with a trained head)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.nn import functional as F

from reference_impl.techniques.contrastive_rd import CRDLoss, Embed, nce_loss


def unit(*shape, seed=0, dtype=torch.float32):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype), dim=-1)


def cycle_labels(n, n_classes=3):
    return torch.arange(n) % n_classes


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
    crd = CRDLoss(width, width, n_data, cycle_labels(n_data), embed_dim=8, n_negatives=16)
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
    crd = CRDLoss(6, 10, 50, cycle_labels(50), embed_dim=8, n_negatives=16)
    assert torch.isnan(crd.log_normaliser).all()
    idx = torch.arange(8)
    s_features, t_features = torch.randn(8, 6), torch.randn(8, 10)
    teacher_memory = crd.teacher_memory.clone()
    torch.manual_seed(5)
    crd(s_features, t_features, idx)
    torch.manual_seed(5)
    negatives = crd.draw_negatives(idx)  # (8, 16): the draw the forward pass made
    with torch.no_grad():
        anchor = crd.embed_student(s_features)
        negative_scores = torch.einsum("bd,bnd->bn", anchor, teacher_memory[negatives])
        scores = torch.cat([(anchor * teacher_memory[idx]).sum(1), negative_scores.flatten()])
    expected = math.log(50 * torch.exp(scores / 0.07).double().mean().item())
    assert crd.log_normaliser[0].item() == pytest.approx(expected, rel=1e-4)
    first = crd.log_normaliser.clone()
    assert torch.isfinite(first).all()
    crd(torch.randn(8, 6), torch.randn(8, 10), idx + 8)
    assert torch.equal(crd.log_normaliser, first)


def test_teacher_is_frozen_but_its_head_learns():
    torch.manual_seed(3)
    crd = CRDLoss(6, 10, 30, cycle_labels(30), embed_dim=8, n_negatives=16)
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
    ({"negatives": torch.randn(3, 10, 8)}, "negatives"),  # per-anchor negatives for 3 anchors, not 4
    ({"negatives": torch.randn(4, 10, 7)}, "negatives"),
    ({"negatives": torch.randn(4, 10, 8, 1)}, "negatives"),
    ({"negatives": torch.full((4, 10, 8), float("nan"))}, "negatives"),
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
    crd = CRDLoss(6, 10, 30, cycle_labels(30), embed_dim=8, n_negatives=16)
    with pytest.raises(ValueError, match=word):
        crd(student, teacher, indices)


@pytest.mark.parametrize("kwargs, word", [({"temperature": -0.1}, "temperature"), ({"momentum": 1.0}, "momentum"),
                                           ({"n_negatives": 0}, "n_negatives")])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        CRDLoss(6, 10, 30, cycle_labels(30), **kwargs)


def test_nce_loss_with_per_anchor_negatives_matches_eq_18_by_hand():
    """Each anchor with its own negatives: h = p / (p + N/M), p = e^{score/τ}/Z, computed in plain floats."""
    a, p = unit(3, 4, seed=20, dtype=torch.float64), unit(3, 4, seed=21, dtype=torch.float64)
    neg = unit(3, 5, 4, seed=22, dtype=torch.float64)  # anchor i has negatives neg[i, 0..4]
    tau, m, log_z = 0.2, 40, 1.5
    noise = 5 / m
    total = 0.0
    for i in range(3):
        def h(u):
            density = math.exp(sum(float(a[i, k]) * float(u[k]) for k in range(4)) / tau - log_z)
            return density / (density + noise)
        total += -math.log(h(p[i])) - sum(math.log(1 - h(neg[i, j])) for j in range(5))
    loss = nce_loss(a, p, neg, temperature=tau, n_data=m, log_normaliser=log_z)
    assert loss.item() == pytest.approx(total / 3, rel=1e-12)
    # other anchors' negatives do not count: a shared bank of all 15 negatives gives a different loss
    assert nce_loss(a, p, neg.reshape(15, 4), temperature=tau, n_data=m, log_normaliser=log_z).item() \
        != pytest.approx(total / 3, rel=1e-3)
    # shared (N, D) negatives are the per-anchor case with the same negatives for every anchor
    shared = unit(5, 4, seed=23, dtype=torch.float64)
    torch.testing.assert_close(nce_loss(a, p, shared, temperature=tau, n_data=m, log_normaliser=log_z),
                               nce_loss(a, p, shared.expand(3, 5, 4), temperature=tau, n_data=m, log_normaliser=log_z))


def test_negatives_are_drawn_only_from_other_classes_uniformly_without_replacement():
    """RepDistiller's CIFAR100InstanceSample: np.random.choice(cls_negative[target], k, replace=k > M_c)."""
    labels = torch.tensor([7] * 5 + [2] * 12 + [9] * 23)  # uneven classes, labels not 0..C-1
    n = len(labels)
    crd = CRDLoss(4, 4, n, labels, embed_dim=4, n_negatives=4)
    indices = torch.arange(n)
    torch.manual_seed(0)
    counts = torch.zeros(n, n)
    for _ in range(300):
        negatives = crd.draw_negatives(indices)
        assert negatives.shape == (n, 4) and negatives.dtype == torch.int64
        assert (labels[negatives] != labels[:, None]).all()  # never the anchor's class ...
        assert (negatives != indices[:, None]).all()  # ... so never the anchor (the positive) itself
        assert all(len(set(row.tolist())) == 4 for row in negatives)  # N ≤ M_c: without replacement
        counts[indices[:, None], negatives] += 1
    # every other-class input is drawn, about equally often: 300 · 4 / M_c draws each
    for i in range(n):
        other = labels != labels[i]
        expected = 300 * 4 / int(other.sum())
        assert counts[i, ~other].sum() == 0
        assert (counts[i, other] > 0.4 * expected).all() and (counts[i, other] < 1.8 * expected).all()


def test_more_negatives_than_other_class_inputs_are_drawn_with_replacement():
    labels = torch.tensor([0] * 30 + [1] * 4 + [2] * 6)  # M_c = 10, 36 and 34; N = 20
    crd = CRDLoss(4, 4, 40, labels, embed_dim=4, n_negatives=20)
    torch.manual_seed(1)
    negatives = crd.draw_negatives(torch.tensor([0, 29, 30, 35, 39]))
    assert negatives.shape == (5, 20)
    assert (labels[negatives] != labels[torch.tensor([0, 29, 30, 35, 39])][:, None]).all()
    assert set(negatives[0].tolist()) <= set(range(30, 40))  # 20 draws among the 10 inputs of classes 1, 2
    assert len(set(negatives[2].tolist())) == 20  # 20 ≤ 36: without replacement
    crd = CRDLoss(4, 4, 40, labels, embed_dim=4, n_negatives=50)  # more than any M_c
    negatives = crd.draw_negatives(torch.arange(40))
    assert negatives.shape == (40, 50) and (labels[negatives] != labels[:, None]).all()


@pytest.mark.parametrize("n_negatives", [6, 2])  # bank ≤ 4N: one product with the whole bank; else gathered rows
def test_forward_uses_other_class_negatives_and_matches_eq_18_on_both_sides(n_negatives):
    """The symmetric loss of a batch equals Eq. (18) computed by hand from the banks, with each anchor's
    negatives drawn from the other classes and the noise term N/M of the reference code (M = all inputs)."""
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2, 1])
    torch.manual_seed(4)
    crd = CRDLoss(3, 5, 12, labels, embed_dim=4, n_negatives=n_negatives, temperature=0.5).double()
    crd.log_normaliser.copy_(torch.tensor([2.0, 3.0], dtype=torch.float64))
    idx = torch.tensor([4, 9, 0])
    s_features, t_features = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    student_memory, teacher_memory = crd.student_memory.clone(), crd.teacher_memory.clone()
    torch.manual_seed(9)
    loss = crd(s_features, t_features, idx)
    torch.manual_seed(9)
    negatives = crd.draw_negatives(idx)
    assert (labels[negatives] != labels[idx][:, None]).all()
    with torch.no_grad():
        anchors = (crd.embed_student(s_features), crd.embed_teacher(t_features))
    total = 0.0
    for anchor, memory, log_z in ((anchors[0], teacher_memory, 2.0), (anchors[1], student_memory, 3.0)):
        for i in range(3):
            def h(row):
                density = math.exp(float(anchor[i] @ memory[row]) / 0.5 - log_z)
                return density / (density + n_negatives / 12)
            total += (-math.log(h(int(idx[i]))) - sum(math.log(1 - h(int(j))) for j in negatives[i])) / 3
    assert loss.item() == pytest.approx(total, rel=1e-10)


def test_both_routes_to_the_negatives_scores_give_the_same_values_and_gradients():
    from reference_impl.techniques.contrastive_rd import _bank_scores
    torch.manual_seed(0)
    anchor = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    memory, negatives = torch.randn(20, 8, dtype=torch.float64), torch.randint(0, 20, (4, 5))
    by_product = _bank_scores(anchor, memory, negatives)  # 20 ≤ 4·5: the whole-bank product
    by_rows = _bank_scores(anchor, memory, negatives[:, :4])  # 20 > 4·4: the gathered rows
    expected = torch.stack([memory[negatives[k]] @ anchor[k] for k in range(4)])
    torch.testing.assert_close(by_product, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(by_rows, expected[:, :4], rtol=0, atol=1e-12)
    weights = torch.randn(4, 5, dtype=torch.float64)
    grad_product, = torch.autograd.grad((by_product * weights).sum(), anchor)
    grad_rows, = torch.autograd.grad((by_rows * weights[:, :4]).sum() + (expected[:, 4] * weights[:, 4]).sum(), anchor)
    torch.testing.assert_close(grad_product, grad_rows, rtol=0, atol=1e-12)


@pytest.mark.parametrize("labels", [
    torch.arange(29) % 3,  # one short of n_data = 30
    (torch.arange(30) % 3).reshape(10, 3),
    (torch.arange(30) % 3).float(),
    torch.arange(30) % 2 == 0,
    list(range(30)),
    torch.full((30,), 4),  # a single class: no input has a negative of another class
])
def test_bad_labels_raise_value_error_naming_them(labels):
    with pytest.raises(ValueError, match="labels"):
        CRDLoss(6, 10, 30, labels)
