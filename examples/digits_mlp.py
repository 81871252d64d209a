"""Distil a wide MLP into a narrow one on scikit-learn's 8x8 digits, with your own models.

    .venv/bin/python examples/digits_mlp.py [--epochs 100] [--seed 0]

The models are plain `nn.Sequential`s, nothing from the project's zoo. The teacher and the
baseline student are trained on the labels with `train_on_labels`, the distilled student
with `distill`; all three with the same budget, batches and seed, the epoch chosen on a
validation split, and scored once on a test split no choice looked at.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from reference_impl import distill, train_on_labels


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model.eval()(x).argmax(1).eq(y).float().mean())


def main(epochs: int = 100, seed: int = 0) -> dict[str, float]:
    started = time.perf_counter()
    x, y = load_digits(return_X_y=True)  # (1797, 64) pixel intensities 0-16, 10 classes
    x_rest, x_test, y_rest, y_test = train_test_split(x / 16, y, test_size=0.25, stratify=y, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.2, stratify=y_rest, random_state=0)
    to = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    train, val = (to(x_train), to(y_train, torch.int64)), (to(x_val), to(y_val, torch.int64))
    test = to(x_test), to(y_test, torch.int64)

    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    student = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))  # 610 parameters against 82,698
    baseline = copy.deepcopy(student)  # the same initial weights, trained on labels only

    train_on_labels(teacher, train, validation=val, epochs=epochs, seed=seed)
    train_on_labels(baseline, train, validation=val, epochs=epochs, seed=seed)
    result = distill(teacher, student, train, technique="soft_targets", validation=val, epochs=epochs, seed=seed,
                     temperature=4.0, alpha=0.9)
    scores = {"teacher": accuracy(teacher, *test), "student on labels": accuracy(baseline, *test),
              "distilled student": accuracy(result.student, *test), "seconds": time.perf_counter() - started}
    for name, value in scores.items():
        print(f"{name:<18} {value:.3f}" if name != "seconds" else f"{name:<18} {value:.1f}")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.epochs, args.seed)
