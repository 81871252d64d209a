"""Evaluation: accuracy, per-class accuracy, agreement with the teacher, calibration,
size and CPU latency."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .models import n_params
from .train import predict_logits


@dataclass
class Evaluation:
    accuracy: float
    per_class_accuracy: list[float]
    teacher_agreement: float | None  # fraction of test inputs where argmax matches the teacher's
    ece: float  # expected calibration error, 15 equal-width confidence bins
    n_params: int
    latency_us: float | None  # CPU inference latency per sample, batch of 1, microseconds

    def as_dict(self) -> dict:
        return asdict(self)


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = 15) -> float:
    """sum_b |B_b|/n * |acc(B_b) - conf(B_b)| over equal-width confidence bins (Guo et al. 2017)."""
    confidence, predicted = probs.max(dim=1)
    correct = predicted.eq(labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


@torch.no_grad()
def latency_per_sample(model: nn.Module, x: Tensor, samples: int = 200) -> float:
    model.eval()
    rows = x[:samples]
    for row in rows[:20]:  # warm-up
        model(row[None])
    start = time.perf_counter()
    for row in rows:
        model(row[None])
    return (time.perf_counter() - start) / len(rows) * 1e6


def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, teacher_logits: Tensor | None = None,
             n_classes: int | None = None, latency: bool = False) -> Evaluation:
    logits = predict_logits(model, x)
    predicted = logits.argmax(dim=1)
    n_classes = n_classes or logits.shape[1]
    per_class = [float(predicted[y == c].eq(c).float().mean()) if (y == c).any() else float("nan")
                 for c in range(n_classes)]
    agreement = None
    if teacher_logits is not None:
        agreement = float(predicted.eq(teacher_logits.argmax(dim=1)).float().mean())
    return Evaluation(
        accuracy=float(predicted.eq(y).float().mean()),
        per_class_accuracy=per_class,
        teacher_agreement=agreement,
        ece=expected_calibration_error(torch.softmax(logits, dim=1), y),
        n_params=n_params(model),
        latency_us=latency_per_sample(model, x) if latency else None,
    )
