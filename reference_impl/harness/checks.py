"""Input checks shared by every loss: bad input raises ValueError naming the argument."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_positive(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_finite(tensor: Tensor, name: str) -> None:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; they must match")


def check_logits(student_logits: Tensor, teacher_logits: Tensor | None = None, labels: Tensor | None = None,
                 *, student_name: str = "student_logits", teacher_name: str = "teacher_logits") -> None:
    """(batch, classes) logits, finite, with matching teacher logits and labels in range.

    Called on every training step, so the value checks cost one synchronisation in all:
    the finiteness of both tensors and the label range are reduced together, and which
    argument is at fault is worked out only when something is wrong.
    """
    for tensor, name in ((student_logits, student_name), (teacher_logits, teacher_name)):
        if tensor is not None and not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if student_logits.dim() != 2:
        raise ValueError(f"{student_name} must be 2-D (batch, classes), got shape {tuple(student_logits.shape)}")
    if teacher_logits is not None:
        check_same_shape(student_logits, teacher_logits, student_name, teacher_name)
    if labels is not None:
        if labels.dim() != 1 or labels.shape[0] != student_logits.shape[0]:
            raise ValueError(f"labels must be 1-D with {student_logits.shape[0]} entries, got shape {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    with torch.no_grad():
        ok = torch.isfinite(student_logits).all()
        if teacher_logits is not None:
            ok = ok & torch.isfinite(teacher_logits).all()
        if labels is not None and labels.numel():
            low, high = torch.aminmax(labels)
            ok = ok & (low >= 0) & (high < student_logits.shape[1])
        if bool(ok):
            return
    check_finite(student_logits, student_name)
    if teacher_logits is not None:
        check_finite(teacher_logits, teacher_name)
    raise ValueError(f"labels must be in [0, {student_logits.shape[1]}), got range "
                     f"[{int(labels.min())}, {int(labels.max())}]")
