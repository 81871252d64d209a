"""What every token-level loss shares: input checks, and the masked mean with a normaliser.

Token-level losses take logits (B, L, V) from any model (the harness's, a Hugging Face
model's `.logits`) and a `mask` (B, L) that is 1 exactly on the positions whose next-token
distribution the loss may use: the response tokens and the EOS, never the prompt or
padding. The mask, not the token ids, decides, so it stays right when the pad token is
the EOS token (as in many Hugging Face tokenizers).

**Normalisation.** A loss is sum over masked positions / `normalizer`, where `normalizer`
defaults to the number of masked positions in the batch. With gradient accumulation over
micro-batches of different lengths, pass the *whole batch's* token count to every
micro-batch: the micro-batch losses then add up to exactly the whole batch's loss. (The
default per-micro-batch mean would weight a token of a short micro-batch more than one of
a long micro-batch.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_finite, check_positive


def check_token_logits(student_logits: Tensor, teacher_logits: Tensor | None, mask: Tensor) -> None:
    """(B, L, V) logits, matching teacher logits (same vocabulary), a (B, L) mask of 0/1."""
    for tensor, name in ((student_logits, "student_logits"), (teacher_logits, "teacher_logits"), (mask, "mask")):
        if tensor is not None and not isinstance(tensor, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if student_logits.dim() != 3:
        raise ValueError(f"student_logits must be 3-D (batch, length, vocabulary), got shape "
                         f"{tuple(student_logits.shape)}")
    if teacher_logits is not None:
        if teacher_logits.shape[-1] != student_logits.shape[-1]:
            raise ValueError(f"teacher and student vocabularies differ ({teacher_logits.shape[-1]} vs "
                             f"{student_logits.shape[-1]} entries in the last dimension): a token-level loss needs "
                             "one shared vocabulary; use a cross-tokenizer method for different tokenizers")
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(f"teacher_logits has shape {tuple(teacher_logits.shape)} but student_logits has shape "
                             f"{tuple(student_logits.shape)}; they must match")
        check_finite(teacher_logits, "teacher_logits")
    check_finite(student_logits, "student_logits")
    if mask.shape != student_logits.shape[:2]:
        raise ValueError(f"mask must be (batch, length) = {tuple(student_logits.shape[:2])}, got {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1 (1: a response token or EOS the loss uses)")


def token_mean(per_token: Tensor, mask: Tensor, normalizer: float | None = None) -> Tensor:
    """sum_t mask_t * per_token_t / normalizer; normalizer defaults to sum_t mask_t (the batch's
    token count). A batch with no masked token gives 0 (and a gradient of 0), not NaN."""
    mask = mask.to(per_token.dtype)
    total = (per_token * mask).sum()
    if normalizer is None:
        count = mask.sum()
        return total / count.clamp(min=1)
    check_positive(normalizer, "normalizer")
    return total / normalizer


def shift_for_next_token(rows: Tensor, attention: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """From full rows (B, L) with their attention mask and the mask of tokens a loss may score,
    the decoder's inputs (B, L-1), their attention mask, the labels (B, L-1) and the loss mask
    (B, L-1): position t of the logits predicts labels[:, t] = rows[:, t + 1]."""
    return rows[:, :-1], attention[:, :-1], rows[:, 1:], target[:, 1:].float()


def per_token_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """-log q(label_t): (B, L). Labels on masked-out positions may be anything in range."""
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape)
