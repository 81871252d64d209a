"""Be Your Own Teacher (Zhang et al. 2019): the multi-exit network, the loss, and the traps around them."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, TrainConfig, build_model, load_split, n_params
from reference_impl.harness.models import ConvNet
from reference_impl.techniques.be_your_own_teacher import (
    MultiExitConvNet, feature_hint_loss, self_distillation_loss, self_distilled_network)


def logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


SPEC = ModelSpec("cnn", channels=(4, 8, 8))


@pytest.fixture(scope="module")
def split():
    return load_split("mnist1d")


def test_exits_shapes_and_the_deepest_exit_is_the_backbone(split):
    torch.manual_seed(0)
    model = MultiExitConvNet(build_model(SPEC, split), split.n_classes)
    x = split.x_train[:5]
    exit_logits, exit_features = model(x)
    assert len(exit_logits) == len(exit_features) == 3  # two shallow heads + the deepest
    assert all(z.shape == (5, 10) for z in exit_logits)
    # every bottleneck produces features shaped like the deepest ones, so ‖F_i − F_C‖² is defined
    assert all(f.shape == (5, model.backbone.feature_dim) for f in exit_features)
    torch.testing.assert_close(exit_logits[-1], model.backbone(x))
    torch.testing.assert_close(exit_features[-1], model.backbone.features(x))


def test_heads_mirror_the_later_sections_and_an_fc_backbone(split):
    model = MultiExitConvNet(build_model(ModelSpec("cnn", channels=(4, 6, 8), fc=12), split), split.n_classes)
    convs = [[m.out_channels for m in head.bottleneck if isinstance(m, torch.nn.Conv1d)] for head in model.shallow]
    assert convs == [[6, 8], [8]]  # one conv stage per later section, as in the authors' heads
    _, exit_features = model(split.x_train[:2])
    assert [tuple(f.shape) for f in exit_features] == [(2, 12)] * 3


def test_two_d_inputs_work_too():
    digits = load_split("digits")
    model = MultiExitConvNet(build_model(SPEC, digits), digits.n_classes)
    exit_logits, exit_features = model(digits.x_train[:3])
    assert [z.shape for z in exit_logits] == [(3, 10)] * 3
    assert len({f.shape for f in exit_features}) == 1


def test_heads_are_absent_at_inference(split):
    ctx = Context(split, build_model(SPEC, split), torch.zeros(len(split.y_train), 10), SPEC,
                  TrainConfig(epochs=1, batch_size=256, seed=1), 1)
    deployed = self_distilled_network(ctx)
    plain = build_model(SPEC, split)
    assert isinstance(deployed, ConvNet) and not hasattr(deployed, "shallow")
    assert n_params(deployed) == n_params(plain)  # backbone + final classifier only
    assert [name for name, _ in deployed.named_parameters()] == [name for name, _ in plain.named_parameters()]
    out = deployed(split.x_test[:7])
    assert isinstance(out, torch.Tensor) and out.shape == (7, 10)  # only the final logits
    assert n_params(MultiExitConvNet(build_model(SPEC, split), 10)) > n_params(plain)  # the heads did exist


def test_deepest_output_is_a_detached_teacher_for_the_shallow_heads():
    """Shallow KL and L2 terms must not move the deepest classifier: its gradient is (1-α) CE's alone."""
    y = torch.tensor([0, 1, 2, 3])
    deep = logits(4, 5, seed=1).requires_grad_()
    deep_f = torch.rand(4, 6, requires_grad=True)
    shallow = [logits(4, 5, seed=s).requires_grad_() for s in (2, 3)]
    shallow_f = [torch.rand(4, 6, requires_grad=True) for _ in range(2)]
    alpha = 0.3
    self_distillation_loss(shallow + [deep], shallow_f + [deep_f], y, temperature=3.0, alpha=alpha,
                           feature_weight=0.5).backward()
    expected = (1 - alpha) * (F.softmax(deep.detach(), 1) - F.one_hot(y, 5).float()) / 4
    torch.testing.assert_close(deep.grad, expected)
    assert deep_f.grad is None  # the deepest features are only ever a target
    assert all(z.grad is not None for z in shallow) and all(f.grad is not None for f in shallow_f)


