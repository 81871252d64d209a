"""The forward-hook feature capture shared by feature-based techniques."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reference_impl.harness import ModelSpec, build_model, load_split
from reference_impl.harness.hooks import capture, predict_features


@pytest.fixture(scope="module")
def split():
    return load_split("digits")  # 8x8 images: 2-D CNNs


def cnn(split, channels=(8, 16), seed=0):
    torch.manual_seed(seed)
    return build_model(ModelSpec("cnn", channels=channels), split)


def test_captures_the_outputs_of_the_named_modules(split):
    model = cnn(split)
    x = split.x_train[:5]
    with capture(model, ["blocks.0", "blocks.1", "head"]) as feats:
        logits = model(x)
    by_hand0 = model.blocks[0](x.view(5, 1, 8, 8))
    torch.testing.assert_close(feats["blocks.0"], by_hand0)
    torch.testing.assert_close(feats["blocks.1"], model.blocks[1](by_hand0))
    assert feats["blocks.0"].shape == (5, 8, 4, 4) and feats["blocks.1"].shape == (5, 16, 2, 2)
    assert feats["head"] is logits  # the output itself, not a copy


def test_each_forward_overwrites_and_mlp_layers_work_too(split):
    mlp = build_model(ModelSpec("mlp", hidden=(32, 16)), split)
    with capture(mlp, ["body.relu1", "body.fc2"]) as feats:
        mlp(split.x_train[:3])
        mlp(split.x_train[3:10])
    assert feats["body.relu1"].shape == (7, 32) and feats["body.fc2"].shape == (7, 16)
    assert (feats["body.relu1"] >= 0).all()


def test_hooks_are_removed_after_the_block_even_on_error(split):
    model = cnn(split)
    block = model.blocks[0]
    with capture(model, ["blocks.0"]) as feats:
        assert len(block._forward_hooks) == 1
        model(split.x_train[:2])
    assert len(block._forward_hooks) == 0
    feats.clear()
    model(split.x_train[:2])
    assert feats == {}  # nothing recorded once the block has exited
    with pytest.raises(RuntimeError):
        with capture(model, ["blocks.0", "blocks.1"]):
            raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_teacher_under_no_grad_and_student_with_gradients(split):
    teacher, student = cnn(split, (16, 32), seed=1), cnn(split, (8, 16), seed=2)
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = split.x_train[:4]
    with torch.no_grad(), capture(teacher, ["blocks.1"]) as t_feats:
        teacher(x)
    with capture(student, ["blocks.1"]) as s_feats:
        student(x)
    assert not t_feats["blocks.1"].requires_grad and t_feats["blocks.1"].grad_fn is None
    assert s_feats["blocks.1"].requires_grad
    s_feats["blocks.1"].pow(2).mean().backward()  # a loss on the features alone trains the layers below
    assert student.blocks[0][0].weight.grad is not None and student.blocks[1][0].weight.grad.abs().sum() > 0
    assert student.head.weight.grad is None


def test_predict_features_matches_capture_row_by_row_and_restores_mode(split):
    model = cnn(split)
    model.train()
    x = split.x_train[:50]
    feats = predict_features(model, x, ["blocks.0", "blocks.1"], batch_size=16)  # several chunks
    assert model.training
    assert not feats["blocks.1"].requires_grad
    with torch.no_grad(), capture(model, ["blocks.1"]) as one:
        model(x[17:18])
    torch.testing.assert_close(feats["blocks.1"][17:18], one["blocks.1"])
    assert feats["blocks.0"].shape[0] == 50


def test_unknown_or_bad_names_raise_value_error_before_hooking(split):
    model = cnn(split)
    with pytest.raises(ValueError, match="names"):
        with capture(model, ["blocks.0", "blocks.7"]):
            pass
    with pytest.raises(ValueError, match="names"):
        with capture(model, "blocks.0"):  # a string, not a list of names
            pass
    with pytest.raises(ValueError, match="names"):
        with capture(model, []):
            pass
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_works_on_any_module_tree():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with capture(net, ["1"]) as feats:
        net(torch.ones(2, 3))
    torch.testing.assert_close(feats["1"], torch.tanh(net[0](torch.ones(2, 3))))
