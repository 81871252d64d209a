"""Skew KL divergence for language-model distillation, DistiLLM (Ko et al. 2024,
arXiv:2402.03898, ICML 2024, section 3.1: the definitions of SKL and SRKL).

The forward KL(p ‖ q_θ) explodes where the student gives a token the teacher likes almost no
probability, and the reverse KL(q_θ ‖ p) where the teacher gives the student's token almost
none; both make the gradients large and unstable early in training. DistiLLM mixes a little
of the other distribution into the denominator, which bounds the ratio by 1/α:

    skew KL          SKL^(α)(p, q_θ)  = KL( p   ‖ α p + (1 - α) q_θ )
    skew reverse KL  SRKL^(α)(p, q_θ) = KL( q_θ ‖ (1 - α) p + α q_θ )

(p the teacher, q_θ the student, per next-token distribution). α = 0 gives back the forward
and reverse KL; the paper uses α = 0.1. The mixture is computed in log space (logsumexp),
and the gradient reaches the student through both its own distribution and the mixture.
DistiLLM's second part, an adaptive off-policy replay of student-generated outputs (its
section 3.2), is not implemented here: this module isolates the divergence. (Training on the
student's own outputs, on-policy, is GKD's, `generalized_kd.py`.)

Claim tested (EXPERIMENTS): the skew KL (α = 0.1) distils better than the plain forward KL on
the same data (the paper's v2 compares SKL and SRKL with KLD and RKLD, everything else fixed,
in section 3.1, Table 1, by a secondary reading of its contents; see also its section 5).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.checks import check_positive
from reference_impl.harness.lm.bench import DATA_BASELINE, DIALECTS, SequenceContext, SequenceExperiment
from reference_impl.harness.lm.tokens import check_token_logits, token_mean
from reference_impl.techniques.token_level_kd import token_kd_student

CONCEPT = "SkewKLDistillation"
FAMILY = "language model"
DIRECTIONS = ("forward", "reverse")


def skew_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, *, alpha: float = 0.1,
            direction: str = "forward", temperature: float = 1.0, normalizer: float | None = None) -> Tensor:
    """Masked mean over tokens of SKL^(α) (direction="forward") or SRKL^(α) ("reverse"), times T². Logits (B, L, V), mask (B, L); the teacher side is detached."""
    if not (isinstance(alpha, (int, float)) and 0 <= alpha < 1):
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    check_positive(temperature, "temperature")
    check_token_logits(student_logits, teacher_logits, mask)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)  # student, (B, L, V)
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)  # teacher

    def log_mix(weight_p: float) -> Tensor:  # log(w p + (1 - w) q)
        if weight_p == 0:
            return log_q
        return torch.logsumexp(torch.stack([log_p + math.log(weight_p), log_q + math.log(1 - weight_p)]), dim=0)
    if direction == "forward":
        per_token = (log_p.exp() * (log_p - log_mix(alpha))).sum(-1)  # KL(p ‖ αp + (1-α)q)
    else:
        log_m = log_mix(1 - alpha) if alpha > 0 else log_p
        per_token = (log_q.exp() * (log_q - log_m)).sum(-1)  # KL(q ‖ (1-α)p + αq)
    return temperature ** 2 * token_mean(per_token, mask, normalizer)


def skew_kl_student(ctx: SequenceContext, *, alpha: float = 0.1, direction: str = "forward",
                    temperature: float = 1.0) -> nn.Module:
    """A student trained with the skew KL to the frozen teacher on the training rows."""
    student = ctx.new_student()
    split = ctx.task.train
    inputs, mask, teacher_logits = split.inputs, split.loss_mask, ctx.teacher_train_logits
    T = ctx.softening(temperature)

    def batch_loss(idx: Tensor) -> Tensor:
        return skew_kl(student(inputs[idx]), teacher_logits[idx], mask[idx], alpha=alpha, direction=direction,
                       temperature=T)
    ctx.fit(student, len(split), batch_loss, desc=f"student (skew {direction} KL, α = {alpha:g})")
    return student


EXPERIMENTS = [
    SequenceExperiment(
        key="skl-vs-kl",
        # CPU budget: about 3.4 CPU-minutes a seed (four arms); scripts/decisive_cost.py asked for 270 seeds at
        # the first run's sd, out of reach, so the cap is the method's floor of 5 and the result records its MDE
        max_seeds=5,
        first_seed=100,
        rerun_reason="The first run (seeds 0-4, 2026-11) had 5 seeds set on the command line, not planned: "
                     "-0.04 points (interval -4.76 to +4.67, sd 3.80), inconclusive. This run supersedes it with "
                     "fresh seeds planned by the project's method, capped at 5 by the CPU budget.",
        prior_sd=0.0380, prior_seeds=5,
        title="Skew KL (α = 0.1) vs forward KL, same data and student (dialects, greedy decoding)",
        claim=Claim("Distilling with the skew KL divergence yields a better student than distilling with the "
                    "plain KL divergence.",
                    "arXiv:2402.03898v2, section 3.1, Table 1 (SKL and SRKL against KLD and RKLD, everything else "
                    "fixed); see also section 5",
                    treatment="skl", reference="kl"),
        **DIALECTS, temperature=1.0,
        metric="greedy_validity",
        arms=(DATA_BASELINE,
              Arm("kl", "forward KL to the teacher per token (word-level KD)",
                  lambda ctx: token_kd_student(ctx, direction="forward")),
              Arm("skl", "skew forward KL, α = 0.1", lambda ctx: skew_kl_student(ctx, alpha=0.1)),
              Arm("srkl", "skew reverse KL, α = 0.1",
                  lambda ctx: skew_kl_student(ctx, alpha=0.1, direction="reverse"))),
        notes="α = 0.1 is the paper's value. All distillation arms train on the data's rows under teacher "
              "forcing (no student-generated outputs), so the comparison isolates the divergence.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
