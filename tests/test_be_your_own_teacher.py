"""Be Your Own Teacher (Zhang et al. 2019): the multi-exit network, the loss, and the traps around them."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import Context, ModelSpec, TrainConfig, build_model, load_split, n_params
from reference_impl.harness.models import ConvNet
from reference_impl.harness.train import seed_everything
from reference_impl.techniques import be_your_own_teacher as byot
from reference_impl.techniques.be_your_own_teacher import (
    FEATURE_WEIGHT, FEATURE_WEIGHTS_TO_TRY, MultiExitConvNet, code_equivalent_feature_weight, feature_hint_loss,
    self_distillation_loss, self_distilled_network)


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


def _batch_mean_squared_distance(a, b):
    """Independent reference: per row, a Python sum of squared differences; then the batch mean."""
    rows = [sum((float(x) - float(z)) ** 2 for x, z in zip(ra.flatten().tolist(), rb.flatten().tolist()))
            for ra, rb in zip(a, b)]
    return sum(rows) / len(rows)


@pytest.mark.parametrize("shape, seed", [((5, 6), 0), ((3, 64), 1), ((7, 2, 3), 2), ((1, 4), 3)])
def test_feature_loss_is_the_batch_mean_of_the_squared_l2_distance(shape, seed):
    """The paper's ‖F_i − F_C‖²₂ per sample (summed over feature dimensions), averaged over the batch."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64)
    loss = feature_hint_loss(a, b)
    assert loss.dim() == 0
    assert float(loss) == pytest.approx(_batch_mean_squared_distance(a, b), rel=1e-12)


def test_feature_loss_is_not_the_codes_unsquared_batch_norm():
    """The authors' code uses torch.dist (un-squared norm over the whole batch); the paper's term is not that."""
    a, b = torch.randn(8, 6, generator=torch.Generator().manual_seed(4)), torch.randn(8, 6)
    loss = float(feature_hint_loss(a, b))
    assert loss != pytest.approx(float(torch.dist(a, b)), rel=1e-3)  # un-squared, over the batch
    assert loss != pytest.approx(float((a - b).norm(dim=1).mean()), rel=1e-3)  # un-squared, per sample
    assert loss != pytest.approx(float((a - b).pow(2).sum()), rel=1e-3)  # squared but summed over the batch
    assert loss != pytest.approx(float(F.mse_loss(a, b)), rel=1e-3)  # squared but averaged over features too
    # squared: doubling the distance quadruples the term (a norm would double it)
    assert float(feature_hint_loss(b + 2 * (a - b), b)) == pytest.approx(4 * loss, rel=1e-5)
    # a batch mean: repeating the batch leaves it unchanged (torch.dist grows by √2)
    assert float(feature_hint_loss(torch.cat([a, a]), torch.cat([b, b]))) == pytest.approx(loss, rel=1e-5)


def test_feature_loss_gradient_and_zero_iff_equal():
    a, b = torch.randn(5, 6, requires_grad=True), torch.randn(5, 6)
    feature_hint_loss(a, b).backward()
    torch.testing.assert_close(a.grad, 2 * (a.detach() - b) / 5)
    assert float(feature_hint_loss(b.clone(), b)) == 0.0
    with pytest.raises(ValueError, match="shallow_features"):
        feature_hint_loss(torch.randn(5, 6), torch.randn(5, 7))
    with pytest.raises(ValueError, match="deep_features"):
        feature_hint_loss(torch.randn(5, 6), torch.full((5, 6), float("nan")))


def test_feature_loss_detaches_the_deepest_features():
    shallow, deep = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    feature_hint_loss(shallow, deep).backward()
    assert deep.grad is None  # F_C is only a target
    assert shallow.grad is not None and shallow.grad.abs().sum() > 0


def test_hint_term_does_not_reach_the_parameters_that_only_make_the_deepest_features(split):
    """In the real network the hint gradient trains the heads and the shared early blocks, never the last block
    (which, with the backbone's pooling and fc, only produces F_C)."""
    torch.manual_seed(0)
    model = MultiExitConvNet(build_model(ModelSpec("cnn", channels=(4, 6, 8), fc=5), split), split.n_classes)
    _, feats = model(split.x_train[:16])
    sum(feature_hint_loss(f, feats[-1]) for f in feats[:-1]).backward()
    deep_only = list(model.backbone.blocks[-1].parameters()) + list(model.backbone.fc.parameters())
    assert all(p.grad is None for p in deep_only)
    for head in model.shallow:  # the hint trains each head's bottleneck (F_i), not its classifier
        assert all(p.grad is not None for p in head.bottleneck.parameters())
        assert head.bottleneck[0].weight.grad.abs().sum() > 0
        assert all(p.grad is None for p in head.classifier.parameters())
    assert model.backbone.blocks[0][0].weight.grad.abs().sum() > 0  # the shared first section is trained


