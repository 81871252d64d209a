"""DistilBERT: a half-depth student distilled from a pre-trained BERT during pre-training
(Sanh et al. 2019, arXiv:1910.01108, sections 2-3).

The student has the teacher's width and half its layers, and is initialised from the teacher
by taking one layer out of two (the embeddings and the masked-LM head are copied too). It is
trained on the pre-training corpus, on masked inputs (dynamic masking), with a linear
combination of three losses (section 2, "Training loss"; the paper numbers no equations):

    L = α_ce · L_ce + α_mlm · L_mlm + α_cos · L_cos          α_ce = 5, α_mlm = 2, α_cos = 1, T = 2

    L_ce  = T² · Σ_i t_i · log(t_i / s_i),   t = softmax(z^T / T),  s = softmax(z^S / T)
            (the masked-LM vocabulary distributions, mean over the non-padding positions)
    L_mlm = − log s(x_j) at the masked positions j (BERT's masked-LM loss, T = 1)
    L_cos = 1 − cos(h^S_j, h^T_j), mean over the non-padding positions (last hidden states)

The weights and T are the authors' training script's (huggingface/transformers, examples/
research_projects/distillation). The paper writes L_ce = Σ_i t_i · log(s_i) (a
cross-entropy, its minus sign left out); we implement what the script computes: the KL divergence, which differs from
that cross-entropy by the teacher's entropy (a constant without gradient, so training is the
same), multiplied by T², which keeps the soft term's gradient on the scale of the hard one
whatever T (Hinton et al. 2015, section 2). As the script does by default, L_ce covers every
non-padding position, not only the masked ones. The distilled student is then fine-tuned on
the task like BERT.

Claim tested (EXPERIMENTS): initialising the student from the teacher's layers beats random
initialisation (section 4.2, Table 4: of the ablations, random initialisation costs the most).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.checks import check_same_shape
from reference_impl.harness.lm import encoder
from reference_impl.harness.lm.data import PAD
from reference_impl.harness.lm.encoder import EncoderContext, EncoderExperiment, scratch_encoder_student, states
from reference_impl.harness.lm.models import Transformer, TransformerOutput, TransformerSpec
from reference_impl.harness.lm.tokens import token_mean
from reference_impl.techniques.token_level_kd import token_kl

CONCEPT = "DistilBERTDistillation"
FAMILY = "language model"
ALPHA_CE, ALPHA_MLM, ALPHA_COS, TEMPERATURE = 5.0, 2.0, 1.0, 2.0
DISTIL_EPOCHS = 8  # the task-agnostic stage's largest budget (kept short: CPU)


def every_other_layer(n_teacher_layers: int) -> list[int]:
    """The teacher blocks (0-based) a half-depth student starts from: one out of two, 0, 2, 4, ...
    (The authors' extraction script for 12 -> 6 takes 0, 2, 4, 7, 9, 11, ending on the top layer.)"""
    if n_teacher_layers < 2 or n_teacher_layers % 2:
        raise ValueError(f"n_teacher_layers must be even and at least 2, got {n_teacher_layers}")
    return list(range(0, n_teacher_layers, 2))


@torch.no_grad()
def initialise_from_teacher(student: Transformer, teacher: Transformer, layers: Sequence[int] | None = None) -> Transformer:
    """Copy into `student` the teacher's embeddings, its blocks `layers` (0-based; default every
    other one), final layer norm and masked-LM head. The classifier is not copied (the
    pre-trained teacher has none trained). Student and teacher must have the same width."""
    layers = every_other_layer(len(teacher.blocks)) if layers is None else list(layers)
    if len(layers) != len(student.blocks):
        raise ValueError(f"layers names {len(layers)} teacher blocks but the student has {len(student.blocks)} layers")
    if any(not 0 <= i < len(teacher.blocks) for i in layers):
        raise ValueError(f"layers must be teacher blocks in [0, {len(teacher.blocks)}), got {layers}")
    for name in ("n_head", "d_model", "d_ff"):
        if getattr(student.spec, name) != getattr(teacher.spec, name):
            raise ValueError(f"student and teacher must have the same {name} to copy weights "
                             f"({getattr(student.spec, name)} vs {getattr(teacher.spec, name)})")
    pairs = [(student.token_embedding, teacher.token_embedding), (student.position_embedding, teacher.position_embedding),
             (student.ln_f, teacher.ln_f), (student.lm_head, teacher.lm_head)]
    pairs += [(student.blocks[j], teacher.blocks[i]) for j, i in enumerate(layers)]
    for name in ("token_embedding", "position_embedding"):  # vocabulary and position table must match
        s_shape, t_shape = getattr(student, name).weight.shape, getattr(teacher, name).weight.shape
        if s_shape != t_shape:
            raise ValueError(f"student and teacher {name} shapes differ ({tuple(s_shape)} vs {tuple(t_shape)})")
    for s, t in pairs:
        s.load_state_dict(t.state_dict())
    return student


def cosine_loss(student_hidden: Tensor, teacher_hidden: Tensor, mask: Tensor) -> Tensor:
    """mean over the positions `mask` marks (B, L) of 1 − cos(h^S, h^T), hidden states (B, L, D).
    The teacher side is detached."""
    check_same_shape(student_hidden, teacher_hidden, "student_hidden", "teacher_hidden")
    if student_hidden.dim() != 3 or mask.shape != student_hidden.shape[:2]:
        raise ValueError(f"student_hidden must be (batch, length, width) and mask (batch, length), got "
                         f"{tuple(student_hidden.shape)} and {tuple(mask.shape)}")
    return token_mean(1 - F.cosine_similarity(student_hidden, teacher_hidden.detach(), dim=-1), mask)


def triple_loss(student: TransformerOutput, teacher: TransformerOutput, tokens: Tensor, chosen: Tensor,
                attention_mask: Tensor, *, temperature: float = TEMPERATURE, alpha_ce: float = ALPHA_CE,
                alpha_mlm: float = ALPHA_MLM, alpha_cos: float = ALPHA_COS) -> Tensor:
    """α_ce · L_ce + α_mlm · L_mlm + α_cos · L_cos for one batch of masked rows: `tokens` (B, L)
    the original rows, `chosen` (B, L) the masked positions, `attention_mask` (B, L) the real ones."""
    real = attention_mask.float()
    l_ce = token_kl(student.logits, teacher.logits, real, temperature=temperature)  # T² · KL, mean over real tokens
    l_mlm = encoder.masked_lm_loss(student.logits, tokens, chosen)
    l_cos = cosine_loss(student.hidden_states[-1], teacher.hidden_states[-1], real)
    return alpha_ce * l_ce + alpha_mlm * l_mlm + alpha_cos * l_cos


def distil_on_corpus(ctx: EncoderContext, student: Transformer, *, temperature: float) -> None:
    """The task-agnostic stage: triple loss against the pre-trained teacher on the masked corpus,
    epoch chosen by the same loss on the validation rows (masked once, fixed)."""
    rows, teacher = ctx.task.corpus, ctx.pretrained
    generator = torch.Generator().manual_seed(ctx.seed)
    val_inputs, val_chosen = encoder.mask_tokens(ctx.task.corpus_val, torch.Generator().manual_seed(0))

    def loss_on(inputs: Tensor, original: Tensor, chosen: Tensor) -> Tensor:
        with torch.no_grad():
            t = states(teacher, inputs)
        return triple_loss(states(student, inputs), t, original, chosen, inputs != PAD, temperature=temperature)

    def batch_loss(idx: Tensor) -> Tensor:
        inputs, chosen = encoder.mask_tokens(rows[idx], generator)  # dynamic masking, the same input to both
        return loss_on(inputs, rows[idx], chosen)

    @torch.no_grad()
    def score() -> float:
        student.eval()
        loss = float(loss_on(val_inputs, ctx.task.corpus_val, val_chosen))
        student.train()
        return -loss
    budget = replace(ctx.config, epochs=min(DISTIL_EPOCHS, ctx.config.epochs))
    ctx.fit(student, len(rows), batch_loss, desc="student (triple loss on the corpus)", config=budget, score=score)


def distilbert_student(ctx: EncoderContext, *, from_teacher: bool = True, temperature: float = TEMPERATURE) -> nn.Module:
    """Initialise (from every other teacher layer, or randomly), distil on the corpus, fine-tune."""
    student = ctx.new_student()
    if from_teacher:
        initialise_from_teacher(student, ctx.pretrained)
    distil_on_corpus(ctx, student, temperature=ctx.softening(temperature))
    return ctx.fine_tune(student, "student (fine-tuning)")


STUDENT = TransformerSpec(causal=False, n_layer=encoder.TEACHER.n_layer // 2, n_head=encoder.TEACHER.n_head,
                          d_model=encoder.TEACHER.d_model, n_classes=2)

EXPERIMENTS = [
    EncoderExperiment(
        key="teacher-init",
        title="DistilBERT: initialising the student from every other teacher layer vs randomly (dialect pairs)",
        claim=Claim("Initialising the half-depth student from one out of two teacher layers, then distilling with "
                    "the triple loss, beats the same distillation from a random initialisation.",
                    "arXiv:1910.01108, section 4.2, Table 4 (triple loss + random weights initialisation: the largest "
                    "drop of the ablations)",
                    treatment="distilbert", reference="random_init"),
        dataset="dialect-pairs", teacher=encoder.TEACHER, student=STUDENT,
        pretrain_config=encoder.PRETRAIN_CONFIG, teacher_config=encoder.TEACHER_CONFIG,
        student_config=encoder.STUDENT_CONFIG, teaching_epochs=encoder.TEACHING_EPOCHS, temperature=TEMPERATURE,
        arms=(Arm("baseline", "student fine-tuned on the labels only (random initialisation)", scratch_encoder_student),
              Arm("distilbert", "every-other-layer initialisation, triple loss on the corpus, then fine-tuning",
                  distilbert_student),
              Arm("random_init", "random initialisation, triple loss on the corpus, then fine-tuning",
                  lambda ctx: distilbert_student(ctx, from_teacher=False))),
        selection="None: α_ce = 5, α_mlm = 2, α_cos = 1 and T = 2 are the authors' script's; the corpus stage's "
                  f"budget ({DISTIL_EPOCHS} epochs at most, epoch chosen on the validation rows' triple loss) is the "
                  "CPU budget's.",
        notes="The teacher is pre-trained with masked LM on the dialects rows and fine-tuned on the pair task; "
              "DistilBERT distils the pre-trained encoder (task-agnostic), and the student is then fine-tuned on "
              "the labels. The student has half the teacher's layers and its width.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