def test_shallow_gradient_matches_closed_form():
    """∂/∂z_i [(1-α) CE + α KL(q^C_T ‖ q^i_T)] = ((1-α)(q^i − y) + (α/T)(q^i_T − q^C_T)) / batch.

    No T² factor, as in the paper's equation."""
    y, T, alpha = torch.tensor([0, 1, 2]), 3.0, 0.3
    z_s, z_d = logits(3, 4, seed=4).requires_grad_(), logits(3, 4, seed=5)
    feats = [torch.zeros(3, 2), torch.zeros(3, 2)]
    self_distillation_loss([z_s, z_d], feats, y, temperature=T, alpha=alpha, feature_weight=0.0).backward()
    q, q_t, q_c_t = F.softmax(z_s.detach(), 1), F.softmax(z_s.detach() / T, 1), F.softmax(z_d / T, 1)
    expected = ((1 - alpha) * (q - F.one_hot(y, 4).float()) + alpha / T * (q_t - q_c_t)) / 3
    torch.testing.assert_close(z_s.grad, expected)


def test_kl_direction_has_the_deepest_as_target():
    y, T = torch.tensor([0, 1, 2]), 3.0
    z_s, z_d = logits(3, 4, seed=6), logits(3, 4, seed=7)
    feats = [torch.zeros(3, 2), torch.zeros(3, 2)]
    loss = self_distillation_loss([z_s, z_d], feats, y, temperature=T, alpha=1.0, feature_weight=0.0)
    q_s, q_d = F.softmax(z_s / T, 1), F.softmax(z_d / T, 1)
    torch.testing.assert_close(loss, (q_d * (q_d.log() - q_s.log())).sum(1).mean())
    assert not torch.allclose(loss, (q_s * (q_s.log() - q_d.log())).sum(1).mean())


def test_feature_loss_is_batch_mean_of_squared_distance_and_zero_iff_equal():
    a, b = torch.randn(5, 6, requires_grad=True), torch.randn(5, 6)
    loss = feature_hint_loss(a, b)
    torch.testing.assert_close(loss, ((a - b) ** 2).sum(1).mean())
    loss.backward()
    torch.testing.assert_close(a.grad, 2 * (a.detach() - b) / 5)
    assert float(feature_hint_loss(b.clone(), b)) == 0.0
    with pytest.raises(ValueError, match="shallow_features"):
        feature_hint_loss(torch.randn(5, 6), torch.randn(5, 7))
    with pytest.raises(ValueError, match="deep_features"):
        feature_hint_loss(torch.randn(5, 6), torch.full((5, 6), float("nan")))


def test_loss_reduces_to_ce_terms_when_all_exits_agree():
    y, z, f = torch.tensor([0, 1, 2]), logits(3, 4, seed=8), torch.rand(3, 5)
    loss = self_distillation_loss([z.clone(), z.clone(), z], [f.clone(), f.clone(), f], y, alpha=0.3)
    torch.testing.assert_close(loss, 3 * 0.7 * F.cross_entropy(z, y))


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"alpha": -0.1}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"feature_weight": -1.0}, "feature_weight"),
    ({"feature_weight": float("nan")}, "feature_weight"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=word):
        self_distillation_loss([logits(2, 3), logits(2, 3)], [torch.zeros(2, 4)] * 2, y, **kwargs)


def test_bad_tensors_raise_value_error_naming_them():
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="exit_logits"):
        self_distillation_loss([logits(2, 3)], [torch.zeros(2, 4)], y)
    with pytest.raises(ValueError, match="exit_features"):
        self_distillation_loss([logits(2, 3)] * 2, [torch.zeros(2, 4)] * 3, y)
    with pytest.raises(ValueError, match=r"exit_logits\[0\]"):
        self_distillation_loss([logits(2, 4), logits(2, 3)], [torch.zeros(2, 4)] * 2, y)
    with pytest.raises(ValueError, match="shallow_features"):
        self_distillation_loss([logits(2, 3)] * 2, [torch.zeros(2, 5), torch.zeros(2, 4)], y)
    with pytest.raises(ValueError, match="labels"):
        self_distillation_loss([logits(2, 3)] * 2, [torch.zeros(2, 4)] * 2, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="backbone"):
        MultiExitConvNet(build_model(ModelSpec("mlp"), load_split("digits")), 10)
