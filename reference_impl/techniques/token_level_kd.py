"""Token-level (word-level) distillation of a language model, with forward or reverse KL
(Kim & Rush 2016, arXiv:1606.07947, section 3.1, Eq. (4) by our reading, the number not re-checked
against the paper's text; the reverse direction as the
token-level variant discussed by MiniLLM, arXiv:2306.08543, section 2).

At every position j of a target sequence, under teacher forcing, the student's next-token
distribution q_θ(· | y_<j, x) is matched to the teacher's p(· | y_<j, x):

    forward (word-level KD):  L_FKL = Σ_j Σ_k p(k | y_<j, x) · log[ p(k | ·) / q_θ(k | ·) ]     (Eq. 4,
                              up to the teacher's entropy, which has no gradient)
    reverse:                  L_RKL = Σ_j Σ_k q_θ(k | y_<j, x) · log[ q_θ(k | ·) / p(k | ·) ]

Forward KL is mean-seeking: where the teacher spreads mass over several continuations the
student must cover them all. Reverse KL is mode-seeking: the student may drop continuations,
but is punished for putting mass where the teacher has little. With a temperature T both
distributions are softened and the loss is multiplied by T² (as in Hinton et al. 2015);
Kim & Rush use T = 1, and interpolate the KD term with the data's negative log-likelihood,
(1 − α) L_NLL + α L_WORD-KD (section 3.1); the arms here use the KD term alone (α = 1), so
that the word-KD arm and the data baseline differ only in their targets. The sum runs over
the positions `mask` marks (response tokens and EOS, never prompt or padding) and is divided
by `normalizer` (default: their number); see `harness/lm/tokens.py` for why gradient
accumulation passes the whole batch's count.

Claim tested (EXPERIMENTS): word-level KD improves a student over training on the data alone
(Kim & Rush, Table 1: Word-KD above the baseline student).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.checks import check_positive
from reference_impl.harness.lm.bench import DATA_BASELINE, DIALECTS, SequenceContext, SequenceExperiment
from reference_impl.harness.lm.tokens import check_token_logits, token_mean

CONCEPT = "TokenLevelDistillation"
FAMILY = "language model"
DIRECTIONS = ("forward", "reverse")


def token_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, *, direction: str = "forward",
             temperature: float = 1.0, normalizer: float | None = None) -> Tensor:
    """T² · Σ_masked KL per token / normalizer, for logits (B, L, V) and mask (B, L).

    direction="forward": KL(p_teacher ‖ q_student), word-level KD.
    direction="reverse": KL(q_student ‖ p_teacher), mode-seeking.
    The teacher side is detached: gradients reach the student only."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    check_positive(temperature, "temperature")
    check_token_logits(student_logits, teacher_logits, mask)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)  # (B, L, V) student
    log_p = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)  # (B, L, V) teacher
    if direction == "forward":
        # KL(p ‖ q) = Σ_k p_k (log p_k - log q_k)
        per_token = (log_p.exp() * (log_p - log_q)).sum(-1)
    else:
        # KL(q ‖ p) = Σ_k q_k (log q_k - log p_k)
        per_token = (log_q.exp() * (log_q - log_p)).sum(-1)
    return temperature ** 2 * token_mean(per_token, mask, normalizer)


def token_kd_student(ctx: SequenceContext, *, direction: str = "forward", temperature: float = 1.0) -> nn.Module:
    """A student trained with the token-level KL to the frozen teacher on the training rows
    (teacher forcing on the data's targets; the teacher's logits computed once, indexed by row)."""
    student = ctx.new_student()
    split = ctx.task.train
    inputs, mask, teacher_logits = split.inputs, split.loss_mask, ctx.teacher_train_logits
    T = ctx.softening(temperature)

    def batch_loss(idx: Tensor) -> Tensor:
        return token_kl(student(inputs[idx]), teacher_logits[idx], mask[idx], direction=direction, temperature=T)
    ctx.fit(student, len(split), batch_loss, desc=f"student ({direction} token KL)")
    return student


# the word-level KD arm, which other modules of the family compare with
WORD_KD = Arm("word_kd", "forward KL to the teacher per token (word-level KD, T = 1)",
              lambda ctx: token_kd_student(ctx, direction="forward"))

EXPERIMENTS = [
    SequenceExperiment(
        key="word-kd-vs-data",
        title="Word-level KD vs training on the data (dialects, greedy decoding)",
        claim=Claim("A student trained with word-level knowledge distillation outperforms the same student "
                    "trained on the data alone.",
                    "arXiv:1606.07947, section 5, Table 1 (Word-KD rows above the baseline student)",
                    treatment="word_kd", reference="baseline"),
        **DIALECTS, temperature=1.0,
        metric="greedy_validity",
        arms=(DATA_BASELINE,
              WORD_KD,
              Arm("reverse_kl", "reverse KL to the teacher per token (T = 1)",
                  lambda ctx: token_kd_student(ctx, direction="reverse"))),
        notes="Score: the share of the 5,000 test prompts whose greedy output is a valid translation. "
              "Both token-level arms train on the data's rows under teacher forcing, with the teacher's "
              "full next-token distributions in place of the one-hot targets.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
