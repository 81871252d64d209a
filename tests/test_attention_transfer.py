"""The math of activation-based attention transfer (Zagoruyko & Komodakis 2017)."""

from __future__ import annotations

import pytest
import torch

from reference_impl.harness import ModelSpec, build_model, load_split
from reference_impl.harness.hooks import capture
from reference_impl.techniques.attention_transfer import attention_distance, attention_map, attention_transfer_loss


def acts(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("shape", [(4, 8, 10), (3, 16, 5, 5), (2, 1, 7)])
def test_attention_map_is_sum_of_squares_over_channels_with_unit_norm_per_sample(shape):
    a = acts(*shape, seed=1)
    q = attention_map(a)
    by_hand = a.pow(2).sum(1).flatten(1)
    torch.testing.assert_close(q, by_hand / by_hand.norm(dim=1, keepdim=True))
    torch.testing.assert_close(q.norm(dim=1), torch.ones(shape[0], dtype=a.dtype))


def test_attention_map_is_invariant_to_positive_scaling_and_sign():
    a = acts(5, 6, 12, seed=2)
    scales = torch.tensor([0.01, 1.0, 3.0, 250.0, 1e4], dtype=a.dtype).view(5, 1, 1)  # a different scale per sample
    torch.testing.assert_close(attention_map(a * scales), attention_map(a))
    torch.testing.assert_close(attention_map(-a), attention_map(a))  # F uses |A|
    assert not torch.allclose(attention_map(a, p=1.0), attention_map(a))  # but p matters


def test_dead_layer_gives_zero_map_not_nan():
    q = attention_map(torch.zeros(2, 4, 6))
    assert torch.equal(q, torch.zeros(2, 6))


def test_loss_is_mean_squared_distance_of_normalised_maps_summed_over_layers():
    s1, t1, s2, t2 = acts(4, 8, 10, seed=3), acts(4, 32, 10, seed=4), acts(4, 16, 5, seed=5), acts(4, 64, 5, seed=6)
    expected = ((attention_map(s1) - attention_map(t1)).pow(2).sum(1).mean() / 10
                + (attention_map(s2) - attention_map(t2)).pow(2).sum(1).mean() / 5)
    torch.testing.assert_close(attention_transfer_loss([s1, s2], [t1, t2]), expected)


def test_loss_is_zero_iff_normalised_maps_match():
    a = acts(3, 8, 10, seed=7)
    assert float(attention_transfer_loss([a], [a.clone()])) == 0.0
    # a wider, rescaled teacher with the same attention: its channels are copies of the student's
    wider = torch.cat([a, -a, a], dim=1) * 7.0
    assert float(attention_transfer_loss([a], [wider])) == pytest.approx(0.0, abs=1e-15)
    for seed in range(10):
        assert float(attention_transfer_loss([acts(3, 8, 10, seed=seed)], [acts(3, 4, 10, seed=seed + 50)])) > 0


def test_gradients_reach_the_student_features_only():
    s = acts(4, 8, 10, seed=8).requires_grad_()
    t = acts(4, 16, 10, seed=9).requires_grad_()
    attention_transfer_loss([s], [t]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_student_learns_through_hooks_while_the_frozen_teacher_does_not():
    split = load_split("mnist1d")
    torch.manual_seed(0)
    teacher = build_model(ModelSpec("cnn", channels=(32, 64)), split).eval()
    student = build_model(ModelSpec("cnn", channels=(8, 16)), split)
    x = split.x_train[:16]
    layers = ["blocks.0", "blocks.1"]
    with torch.no_grad(), capture(teacher, layers) as t_feats:
        teacher(x)
    with capture(student, layers) as s_feats:
        student(x)
    loss = attention_transfer_loss([s_feats[n] for n in layers], [t_feats[n] for n in layers])
    loss.backward()
    assert student.blocks[0][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert student.head.weight.grad is None  # AT reaches only the layers under the matched blocks


@pytest.mark.parametrize("student_shape, teacher_shape", [
    ((4, 8, 10), (4, 8, 20)),  # spatial size differs
    ((4, 8, 5, 5), (4, 8, 25)),  # 2-D vs 1-D maps
    ((4, 8, 10), (3, 8, 10)),  # batch differs
])
def test_mismatched_shapes_raise_value_error(student_shape, teacher_shape):
    with pytest.raises(ValueError, match="student_features"):
        attention_transfer_loss([acts(*student_shape)], [acts(*teacher_shape)])


def test_bad_input_raises_value_error_naming_it():
    a = acts(2, 3, 4)
    with pytest.raises(ValueError, match="student_features"):
        attention_transfer_loss([a, a], [a])
    with pytest.raises(ValueError, match="student_features"):
        attention_transfer_loss([], [])
    with pytest.raises(ValueError, match="activations"):
        attention_map(acts(2, 3))  # no spatial axis
    bad = a.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="activations"):
        attention_transfer_loss([bad], [a])
    for p in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="p must"):
            attention_map(a, p=p)


def test_distance_of_cached_teacher_maps_equals_the_loss_on_features():
    """The module caches the teacher's maps once and indexes them by batch: same value."""
    s, t = [acts(6, 8, 10, seed=10), acts(6, 16, 5, seed=11)], [acts(6, 32, 10, seed=12), acts(6, 64, 5, seed=13)]
    cached = [attention_map(a) for a in t]
    idx = torch.tensor([4, 0, 5])
    torch.testing.assert_close(attention_distance([attention_map(a[idx]) for a in s], [q[idx] for q in cached]),
                               attention_transfer_loss([a[idx] for a in s], [a[idx] for a in t]))
    with pytest.raises(ValueError, match="student_maps"):
        attention_distance([cached[0]], [cached[0][:, :5]])
    with pytest.raises(ValueError, match="student_maps"):
        attention_distance([cached[0]], cached)
