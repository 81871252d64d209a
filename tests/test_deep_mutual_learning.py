"""The math of deep mutual learning (Zhang et al. 2018), and the traps around it."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, TrainConfig, build_model, load_split
from reference_impl.techniques.deep_mutual_learning import (
    mutual_learning_losses, mutual_learning_peer, new_cohort, train_cohort)


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def kl(p_target, p_input):
    """KL(p_target ‖ p_input) summed over classes, averaged over the batch."""
    return (p_target * (p_target.log() - p_input.log())).sum(1).mean()


def test_gradients_of_one_peers_loss_do_not_reach_the_other_peer():
    torch.manual_seed(0)
    peer1, peer2 = nn.Linear(5, 4), nn.Linear(5, 4)
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    loss1, loss2 = mutual_learning_losses([peer1(x), peer2(x)], y)
    loss1.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in peer1.parameters())
    assert all(p.grad is None for p in peer2.parameters())  # the other peer is a fixed target
    peer1.zero_grad(set_to_none=True)
    loss2.backward()
    assert all(p.grad is None for p in peer1.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in peer2.parameters())


def test_backward_of_the_summed_losses_is_each_peers_own_gradient():
    """What train_cohort relies on: ∂(L_1 + L_2)/∂θ_1 = ∂L_1/∂θ_1 (simultaneous update = per-peer updates)."""
    torch.manual_seed(1)
    peer1, peer2 = nn.Linear(5, 4), nn.Linear(5, 4)
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    mutual_learning_losses([peer1(x), peer2(x)], y)[0].backward()
    alone = peer1.weight.grad.clone()
    peer1.zero_grad(set_to_none=True)
    sum(mutual_learning_losses([peer1(x), peer2(x)], y)).backward()
    torch.testing.assert_close(peer1.weight.grad, alone)


def test_value_is_ce_plus_kl_from_the_other_peer_to_this_one():
    z1, z2, y = logits(6, 5, seed=2), logits(6, 5, seed=3), torch.tensor([0, 1, 2, 3, 4, 0])
    p1, p2 = F.softmax(z1, 1), F.softmax(z2, 1)
    loss1, loss2 = mutual_learning_losses([z1, z2], y)
    torch.testing.assert_close(loss1, F.cross_entropy(z1, y) + kl(p2, p1))  # D_KL(p_2 ‖ p_1), Eq. (4)
    torch.testing.assert_close(loss2, F.cross_entropy(z2, y) + kl(p1, p2))  # D_KL(p_1 ‖ p_2), Eq. (5)
    wrong_direction = F.cross_entropy(z1, y) + kl(p1, p2)
    assert not torch.allclose(loss1, wrong_direction)


def test_gradient_matches_closed_form():
    """∂/∂z_1 [CE(y, p_1) + KL(p_2 ‖ p_1)] = ((p_1 − onehot(y)) + (p_1 − p_2)) / batch."""
    z1, z2, y = logits(7, 6, seed=4).requires_grad_(), logits(7, 6, seed=5), torch.tensor([0, 1, 2, 3, 4, 5, 0])
    mutual_learning_losses([z1, z2], y)[0].backward()
    p1, p2 = F.softmax(z1.detach(), 1), F.softmax(z2, 1)
    expected = ((p1 - F.one_hot(y, 6).float()) + (p1 - p2)) / 7
    torch.testing.assert_close(z1.grad, expected)


def test_kl_term_is_zero_iff_the_peers_agree():
    z, y = logits(6, 5, seed=6), torch.tensor([0, 1, 2, 3, 4, 0])
    for loss in mutual_learning_losses([z, z.clone()], y):
        torch.testing.assert_close(loss, F.cross_entropy(z, y))
    for loss in mutual_learning_losses([z, z + 1.7], y):  # softmax is shift-invariant: still agreeing
        torch.testing.assert_close(loss, F.cross_entropy(z, y), rtol=1e-5, atol=1e-6)
    for seed in range(10):
        z1, z2 = logits(6, 5, seed=seed), logits(6, 5, seed=seed + 50)
        l1, l2 = mutual_learning_losses([z1, z2], y)
        assert float(l1 - F.cross_entropy(z1, y)) > 0 and float(l2 - F.cross_entropy(z2, y)) > 0


def test_cohort_of_three_averages_the_kl_terms():
    zs, y = [logits(5, 4, seed=s) for s in (7, 8, 9)], torch.tensor([0, 1, 2, 3, 0])
    ps = [F.softmax(z, 1) for z in zs]
    loss = mutual_learning_losses(zs, y)[0]
    torch.testing.assert_close(loss, F.cross_entropy(zs[0], y) + (kl(ps[1], ps[0]) + kl(ps[2], ps[0])) / 2)


def test_bad_input_raises_value_error_naming_the_argument():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="peer_logits"):
        mutual_learning_losses([logits(2, 3)], y)
    with pytest.raises(ValueError, match="peer_logits"):
        mutual_learning_losses(logits(2, 3), y)
    with pytest.raises(ValueError, match=r"peer_logits\[1\]"):
        mutual_learning_losses([logits(2, 3), logits(2, 4)], y)
    bad = logits(2, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"peer_logits\[1\]"):
        mutual_learning_losses([logits(2, 3), bad], y)
    with pytest.raises(ValueError, match="labels"):
        mutual_learning_losses([logits(2, 3), logits(2, 3)], torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        mutual_learning_losses([logits(2, 3), logits(2, 3)], torch.tensor([0.0, 1.0]))


def _context(epochs=1):
    split = load_split("digits")
    spec = ModelSpec("mlp", hidden=(16,))
    teacher = build_model(spec, split)  # unused by DML
    return Context(split, teacher, torch.zeros(len(split.y_train), 10), spec, TrainConfig(epochs=epochs, seed=3), 3)


def test_peer_one_starts_like_the_baseline_and_the_peers_differ():
    ctx = _context()
    peers = new_cohort(ctx, 2)
    baseline = ctx.new_student()
    assert all(torch.equal(a, b) for a, b in zip(peers[0].state_dict().values(), baseline.state_dict().values()))
    assert not torch.equal(peers[0].head.weight, peers[1].head.weight)
    with pytest.raises(ValueError, match="n_peers"):
        new_cohort(ctx, 1)


def test_training_updates_every_peer_and_returns_peer_one():
    ctx = _context(epochs=1)
    peers = new_cohort(ctx, 2)
    before = [p.head.weight.clone() for p in peers]
    train_cohort(peers, ctx)
    assert all(not torch.equal(b, p.head.weight) for b, p in zip(before, peers))
    peer = mutual_learning_peer(ctx, n_peers=2)
    torch.testing.assert_close(peer.head.weight, peers[0].head.weight)  # deterministic, and peer 1 is returned