def test_code_equivalent_weight_matches_the_codes_gradient():
    """At λ = code_equivalent_feature_weight, λ·feature_hint_loss has the gradient of 0.03·torch.dist on a batch
    of the code's size: the conversion of the authors' weight to the squared scale."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(128, 16, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(128, 16, generator=g, dtype=torch.float64)
    lam = code_equivalent_feature_weight(a, b)
    (0.03 * torch.dist(a, b)).backward()
    code_grad, a.grad = a.grad, None
    (lam * feature_hint_loss(a, b)).backward()
    torch.testing.assert_close(a.grad, code_grad)
    assert lam == pytest.approx(0.03 * 128 / (2 * float(torch.dist(a.detach(), b))))
    with pytest.raises(ValueError, match="code_weight"):
        code_equivalent_feature_weight(a, b, code_weight=0.0)
    with pytest.raises(ValueError, match="no distance"):
        code_equivalent_feature_weight(b, b)


def test_chosen_feature_weight_is_the_code_equivalent_at_initialisation(split):
    """FEATURE_WEIGHT = 0.17 was derived by matching the code's gradient at initialisation on this experiment's
    network; if the network or the features change, this fails and λ must be re-derived."""
    spec = byot.EXPERIMENTS[0].student
    matched = []
    for seed in range(3):
        seed_everything(seed)
        model = MultiExitConvNet(build_model(spec, split), split.n_classes)
        with torch.no_grad():
            _, feats = model(split.x_train)
        matched += [code_equivalent_feature_weight(f, feats[-1]) for f in feats[:-1]]
    assert all(FEATURE_WEIGHT / 1.5 < lam < FEATURE_WEIGHT * 1.5 for lam in matched), matched
    median = sorted(matched)[len(matched) // 2]
    assert FEATURE_WEIGHT / 1.2 < median < FEATURE_WEIGHT * 1.2, matched


def test_feature_weight_defaults_and_candidates():
    assert FEATURE_WEIGHT == 0.17 and FEATURE_WEIGHT in FEATURE_WEIGHTS_TO_TRY
    assert list(FEATURE_WEIGHTS_TO_TRY) == sorted(set(FEATURE_WEIGHTS_TO_TRY))
    assert all(0 < w < float("inf") for w in FEATURE_WEIGHTS_TO_TRY)
    assert min(FEATURE_WEIGHTS_TO_TRY) <= 0.12 and max(FEATURE_WEIGHTS_TO_TRY) >= 0.34  # the alternatives
    for fn in (self_distillation_loss, self_distilled_network):
        assert inspect.signature(fn).parameters["feature_weight"].default == FEATURE_WEIGHT
    arm = byot.EXPERIMENTS[0].arms[1]
    assert arm.train.keywords["feature_weight"] == FEATURE_WEIGHT and "λ=0.17" in arm.label
    assert (arm.train.keywords["temperature"], arm.train.keywords["alpha"]) == (3.0, 0.3)  # unchanged


def test_feature_weight_scales_only_the_hint_term():
    y = torch.tensor([0, 1, 2])
    z = [logits(3, 4, seed=s) for s in (10, 11)]
    f = [torch.randn(3, 5, generator=torch.Generator().manual_seed(s)) for s in (12, 13)]
    base = self_distillation_loss(z, f, y, feature_weight=0.0)
    for lam in FEATURE_WEIGHTS_TO_TRY:
        torch.testing.assert_close(self_distillation_loss(z, f, y, feature_weight=lam),
                                   base + lam * _batch_mean_squared_distance(f[0], f[1]) * torch.ones(()))


def test_loss_reduces_to_ce_terms_when_all_exits_agree():
    y, z, f = torch.tensor([0, 1, 2]), logits(3, 4, seed=8), torch.rand(3, 5)
    loss = self_distillation_loss([z.clone(), z.clone(), z], [f.clone(), f.clone(), f], y, alpha=0.3)
    torch.testing.assert_close(loss, 3 * 0.7 * F.cross_entropy(z, y))


@pytest.mark.parametrize("kwargs, word", [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"alpha": -0.1}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"feature_weight": -1.0}, "feature_weight"),
    ({"feature_weight": float("nan")}, "feature_weight"), ({"feature_weight": float("inf")}, "feature_weight"),
    ({"feature_weight": True}, "feature_weight"), ({"feature_weight": "0.17"}, "feature_weight"),
    ({"feature_weight": None}, "feature_weight"),
])
def test_bad_hyperparameters_raise_value_error_naming_them(kwargs, word):
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=word):
        self_distillation_loss([logits(2, 3), logits(2, 3)], [torch.zeros(2, 4)] * 2, y, **kwargs)


@pytest.mark.parametrize("bad", [-0.17, float("nan"), float("inf"), "0.17", None, True])
def test_bad_feature_weight_of_the_arm_raises_before_training(split, bad, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started with a bad feature_weight")
    # training must not start (whichever entry point the arm uses); the check comes first
    monkeypatch.setattr(byot, "train", no_training, raising=False)
    monkeypatch.setattr(Context, "fit", no_training, raising=False)
    ctx = Context(split, build_model(SPEC, split), torch.zeros(len(split.y_train), 10), SPEC,
                  TrainConfig(epochs=1, batch_size=256, seed=1), 1)
    with pytest.raises(ValueError, match="feature_weight"):
        self_distilled_network(ctx, feature_weight=bad)


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
