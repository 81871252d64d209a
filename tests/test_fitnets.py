"""The math and the two stages of FitNets (Romero et al. 2015)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import TrainConfig, build_model, freeze, load_split, predict_logits
from reference_impl.harness.bench import Context
from reference_impl.techniques.fitnets import (STUDENT, ConvRegressor, annealed_lambda, fitnets_kd_loss, hint_loss,
                                               hint_stage, modules_up_to)
from reference_impl.techniques.soft_targets import TEACHER, soft_target_kl


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_hint_loss_is_half_squared_error_per_sample_averaged_over_batch():
    r, h = rand(4, 8, 10, seed=1), rand(4, 8, 10, seed=2)
    torch.testing.assert_close(hint_loss(r, h), 0.5 * ((h - r) ** 2).sum(dim=(1, 2)).mean())
    assert float(hint_loss(h.clone(), h)) == 0.0
    assert float(hint_loss(r, h)) > 0


def test_hint_loss_gradient_is_the_residual_and_never_reaches_the_hint():
    r = rand(5, 3, 4, seed=3).requires_grad_()
    h = rand(5, 3, 4, seed=4).requires_grad_()
    hint_loss(r, h).backward()
    torch.testing.assert_close(r.grad, (r.detach() - h.detach()) / 5)
    assert h.grad is None


@pytest.mark.parametrize("guided, hint, kernel", [
    ((8, 10), (64, 10), (1,)), ((8, 20), (64, 10), (11,)), ((4, 9, 7), (16, 5, 5), (5, 3)),
])
def test_conv_regressor_maps_guided_shape_onto_hint_shape(guided, hint, kernel):
    r = ConvRegressor(guided, hint)
    assert r.conv.kernel_size == kernel
    out = r(torch.randn(3, *guided))
    assert out.shape == (3, *hint) and (out >= 0).all()  # ReLU, like the teacher's hint layer


def test_regressor_of_fully_connected_layers_is_linear_and_keeps_the_sign_when_asked():
    r = ConvRegressor((12,), (20,), relu=False)
    assert isinstance(r.conv, torch.nn.Linear) and (r.conv.in_features, r.conv.out_features) == (12, 20)
    x = torch.randn(5, 12)
    assert torch.equal(r(x), r.conv(x)) and (r(x) < 0).any()
    assert (ConvRegressor((12,), (20,))(x) >= 0).all()


@pytest.mark.parametrize("guided, hint", [((8, 5), (64, 10)), ((8, 10), (64, 10, 10)), ((8, 4, 4, 4), (8, 4, 4, 4)),
                                          ((8,), (64, 10))])
def test_conv_regressor_rejects_shapes_it_cannot_map(guided, hint):
    with pytest.raises(ValueError, match="guided_shape"):
        ConvRegressor(guided, hint)


def test_annealed_lambda_goes_linearly_from_four_to_one():
    values = [annealed_lambda(s, 101) for s in range(101)]
    assert values[0] == 4.0 and values[-1] == pytest.approx(1.0) and values[50] == pytest.approx(2.5)
    assert all(a > b for a, b in zip(values, values[1:]))
    assert annealed_lambda(500, 101) == pytest.approx(1.0)  # stays at the end value


def test_kd_loss_is_eq2_cross_entropies_without_tau_squared():
    """Same value as CE + λ·KL, and the same gradient as CE + λ·H(P_T^τ, P_S^τ)."""
    z_s, z_t, y, tau, lam = rand(6, 10, seed=5), rand(6, 10, seed=6), torch.arange(6), 3.0, 2.0
    torch.testing.assert_close(fitnets_kd_loss(z_s, z_t, y, temperature=tau, lam=lam),
                               F.cross_entropy(z_s, y) + lam * soft_target_kl(z_s, z_t, tau) / tau**2)
    a, b = z_s.clone().requires_grad_(), z_s.clone().requires_grad_()
    fitnets_kd_loss(a, z_t, y, temperature=tau, lam=lam).backward()
    p_t = F.softmax(z_t / tau, 1)
    cross_entropy = -(p_t * F.log_softmax(b / tau, 1)).sum(1).mean()
    (F.cross_entropy(b, y) + lam * cross_entropy).backward()
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(fitnets_kd_loss(z_s, z_t, y, temperature=tau, lam=0.0), F.cross_entropy(z_s, y))


def test_kd_loss_rejects_bad_input():
    z, y = rand(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="lam"):
        fitnets_kd_loss(z, z, y, lam=-1.0)
    with pytest.raises(ValueError, match="lam"):
        fitnets_kd_loss(z, z, y, lam=float("nan"))
    with pytest.raises(ValueError, match="temperature"):
        fitnets_kd_loss(z, z, y, temperature=0.0)
    with pytest.raises(ValueError, match="teacher_logits"):
        fitnets_kd_loss(z, rand(2, 4), y)
    with pytest.raises(ValueError, match="regressed"):
        hint_loss(rand(2, 8, 10), rand(2, 8, 5))
    bad = rand(2, 8, 10)
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="hint"):
        hint_loss(rand(2, 8, 10), bad)


def test_modules_up_to_the_guided_layer_are_the_lower_convolutions():
    split = load_split("mnist1d")
    student = build_model(STUDENT, split)
    probe = split.x_train[:2]
    assert modules_up_to(student, "blocks.1", probe) == [student.blocks[0][0], student.blocks[1][0]]
    assert modules_up_to(student, "blocks.3", probe)[-1] is student.blocks[3][0]
    with pytest.raises(ValueError, match="blocks.9"):
        modules_up_to(student, "blocks.9", probe)


def test_modules_up_to_follows_the_data_not_the_registration_order():
    class Reversed(torch.nn.Module):  # the head is registered before the layers that feed it
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 3)
            self.late = torch.nn.Linear(4, 4)
            self.early = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))

        def forward(self, x):
            return self.head(self.late(self.early(x)))

    model = Reversed().train()
    stats = model.early[1].running_mean.clone()
    assert modules_up_to(model, "early", torch.randn(2, 5)) == [model.early[0], model.early[1]]
    assert modules_up_to(model, "late", torch.randn(2, 5)) == [model.late, model.early[0], model.early[1]]
    assert torch.equal(model.early[1].running_mean, stats) and model.training  # probed in eval mode, restored


def test_stage_one_trains_only_the_lower_layers_and_never_the_teacher():
    full = load_split("mnist1d")
    split = replace(full, x_train=full.x_train[:96], y_train=full.y_train[:96])
    torch.manual_seed(0)
    teacher = freeze(build_model(TEACHER, split))
    ctx = Context(split, teacher, predict_logits(teacher, split.x_train), STUDENT,
                  TrainConfig(epochs=1, batch_size=32, lr=1e-2), seed=0)
    student = ctx.new_student()
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    teacher_before = [p.clone() for p in teacher.parameters()]
    regressor = hint_stage(ctx, student, hint_layer="blocks.1", guided_layer="blocks.1", epochs=1)
    changed = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"blocks.0.0.weight", "blocks.0.0.bias", "blocks.1.0.weight", "blocks.1.0.bias"}
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), teacher_before))
    assert regressor.conv.in_channels == 8 and regressor.conv.out_channels == 64
