"""The shared harness: data, models, training, teachers, evaluation, statistics, RDF."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness import ModelSpec, TrainConfig, build_model, evaluate, load_split, n_params, train
from reference_impl.harness.train import Validation
from reference_impl.harness.evaluate import expected_calibration_error
from reference_impl.harness.teachers import get_teacher
from reference_impl.harness.train import freeze, predict_logits


@pytest.mark.parametrize("name, n_train, n_val, n_test, features", [
    ("digits", 1078, 269, 450, 64), ("mnist1d", 4000, 1000, 12000, 40), ("mnist", 3200, 800, 1000, 784)])
def test_datasets_offline_with_fixed_split(name, n_train, n_val, n_test, features):
    split = load_split(name)
    assert split.x_train.shape == (n_train, features) and split.x_test.shape == (n_test, features)
    assert split.x_val.shape == (n_val, features) and split.y_val.shape == (n_val,)
    assert split.y_train.dtype == torch.int64 and set(split.y_test.tolist()) == set(range(10))
    assert set(split.y_val.tolist()) == set(range(10))
    load_split.cache_clear()
    again = load_split(name)
    assert torch.equal(split.x_test, again.x_test) and torch.equal(split.y_train, again.y_train)
    assert torch.equal(split.x_val, again.x_val)
    # the three splits share no input
    train_rows = {tuple(r.tolist()) for r in split.x_train}
    assert not train_rows & {tuple(r.tolist()) for r in split.x_val}
    assert not train_rows & {tuple(r.tolist()) for r in split.x_test[:2000]}


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_split("imagenet")


def test_labelled_fraction_is_stratified_and_disjoint():
    full = load_split("mnist1d")
    part = full.with_labelled_fraction(0.03, seed=0)
    per_class = torch.bincount(full.y_train).tolist()
    assert torch.bincount(part.y_train).tolist() == [max(1, round(0.03 * n)) for n in per_class]  # stratified
    assert len(part.x_unlabelled) == 4000 - len(part.y_train)
    other = full.with_labelled_fraction(0.03, seed=1)  # the subset is drawn per seed
    assert not torch.equal(part.x_train, other.x_train)
    rows = {tuple(r.tolist()) for r in part.x_train}
    assert not rows & {tuple(r.tolist()) for r in part.x_unlabelled[:500]}
    assert torch.equal(part.x_train, full.with_labelled_fraction(0.03, seed=0).x_train)
    with pytest.raises(ValueError, match="fraction"):
        full.with_labelled_fraction(0.0)


@pytest.mark.parametrize("spec", [ModelSpec("mlp", hidden=(32, 16)), ModelSpec("cnn", channels=(8, 16), fc=32)])
@pytest.mark.parametrize("dataset", ["digits", "mnist1d"])
def test_models_map_flat_batches_to_logits(spec, dataset):
    split = load_split(dataset)
    model = build_model(spec, split)
    assert model(split.x_train[:5]).shape == (5, 10)
    assert model.features(split.x_train[:5]).shape == (5, model.feature_dim)
    assert n_params(model) == sum(p.numel() for p in model.parameters()) > 0


def test_training_is_deterministic():
    split = load_split("digits")
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(ModelSpec("mlp", hidden=(16,)), split)
        x, y = split.x_train, split.y_train
        train(model, len(y), lambda idx: F.cross_entropy(model(x[idx]), y[idx]), TrainConfig(epochs=2, seed=3))
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_cached_teacher_outputs_stay_aligned_with_shuffled_samples():
    """Indexing inputs and cached outputs with the same batch indices keeps them in line."""
    split = load_split("digits")
    teacher = freeze(build_model(ModelSpec("mlp", hidden=(8,)), split))
    cached = predict_logits(teacher, split.x_train)
    student = build_model(ModelSpec("mlp", hidden=(8,)), split)
    checked = []

    def batch_loss(idx):
        assert not torch.equal(idx, torch.arange(len(idx)))  # shuffled
        torch.testing.assert_close(cached[idx], teacher(split.x_train[idx]))
        checked.append(len(idx))
        return F.mse_loss(student(split.x_train[idx]), cached[idx])

    train(student, len(split.y_train), batch_loss, TrainConfig(epochs=2, batch_size=128))
    assert sum(checked) == 2 * len(split.y_train)


def test_teacher_is_cached_frozen_and_keyed_by_config(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    split = load_split("digits")
    spec, config = ModelSpec("mlp", hidden=(16,)), TrainConfig(epochs=3)
    t0 = time.perf_counter()
    first = get_teacher(split, spec, config)
    trained = time.perf_counter() - t0
    assert len(list(tmp_path.glob("*.pt"))) == 1
    import reference_impl.harness.teachers as teachers
    monkeypatch.setattr(teachers, "train_supervised", lambda *a, **k: pytest.fail("retrained a cached teacher"))
    second = get_teacher(split, spec, config)
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)
    assert not second.training and not any(p.requires_grad for p in second.parameters())
    monkeypatch.undo()
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    get_teacher(split, spec, replace(config, epochs=4))  # another config: another teacher
    assert len(list(tmp_path.glob("*.pt"))) == 2
    assert trained >= 0


def test_evaluation_metrics():
    split = load_split("digits")
    model = build_model(ModelSpec("mlp", hidden=(16,)), split)
    ev = evaluate(model, split.x_test, split.y_test, teacher_logits=predict_logits(model, split.x_test), latency=True)
    assert ev.teacher_agreement == 1.0  # a model agrees with itself
    assert 0 <= ev.accuracy <= 1 and len(ev.per_class_accuracy) == 10 and ev.latency_us > 0
    # a perfectly confident, always-right predictor is perfectly calibrated; always-wrong is maximally off
    y = torch.tensor([0, 1, 2, 1])
    assert expected_calibration_error(F.one_hot(y, 3).float(), y) == pytest.approx(0.0)
    assert expected_calibration_error(F.one_hot((y + 1) % 3, 3).float(), y) == pytest.approx(1.0)


def test_the_epoch_is_chosen_on_validation_and_its_weights_kept():
    split = load_split("digits")
    model = build_model(ModelSpec("mlp", hidden=(16,)), split)
    x, y = split.x_train, split.y_train
    validation = Validation(model, split.x_val, split.y_val)
    snapshots = []
    original_score = validation.score

    def score() -> float:  # record the weights each epoch was scored with
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return original_score()

    validation.score = score
    train(model, len(y), lambda idx: F.cross_entropy(model(x[idx]), y[idx]), TrainConfig(epochs=12, patience=3),
          validation=validation)
    scores = validation.scores
    assert validation.best_epoch == scores.index(max(scores)) + 1  # the first best (ties: shorter budget)
    for k, v in model.state_dict().items():  # the model ends with the best epoch's weights
        assert torch.equal(v, snapshots[validation.best_epoch - 1][k])
    assert len(scores) == 12 or len(scores) - validation.best_epoch == 3  # ran out, or stopped after patience
    assert validation.best_score == original_score()
    with pytest.raises(ValueError, match="validation inputs"):
        Validation(model, split.x_val, split.y_val[:3])


def test_patience_default_scales_with_the_budget():
    assert TrainConfig(epochs=100).stopping_patience() == 25
    assert TrainConfig(epochs=20).stopping_patience() == 10
    assert TrainConfig(epochs=100, patience=5).stopping_patience() == 5
