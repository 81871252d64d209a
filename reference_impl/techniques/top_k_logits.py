"""Offline top-k logit distillation: the teacher's k most likely next tokens per position,
stored once, instead of its full distribution (as distillation toolkits such as DistillKit
and TRL offer, to save the storage and the teacher passes of full-vocabulary logits), and the
bias this introduces (Anshumann et al. 2025, arXiv:2503.16870, "Sparse Logit Sampling").

For each position the cache holds the indices S_k of the top k tokens, their log-probabilities
log p_i (i ∈ S_k) and the tail mass τ = 1 - Σ_{i ∈ S_k} p_i. Two ways to distil from it:

    renormalised:  p̂_i = p_i / (1 - τ) on S_k, 0 elsewhere;   L = Σ_{i ∈ S_k} p̂_i (log p̂_i - log q_i)
    tail bucket:   KL over the k + 1 outcomes {S_k, "any other token"}:
                   L = Σ_{i ∈ S_k} p_i (log p_i - log q_i) + τ (log τ - log q_tail),  q_tail = 1 - Σ_{i ∈ S_k} q_i

The renormalised target is the full distribution conditioned on S_k: its KL from the truth is
KL(p̂ ‖ p) = -log(1 - τ) per position (`renormalisation_bias`), and it teaches the student to
give the tail nothing (over-confidence; the paper's argument for sampling instead). The tail
bucket keeps the tail's total but not its shape. Both equal word-level KD's forward KL when
k = V. Positions are masked and normalised as everywhere in this family; the cache is indexed
by row, so it stays aligned with shuffled batches.

Claim tested (EXPERIMENTS): distilling from the full logits gives a better student than from
the renormalised top-k (the paper's finding that top-k KD is biased and does worse).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.lm.bench import DATA_BASELINE, DIALECTS, SequenceContext, SequenceExperiment
from reference_impl.harness.lm.tokens import check_token_logits, token_mean
from reference_impl.techniques.token_level_kd import token_kd_student

CONCEPT = "TopKLogitDistillation"
FAMILY = "language model"
TAILS = ("renormalise", "bucket")


@dataclass(frozen=True)
class TopKCache:
    indices: Tensor  # (N, L, k) int64: the teacher's k most likely tokens per position
    log_probs: Tensor  # (N, L, k): their log-probabilities under the full softmax
    tail_mass: Tensor  # (N, L): 1 - sum of their probabilities

    def __getitem__(self, idx: Tensor) -> "TopKCache":
        return TopKCache(self.indices[idx], self.log_probs[idx], self.tail_mass[idx])


def cache_top_k(teacher_logits: Tensor, k: int) -> TopKCache:
    """What a toolkit stores per position: top-k indices, their log-probabilities, the tail mass."""
    if not (isinstance(k, int) and 1 <= k <= teacher_logits.shape[-1]):
        raise ValueError(f"k must be an integer in [1, {teacher_logits.shape[-1]}] (the vocabulary), got {k!r}")
    log_p = F.log_softmax(teacher_logits.detach(), -1)
    top, indices = log_p.topk(k, dim=-1)
    tail = (1 - top.exp().sum(-1)).clamp(min=0)
    return TopKCache(indices, top, tail)


def top_k_kd_loss(student_logits: Tensor, cache: TopKCache, mask: Tensor, *, tail: str = "renormalise",
                  normalizer: float | None = None) -> Tensor:
    """Forward KL from the cached top-k teacher (renormalised, or with a tail bucket) to the
    student's full softmax, masked mean over positions. student_logits (B, L, V), mask (B, L)."""
    if tail not in TAILS:
        raise ValueError(f"tail must be 'renormalise' or 'bucket', got {tail!r}")
    check_token_logits(student_logits, None, mask)
    if cache.indices.shape[:2] != student_logits.shape[:2] or int(cache.indices.max()) >= student_logits.shape[-1]:
        raise ValueError(f"the cache covers positions {tuple(cache.indices.shape[:2])} and token ids up to "
                         f"{int(cache.indices.max())}; student_logits are {tuple(student_logits.shape)}")
    log_q = F.log_softmax(student_logits, -1)
    log_q_k = log_q.gather(-1, cache.indices)  # (B, L, k): the student on the teacher's top-k tokens
    if tail == "renormalise":
        # p̂ = p / (1 - τ) on S_k
        log_p_hat = cache.log_probs - torch.log1p(-cache.tail_mass.clamp(max=1 - 1e-6))[..., None]
        per_token = (log_p_hat.exp() * (log_p_hat - log_q_k)).sum(-1)
    else:
        kept = (cache.log_probs.exp() * (cache.log_probs - log_q_k)).sum(-1)
        q_tail = (1 - log_q_k.exp().sum(-1)).clamp(min=1e-12)
        tau = cache.tail_mass
        # τ (log τ - log q_tail), with 0 log 0 = 0
        per_token = kept + torch.where(tau > 0, tau * (torch.log(tau.clamp(min=1e-12)) - torch.log(q_tail)), 0.0)
    return token_mean(per_token, mask, normalizer)


def renormalisation_bias(teacher_logits: Tensor, mask: Tensor, k: int) -> float:
    """Mean over masked positions of KL(p̂_k ‖ p) = -log(1 - τ_k): how far the renormalised
    top-k target is from the teacher's distribution (0 when the tail is empty)."""
    tail = cache_top_k(teacher_logits, k).tail_mass
    return float(token_mean(-torch.log1p(-tail.clamp(max=1 - 1e-6)), mask))


def top_k_student(ctx: SequenceContext, *, k: int = 2, tail: str = "renormalise") -> nn.Module:
    """A student distilled from the teacher's cached top-k on the training rows (teacher forcing)."""
    student = ctx.new_student()
    split = ctx.task.train
    inputs, mask = split.inputs, split.loss_mask
    cache = cache_top_k(ctx.teacher_train_logits, k)  # stored once, indexed by row

    def batch_loss(idx: Tensor) -> Tensor:
        return top_k_kd_loss(student(inputs[idx]), cache[idx], mask[idx], tail=tail)
    ctx.fit(student, len(split), batch_loss, desc=f"student (top-{k} logits, {tail})")
    return student


EXPERIMENTS = [
    SequenceExperiment(
        key="full-vs-top-k",
        title="Full-logit KD vs the teacher's cached top-k (renormalised, or with the tail mass)",
        claim=Claim("Distilling from the teacher's full distribution gives a better student than distilling from "
                    "its renormalised top-k probabilities, whose estimate of the teacher distribution is biased.",
                    "arXiv:2503.16870 (ACL 2025), abstract and its analysis of caching top-K probabilities (biased estimates of the teacher distribution, suboptimal performance and calibration)",
                    treatment="full", reference="top1"),
        **DIALECTS, metric="greedy_validity", teaching_epochs=15,
        arms=(DATA_BASELINE,
              Arm("full", "forward KL to the teacher's full distribution (word-level KD)",
                  lambda ctx: token_kd_student(ctx, direction="forward")),
              Arm("top1", "top-1 renormalised (the teacher's argmax as a one-hot target)",
                  lambda ctx: top_k_student(ctx, k=1)),
              Arm("top3", "top-3 renormalised", lambda ctx: top_k_student(ctx, k=3)),
              Arm("top3_tail", "top-3 with the tail mass as a bucket", lambda ctx: top_k_student(ctx, k=3, tail="bucket"))),
        notes="The vocabulary has 24 tokens; the claim compares full logits with top-1 (the strongest truncation), "
              "and the top-3 arms show how the gap changes with k and with the tail kept. The reference arm is "
              "the paper's worst case, chosen before any run.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
