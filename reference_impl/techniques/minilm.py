"""MiniLM: deep self-attention distillation of the teacher's last Transformer layer
(Wang et al. 2020, arXiv:2002.10957, sections 3.1-3.2, Eqs. 6-10).

The student mimics the self-attention module of the teacher's *last* layer (L) with its own
last layer (M), so no layer mapping is needed and the hidden sizes may differ: both kinds of
knowledge are |x| × |x| matrices per head. Per head a, for each query position t:

    L_AT = 1 / (A_h |x|) · Σ_a Σ_t KL(A^T_{L,a,t} ‖ A^S_{M,a,t})              Eq. (6)
    VR_{L,a} = softmax(V_{L,a} V_{L,a}^T / √d_k)                            Eqs. (7)-(8)
    L_VR = 1 / (A_h |x|) · Σ_a Σ_t KL(VR^T_{L,a,t} ‖ VR^S_{M,a,t})            Eq. (9)
    L = L_AT + L_VR                                                          Eq. (10)

A = softmax(Q K^T / √d_k) are the attention distributions, V the values of head a
((|x|, d_k) each, d_k the model's own head size), A_h the number of heads (the same in
student and teacher). Both relations are distributions over the keys of one query row; the
KL runs over the real keys, and the mean over the real queries of each sequence (|x| is its
length without padding), then over the batch.

Like DistilBERT, MiniLM is task-agnostic: the student distils the pre-trained (masked-LM)
teacher on the unlabelled corpus, then is fine-tuned on the task.

Claim tested (EXPERIMENTS): adding value-relation transfer to attention-distribution
transfer gives a better student (section 4.4, ablation studies, Table 5).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.checks import check_finite, check_same_shape
from reference_impl.harness.lm import encoder
from reference_impl.harness.lm.encoder import (EncoderContext, EncoderExperiment, predict_states,
                                               scratch_encoder_student, select, states)
from reference_impl.harness.lm.models import Transformer, TransformerOutput, TransformerSpec

CONCEPT = "MiniLMDistillation"
FAMILY = "language model"
DISTIL_EPOCHS = 10  # the task-agnostic stage's largest budget (CPU)


def relation_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor) -> Tensor:
    """1 / (A_h |x|) Σ_a Σ_t KL(softmax(teacher row) ‖ softmax(student row)), mean over the batch.

    `*_logits` (B, H, L, L) are the relation scores before the softmax (Q K^T / √d_k or
    V V^T / √d_k); `mask` (B, L) is 1 on real tokens. Padding keys are left out of every
    softmax and padding queries out of the mean. The teacher side is detached."""
    check_same_shape(student_logits, teacher_logits, "student_logits", "teacher_logits")
    if student_logits.dim() != 4 or student_logits.shape[-1] != student_logits.shape[-2]:
        raise ValueError(f"student_logits must be (batch, heads, length, length), got {tuple(student_logits.shape)}")
    B, H, L, _ = student_logits.shape
    if mask.shape != (B, L):
        raise ValueError(f"mask must be (batch, length) = {(B, L)}, got {tuple(mask.shape)}")
    check_finite(student_logits, "student_logits")
    check_finite(teacher_logits, "teacher_logits")
    real = mask.bool()
    keys = real[:, None, None, :]  # (B, 1, 1, L)
    log_q = F.log_softmax(student_logits.masked_fill(~keys, float("-inf")), dim=-1).masked_fill(~keys, 0.0)
    log_p = F.log_softmax(teacher_logits.detach().masked_fill(~keys, float("-inf")), dim=-1).masked_fill(~keys, 0.0)
    kl_rows = (log_p.exp() * keys * (log_p - log_q)).sum(-1)  # (B, H, L): KL per head and query
    queries = real[:, None, :].float()  # (B, 1, L)
    per_sequence = (kl_rows * queries).sum((1, 2)) / (H * queries.sum((1, 2))).clamp(min=1)  # (B,)
    return per_sequence.mean()


def value_relation_logits(values: Tensor) -> Tensor:
    """V V^T / √d_k for values (B, H, L, d_k): the scores of Eqs. (7)-(8), before their softmax."""
    if values.dim() != 4:
        raise ValueError(f"values must be (batch, heads, length, head size), got {tuple(values.shape)}")
    return values @ values.transpose(-2, -1) / math.sqrt(values.shape[-1])


def minilm_loss(student: TransformerOutput, teacher: TransformerOutput, mask: Tensor, *,
                value_relation: bool = True) -> Tensor:
    """Eq. (10) on the last layers: L_AT + L_VR (or L_AT alone with value_relation=False)."""
    loss = relation_kl(student.attention_scores[-1], teacher.attention_scores[-1], mask)
    if value_relation:
        loss = loss + relation_kl(value_relation_logits(student.values[-1]), value_relation_logits(teacher.values[-1]),
                                  mask)
    return loss


def distil_on_corpus(ctx: EncoderContext, student: Transformer, *, value_relation: bool) -> None:
    """The task-agnostic stage: the pre-trained teacher's last-layer self-attention on the
    corpus rows; epoch chosen by the same loss on the validation rows."""
    rows, val = ctx.task.corpus, ctx.task.corpus_val
    teacher_rows, teacher_val = predict_states(ctx.pretrained, rows), predict_states(ctx.pretrained, val)

    def batch_loss(idx: Tensor) -> Tensor:
        return minilm_loss(states(student, rows[idx]), select(teacher_rows, idx), rows[idx] != encoder.PAD,
                           value_relation=value_relation)

    @torch.no_grad()
    def score() -> float:
        student.eval()
        loss = float(minilm_loss(states(student, val), teacher_val, val != encoder.PAD, value_relation=value_relation))
        student.train()
        return -loss
    budget = replace(ctx.config, epochs=min(DISTIL_EPOCHS, ctx.config.epochs))
    what = "attention + value relation" if value_relation else "attention"
    ctx.fit(student, len(rows), batch_loss, desc=f"student (last-layer {what} on the corpus)", config=budget,
            score=score)


def minilm_student(ctx: EncoderContext, *, value_relation: bool = True) -> nn.Module:
    student = ctx.new_student()
    distil_on_corpus(ctx, student, value_relation=value_relation)
    return ctx.fine_tune(student, "student (fine-tuning)")


STUDENT = TransformerSpec(causal=False, n_layer=encoder.TEACHER.n_layer // 2, n_head=encoder.TEACHER.n_head,
                          d_model=encoder.TEACHER.d_model // 2, n_classes=2)

EXPERIMENTS = [
    EncoderExperiment(
        key="value-relation",
        title="MiniLM: attention distributions + value relation vs attention distributions alone (dialect pairs)",
        claim=Claim("Transferring the last layer's value relation in addition to its attention distributions gives "
                    "a better student than transferring the attention distributions alone.",
                    "arXiv:2002.10957, section 4.4 (ablation studies), Table 5: removing the value-relation "
                    "transfer lowers the fine-tuned students' scores",
                    treatment="minilm", reference="attention_only"),
        dataset="dialect-pairs", teacher=encoder.TEACHER, student=STUDENT,
        pretrain_config=encoder.PRETRAIN_CONFIG, teacher_config=encoder.TEACHER_CONFIG,
        student_config=encoder.STUDENT_CONFIG, teaching_epochs=encoder.TEACHING_EPOCHS,
        arms=(Arm("baseline", "student fine-tuned on the labels only (random initialisation)", scratch_encoder_student),
              Arm("attention_only", "last-layer attention distributions on the corpus (L_AT), then fine-tuning",
                  lambda ctx: minilm_student(ctx, value_relation=False)),
              Arm("minilm", "attention distributions + value relation on the corpus (L_AT + L_VR), then fine-tuning",
                  minilm_student)),
        selection=f"None: the loss has no weights to choose; the corpus stage's budget ({DISTIL_EPOCHS} epochs at most, "
                  "epoch chosen on the validation rows' loss) is the CPU budget's.",
        notes="The student has half the teacher's layers and width and the same number of heads; it distils the "
              "pre-trained (masked-LM) teacher on the unlabelled dialects rows, then is fine-tuned on the pair task. "
              "No teacher assistant (the paper uses one only for its smallest students).",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
