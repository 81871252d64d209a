"""MiniLLM: sequence-level reverse-KL distillation by policy gradient (Gu et al. 2024,
arXiv:2306.08543, ICLR 2024, section 2.1-2.2).

The student q_θ minimises the reverse KL from itself to the teacher p over whole outputs,

    θ* = argmin_θ KL(q_θ ‖ p) = argmin_θ - E_{x, y ~ q_θ(·|x)} log [ p(y | x) / q_θ(y | x) ],

which is mode-seeking: the student is punished for outputs the teacher finds unlikely, not
for missing some of the teacher's modes. With per-token rewards r_t = log p(y_t | y_<t, x) -
log q_θ(y_t | y_<t, x), the policy gradient splits into (section 2.2):

    ∇L = E_{y ~ q_θ} [ - Σ_t ∇ E_{y_t ~ q_θ(t)} [r_t]          single-step part: the exact
                        - Σ_t R^Norm_{t+1} ∇ log q_θ(y_t | y_<t, x) ]   token reverse KL, and the long-term part

and the variance is reduced three ways, each here at small scale:
1. **single-step decomposition**: the first term is the token-level reverse KL summed exactly over
   the vocabulary at each generated prefix (differentiated, no sampling noise);
2. **teacher-mixed sampling**: y is sampled from p̃ = α p + (1 - α) q_θ (α = 0.2), and each token
   is re-weighted by w_t = q_θ(y_t | ·) / p̃(y_t | ·) (the paper's one-token approximation of the
   sequence importance weight; bounded by 1 / (1 - α));
3. **length normalisation**: R^Norm_{t+1} = mean of r_t' over t' > t (0 at the last token), so long
   outputs are not rewarded for their length. (The paper's Eq. 6 divides the T - t terms of
   Σ_{t'=t+1}^{T} r_t' by T - t - 1, one fewer, which is undefined at t = T - 1; we take the mean.)
Rewards and weights are detached: only log q_θ and the exact KL carry gradients. The paper's
language-modelling loss on a pre-training corpus is omitted (there is no such corpus here).

As in the paper's Algorithm 1 (its first step), the policy gradient starts from the student
fine-tuned on the data (SFT, its epoch chosen on validation), not from random weights: from
random weights the student's own samples are never valid, every reward is about equally bad,
and on our task validation chose the first epoch with no valid sample on every seed (a
3-seed run, before this warm-up was added). The MiniLLM arm therefore trains twice as long
as the others (SFT, then up to the same budget of policy-gradient epochs).

Claims tested (EXPERIMENTS): on a teacher with several modes, reverse-KL students produce outputs
the truth rates possible more often (precision), and forward-KL students cover more of the modes
(recall).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.lm.bench import (DATA_BASELINE, DIALECTS, SequenceContext, SequenceExperiment,
                                             scratch_sequence_student)
from reference_impl.harness.lm.generate import decode, join
from reference_impl.harness.lm.metrics import MAX_NEW_TOKENS
from reference_impl.harness.lm.tokens import shift_for_next_token
from reference_impl.techniques.token_level_kd import token_kd_student

CONCEPT = "ReverseKLDistillation"
FAMILY = "language model"


@torch.no_grad()
def sample_mixed(student: nn.Module, teacher: nn.Module, prompts: Tensor, mask: Tensor, *, alpha: float,
                 generator: torch.Generator) -> Tensor:
    """Continuations (B, T) sampled token by token from p̃ = α p_teacher + (1 - α) q_student, EOS then PAD."""
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha (the teacher's share of the sampling mixture) must be in [0, 1), got {alpha!r}")

    def next_token(tokens: Tensor, attention: Tensor) -> Tensor:
        q = torch.softmax(student(tokens, attention)[:, -1], -1)  # (B, V)
        p = torch.softmax(teacher(tokens, attention)[:, -1], -1)
        return torch.multinomial(alpha * p + (1 - alpha) * q, 1, generator=generator).squeeze(1)
    was_training = student.training
    student.eval()
    try:
        return decode(next_token, prompts, mask, max_new_tokens=MAX_NEW_TOKENS)
    finally:
        student.train(was_training)


def minillm_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, mask: Tensor, *,
                 alpha: float = 0.2) -> Tensor:
    """The surrogate loss whose gradient is MiniLLM's (single-step + length-normalised long-term part,
    importance-weighted for teacher-mixed sampling), per generated token. student_logits and
    teacher_logits (B, L, V) score the sampled rows `labels` (B, L) at the positions `mask` (B, L)."""
    if student_logits.shape != teacher_logits.shape or labels.shape != mask.shape \
            or labels.shape != student_logits.shape[:2]:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                         f"{tuple(teacher_logits.shape)} must be (B, L, V) and labels {tuple(labels.shape)}, mask "
                         f"{tuple(mask.shape)} must be (B, L)")
    log_q = F.log_softmax(student_logits, -1)  # (B, L, V), with gradient
    log_p = F.log_softmax(teacher_logits.detach(), -1)
    log_q_y = log_q.gather(-1, labels[..., None])[..., 0]  # (B, L): log q_θ(y_t | ·)
    log_p_y = log_p.gather(-1, labels[..., None])[..., 0]
    with torch.no_grad():
        reward = (log_p_y - log_q_y) * mask  # r_t, (B, L)
        # w_t = q / (α p + (1 - α) q), the one-token importance weight of teacher-mixed sampling
        weight = log_q_y.exp() / (alpha * log_p_y.exp() + (1 - alpha) * log_q_y.exp())
        # R^Norm_{t+1}: the mean reward of the tokens after t (suffix sums / suffix counts)
        later_sum = reward.flip(1).cumsum(1).flip(1) - reward
        later_count = mask.flip(1).cumsum(1).flip(1) - mask
        long_term = later_sum / later_count.clamp(min=1)
    # single-step part: E_{y_t ~ q}[-r_t] = KL(q_θ(·|t) ‖ p(·|t)), exact over the vocabulary
    single = (log_q.exp() * (log_q - log_p)).sum(-1)
    per_token = weight * (single - long_term * log_q_y)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def minillm_student(ctx: SequenceContext, *, alpha: float = 0.2) -> nn.Module:
    """From the SFT student (Algorithm 1, step 1), each batch: the batch's prompts completed by
    sampling from p̃, then one step on minillm_loss."""
    student = scratch_sequence_student(ctx)
    prompts, prompt_mask = ctx.task.train.prompts()
    generator = torch.Generator().manual_seed(ctx.seed + 1)

    def batch_loss(idx: Tensor) -> Tensor:
        continuation = sample_mixed(student, ctx.teacher, prompts[idx], prompt_mask[idx], alpha=alpha,
                                    generator=generator)
        rows, attention, generated = join(prompts[idx], prompt_mask[idx], continuation)
        x, a, labels, m = shift_for_next_token(rows, attention, generated)
        with torch.no_grad():
            teacher_logits = ctx.teacher(x, a)
        return minillm_loss(student(x, a), teacher_logits, labels, m, alpha=alpha)
    ctx.fit(student, len(prompts), batch_loss, desc=f"student (MiniLLM, α = {alpha:g})")
    return student


def _arms() -> tuple[Arm, ...]:
    return (DATA_BASELINE,
            Arm("forward_kl", "forward KL per token on the data's rows (word-level KD)",
                lambda ctx: token_kd_student(ctx, direction="forward")),
            Arm("minillm", "MiniLLM: from the SFT student, sequence-level reverse KL by policy gradient on p̃ "
                "samples (α = 0.2)",
                minillm_student))


COMMON = dict(DIALECTS, temperature=None, teaching_epochs=8)  # a teaching run: 8 SFT + 8 policy-gradient epochs at most

EXPERIMENTS = [
    SequenceExperiment(
        key="reverse-kl-precision",
        # CPU budget: about 7.5 CPU-minutes a seed; scripts/decisive_cost.py asked for 7 seeds at the upper limit
        # of the first run's sd
        max_seeds=8,
        first_seed=100,
        rerun_reason="The first run (seeds 0-2, 2026-11) had 3 seeds set on the command line, not planned: "
                     "+29.5 points (interval +18.2 to +40.9, sd 4.6), inconclusive after Holm's adjustment "
                     "(p 0.19). This run supersedes it with fresh seeds, planned from the larger of its pilot's "
                     "sd and that run's.",
        prior_sd=0.0456, prior_seeds=3,
        title="Reverse KL (MiniLLM) vs forward KL: are the student's samples valid? (precision)",
        claim=Claim("Minimising the reverse KL makes the student's generated outputs more precise (outputs the "
                    "teacher finds likely) than minimising the forward KL, which spreads mass over the teacher's "
                    "low-probability regions.",
                    "arXiv:2306.08543, section 2.1 and Figure 2 (mode-seeking reverse KL vs mean-seeking forward KL)",
                    treatment="minillm", reference="forward_kl"),
        metric="sample_validity", arms=_arms(), **COMMON,
        notes="Score: the share of samples at temperature 1 (one per test prompt) that are valid translations. "
              "α = 0.2 is the paper's teacher-mix ratio.",
    ),
    SequenceExperiment(
        key="forward-kl-recall",
        title="Forward KL vs reverse KL (MiniLLM): how many of the dialects do the samples reach? (recall)",
        claim=Claim("Minimising the forward KL makes the student cover more of the teacher's modes than "
                    "minimising the reverse KL, which may drop modes.",
                    "arXiv:2306.08543, section 2.1 and Figure 2 (forward KL covers the modes, reverse KL seeks "
                    "the major ones)",
                    treatment="forward_kl", reference="minillm"),
        metric="mode_coverage", arms=_arms(), **COMMON,
        notes="Score: per test prompt, the true probability of the distinct valid outputs that 8 samples at "
              "temperature 1 reach (1 if all three dialects' translations are sampled), averaged.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
