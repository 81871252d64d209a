"""MUNGE pseudo-data (Buciluǎ et al. 2006), the ensemble teacher, and the alignment of its labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_impl.harness import ModelSpec, Split, TrainConfig, predict_logits
from reference_impl.harness.bench import Context
from reference_impl.harness.teachers import get_teacher
from reference_impl.techniques import munge as munge_module
from reference_impl.techniques.munge import (ProbabilityAverage, ensemble_transfer_set, munge, nearest_neighbour,
                                             small_data_ensemble, swap_or_resample)
from reference_impl.techniques.soft_targets import soft_target_kl


def data(n=30, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def toy_split(n=24, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, d, generator=g), torch.arange(n) % classes
    return Split("toy", x, y, x[:6], y[:6], classes, (d,))


def test_shape_dtype_and_determinism_by_seed():
    x = data()
    out = munge(x, multiplier=4, p=0.5, s=10.0, seed=3)
    assert out.shape == (4 * 30, 6) and out.dtype == x.dtype
    torch.testing.assert_close(out, munge(x, multiplier=4, p=0.5, s=10.0, seed=3), rtol=0, atol=0)
    assert not torch.equal(out, munge(x, multiplier=4, p=0.5, s=10.0, seed=4))
    assert torch.equal(x, data())  # the input is not modified


def test_p_zero_gives_copies_of_the_originals():
    x = data()
    torch.testing.assert_close(munge(x, multiplier=3, p=0.0, s=10.0, seed=1), x.repeat(3, 1), rtol=0, atol=0)


def test_attributes_are_altered_and_values_stay_near_the_data():
    x = data(n=200, d=8, seed=2)
    out = munge(x, multiplier=5, p=0.5, s=10.0, seed=0)
    assert (out != x.repeat(5, 1)).float().mean() > 0.3  # about p of the attributes change
    low, high = x.min(0).values, x.max(0).values
    span = high - low
    # each new value is N(neighbour's value, |a − b|/s): with s = 10 it hardly leaves the data's range
    assert ((out >= low - 0.6 * span) & (out <= high + 0.6 * span)).all()
    assert ((out >= low) & (out <= high)).float().mean() > 0.99
    torch.testing.assert_close(out.mean(0), x.mean(0), atol=0.15 * float(span.max()), rtol=0)


def test_continuous_resampling_is_normal_around_the_neighbours_value_with_sd_gap_over_s():
    rng = np.random.default_rng(0)
    a, b = np.full(20000, 2.0), np.full(20000, 5.0)
    new_a, new_b = swap_or_resample(a, b, np.ones(20000, bool), 4.0, np.zeros(20000, bool), rng)
    assert new_a.mean() == pytest.approx(5.0, abs=0.02) and new_b.mean() == pytest.approx(2.0, abs=0.02)
    assert new_a.std() == pytest.approx(3.0 / 4.0, rel=0.03) and new_b.std() == pytest.approx(0.75, rel=0.03)
    kept_a, kept_b = swap_or_resample(a[:5], b[:5], np.zeros(5, bool), 4.0, np.zeros(5, bool), rng)
    assert (kept_a == 2.0).all() and (kept_b == 5.0).all()


def test_nominal_attributes_are_swapped_never_invented():
    g = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randint(0, 4, (40, 3), generator=g).float(), torch.randn(40, 2, generator=g)], dim=1)
    nominal = torch.tensor([True, True, True, False, False])
    out = munge(x, multiplier=3, p=0.7, s=10.0, nominal=nominal, seed=0)
    for k in range(3):  # swapping within a pass keeps each nominal column's multiset
        block = out[k * 40:(k + 1) * 40]
        torch.testing.assert_close(block[:, :3].sort(0).values, x[:, :3].sort(0).values, rtol=0, atol=0)
    assert not torch.equal(out[:40, :3], x[:, :3])  # but values did move between examples
    assert not torch.isin(out[:, 3:], x[:, 3:]).all()  # continuous ones are resampled


def test_nearest_neighbour_is_euclidean_on_scaled_attributes_and_never_itself():
    t = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 1.0], [1000.0, 1.0]])
    span = t.max(0) - t.min(0)
    assert nearest_neighbour(t, 0, span, np.zeros(2, bool)) == 1  # scaled: 0.1 away vs 1.0
    assert nearest_neighbour(t, 0, np.ones(2), np.zeros(2, bool)) == 2  # unscaled it would be row 2
    same = np.array([[1.0, 2.0], [1.0, 2.0], [5.0, 5.0]])
    assert nearest_neighbour(same, 0, np.ones(2), np.zeros(2, bool)) == 1  # a duplicate, not itself
    nominal = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]])  # nominal: any difference counts 1
    assert nearest_neighbour(nominal, 0, np.ones(2), np.array([True, False])) in (1, 2)


def test_examples_and_neighbours_are_munged_in_place_in_order():
    """p = 1 and a huge s turn resampling into swapping; follow the paper's loop by hand."""
    x = torch.tensor([[0.0, 0.0], [10.0, 10.0], [1.0, 1.0]], dtype=torch.float64)
    # e0's neighbour is e2: swap -> [1,1],[10,10],[0,0]; e1's is now e0: swap -> [10,10],[1,1],[0,0];
    # e2's is now e1: swap -> [10,10],[0,0],[1,1]
    out = munge(x, multiplier=1, p=1.0, s=1e12, seed=0)
    torch.testing.assert_close(out, torch.tensor([[10.0, 10.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64))


@pytest.mark.parametrize("kwargs, word", [
    ({"p": -0.1}, "p"), ({"p": 1.5}, "p"), ({"s": 0.0}, "s"), ({"s": float("nan")}, "s"),
    ({"multiplier": 0}, "multiplier"), ({"multiplier": 2.5}, "multiplier"),
    ({"nominal": torch.tensor([True, False])}, "nominal"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        munge(data(), **{"multiplier": 2, "p": 0.5, "s": 10.0, **kwargs})


def test_bad_data_raises_value_error_naming_x():
    bad = data()
    bad[3, 2] = float("nan")
    for x in (bad, data()[0], data()[:1]):
        with pytest.raises(ValueError, match="x"):
            munge(x, multiplier=2, p=0.5, s=10.0)


def test_ensemble_averages_member_probabilities():
    members = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = data(n=7, d=4)
    out = ProbabilityAverage(members)(x)
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    torch.testing.assert_close(out.softmax(1), expected)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(7))


def test_ensemble_members_differ_are_frozen_and_cached_apart_from_the_full_data_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    full = toy_split(n=60)
    small = full.with_labelled_fraction(0.5)
    spec, config = ModelSpec("mlp", hidden=(4,)), TrainConfig(epochs=1)
    get_teacher(full, spec, config)
    ensemble = small_data_ensemble(small, spec, config, n_members=3)
    assert len(list(tmp_path.glob("*.pt"))) == 1 + 3  # one file per member, none reused
    weights = [m.head.weight for m in ensemble.members]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert not ensemble.training and all(not m.training for m in ensemble.members)
    assert all(not p.requires_grad for p in ensemble.parameters())


def test_transfer_set_targets_stay_aligned_with_pseudo_inputs(monkeypatch):
    split = toy_split()
    ensemble = ProbabilityAverage([torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)]).eval()
    x, targets = ensemble_transfer_set(split.x_train, ensemble, multiplier=4, p=0.5, s=10.0, seed=0)
    assert x.shape == (5 * 24, 5) and targets.shape == (5 * 24, 3)
    assert torch.equal(x[:24], split.x_train)  # the originals first, then the pseudo-data
    rows = torch.tensor([3, 77, 50, 119, 24])
    torch.testing.assert_close(targets[rows], predict_logits(ensemble, x[rows]))

    ctx = Context(split, None, None, ModelSpec("mlp", hidden=(4,)), TrainConfig(epochs=1), seed=0)
    seen = {}

    def fake_train(self, student, n, batch_loss, **kwargs):
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(2))[:9]
        seen["n"], seen["loss"] = n, float(batch_loss(idx).detach())
        seen["expected"] = float(soft_target_kl(student(x[idx]), predict_logits(ensemble, x[idx]), 1.0).detach())

    monkeypatch.setattr(Context, "fit", fake_train)
    munge_module.mimic_student(ctx, multiplier=4, p=0.5, s=10.0, ensemble=ensemble)
    assert seen["n"] == 5 * 24
    assert seen["loss"] == pytest.approx(seen["expected"], rel=1e-5)
