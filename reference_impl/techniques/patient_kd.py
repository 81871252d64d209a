"""Patient knowledge distillation: the student also learns the teacher's intermediate [CLS]
states (Sun et al. 2019, arXiv:1908.09355, sections 3.1-3.2; the equation numbers below are
ours, in the paper's order, not checked against its own numbering).

Vanilla KD for a task with classes c, student logits z^s, teacher logits z^t, temperature T:

    L_DS = − Σ_c softmax(z^t / T)_c · log softmax(z^s / T)_c                  Eq. (1)
    L_CE = − log softmax(z^s)_y                                               Eq. (2)
    L_KD = (1 − α) L_CE + α L_DS                                              Eq. (3)

Patient KD adds, for the student's M − 1 intermediate layers j (not its last, whose [CLS]
state already feeds the prediction that L_DS teaches), the distance between the normalised
[CLS] states h (the first token's) of student layer j and teacher layer I_pt(j):

    L_PT  = Σ_j ‖ h^s_j / ‖h^s_j‖₂ − h^t_{I_pt(j)} / ‖h^t_{I_pt(j)}‖₂ ‖²₂           Eq. (4)
    L_PKD = (1 − α) L_CE + α L_DS + β L_PT                                     Eq. (5)

I_pt for an N-layer teacher and an M-layer student (layers 1-based): PKD-Skip takes every
k = N / M-th layer, I_pt(j) = j · k; PKD-Last the last M − 1 below the top, I_pt(j) = N − M + j
(for N = 12, M = 6: {2, 4, 6, 8, 10} and {7, 8, 9, 10, 11}). Student and teacher have the
same width (no projection). Sums over samples are means over the batch here.

Two choices follow the authors' code rather than the paper's equations: L_DS is multiplied
by T² (the code does; it keeps the soft term's gradient independent of T, Hinton et al. 2015;
the code's KL is also averaged over the classes, a factor 1/C we do not apply), and β is stated
for Eq. (4) as written while the code averages the squared differences over the hidden
dimensions and layers (so its β = 100 is β = 100 / (d · (M − 1)) here).
The students of every distillation arm start, as in the paper, from the lowest M layers of
the pre-trained (not fine-tuned) teacher.

Claim tested (EXPERIMENTS): Patient KD (PKD-Skip) beats vanilla KD for the same student
(section 4, Table 1: BERT6-PKD above BERT6-KD; Table 2: PKD-Skip slightly above PKD-Last).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.checks import check_logits, check_positive, check_same_shape
from reference_impl.harness.lm import encoder
from reference_impl.harness.lm.encoder import EncoderContext, EncoderExperiment, scratch_encoder_student, states
from reference_impl.harness.lm.models import TransformerOutput, TransformerSpec
from reference_impl.techniques.distilbert import initialise_from_teacher

CONCEPT = "PatientKD"
FAMILY = "language model"
STRATEGIES = ("skip", "last")
TEMPERATURE, ALPHA = 5.0, 0.5  # from the paper's grid (T ∈ {5, 10, 20}, α ∈ {0.2, 0.5, 0.7}), not tuned here
CODE_BETA = 100.0  # β in the authors' code (grid {10, 100, 500, 1000}): on a mean over dimensions and layers


def pkd_layers(n_student: int, n_teacher: int, strategy: str) -> list[int]:
    """I_pt(j) for j = 1..M − 1: the teacher layers (1-based) the student's intermediate layers learn."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'skip' or 'last', got {strategy!r}")
    if n_student < 2 or n_teacher < n_student:
        raise ValueError(f"patient KD needs 2 <= n_student <= n_teacher (an intermediate student layer), "
                         f"got n_student={n_student}, n_teacher={n_teacher}")
    if strategy == "skip":
        if n_teacher % n_student:
            raise ValueError(f"PKD-Skip needs n_teacher divisible by n_student, got {n_teacher} and {n_student}")
        return [j * (n_teacher // n_student) for j in range(1, n_student)]
    return [n_teacher - n_student + j for j in range(1, n_student)]


def patient_loss(student_cls: Tensor, teacher_cls: Tensor) -> Tensor:
    """Eq. (4) for [CLS] states (B, M − 1, D): Σ_j ‖ŝ_j − t̂_j‖²₂ of the L2-normalised vectors,
    mean over the batch. The teacher side is detached."""
    check_same_shape(student_cls, teacher_cls, "student_cls", "teacher_cls")
    if student_cls.dim() != 3:
        raise ValueError(f"student_cls must be (batch, layers, width), got {tuple(student_cls.shape)}")
    s, t = F.normalize(student_cls, dim=-1), F.normalize(teacher_cls.detach(), dim=-1)
    return ((s - t) ** 2).sum((1, 2)).mean()


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, temperature: float,
            alpha: float) -> Tensor:
    """Eq. (3) with T² on L_DS: (1 − α) L_CE + α T² L_DS, mean over the batch (B, classes)."""
    check_positive(temperature, "temperature")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    check_logits(student_logits, teacher_logits, labels)
    soft = F.softmax(teacher_logits.detach() / temperature, dim=1)
    l_ds = -(soft * F.log_softmax(student_logits / temperature, dim=1)).sum(1).mean()
    return (1 - alpha) * F.cross_entropy(student_logits, labels) + alpha * temperature ** 2 * l_ds


def cls_states(out: TransformerOutput, layers: list[int]) -> Tensor:
    """The first token's state after each of `layers` (1-based): (B, len(layers), D)."""
    return torch.stack([out.hidden_states[j][:, 0] for j in layers], dim=1)


def pkd_student(ctx: EncoderContext, *, strategy: str | None = "skip", temperature: float = TEMPERATURE,
                alpha: float = ALPHA, beta: float | None = None) -> nn.Module:
    """Vanilla KD (strategy=None) or Patient KD (PKD-Skip / PKD-Last) from the fine-tuned teacher;
    the student starts from the pre-trained teacher's lowest layers. β defaults to the code's
    β = 100 converted to Eq. (4): 100 / (d · (M − 1))."""
    student = ctx.new_student()
    M, N = student.spec.n_layer, ctx.teacher.spec.n_layer
    initialise_from_teacher(student, ctx.pretrained, layers=range(M))
    split = ctx.task.train
    teacher_out = encoder.predict_states(ctx.teacher, split.tokens)  # row i = sample i
    T = ctx.softening(temperature)
    if strategy is None:
        loss = lambda idx: kd_loss(states(student, split.tokens[idx]).class_logits,  # noqa: E731
                                   teacher_out.class_logits[idx], split.labels[idx], temperature=T, alpha=alpha)
        ctx.fit(student, len(split), loss, desc="student (vanilla KD)")
        return student
    teacher_layers, student_layers = pkd_layers(M, N, strategy), list(range(1, M))
    beta = CODE_BETA / (student.spec.d_model * (M - 1)) if beta is None else beta
    teacher_cls = cls_states(teacher_out, teacher_layers)  # (N_train, M − 1, D)

    def batch_loss(idx: Tensor) -> Tensor:
        out = states(student, split.tokens[idx])
        return (kd_loss(out.class_logits, teacher_out.class_logits[idx], split.labels[idx], temperature=T, alpha=alpha)
                + beta * patient_loss(cls_states(out, student_layers), teacher_cls[idx]))
    ctx.fit(student, len(split), batch_loss, desc=f"student (PKD-{strategy.capitalize()})")
    return student


STUDENT = TransformerSpec(causal=False, n_layer=encoder.TEACHER.n_layer // 2, n_head=encoder.TEACHER.n_head,
                          d_model=encoder.TEACHER.d_model, n_classes=2)

EXPERIMENTS = [
    EncoderExperiment(
        key="pkd-vs-kd",
        # CPU budget: about 3.2 CPU-minutes a seed; scripts/decisive_cost.py asked for 131 seeds at the first
        # run's sd, out of reach, so the cap is the method's floor of 5 and the result records what it could see
        max_seeds=5,
        first_seed=100,
        rerun_reason="The first run (seeds 0-2, 2026-11) had 3 seeds set on the command line, not planned: "
                     "-0.78 points (interval -6.17 to +4.61, sd 2.17), inconclusive. This run supersedes it with "
                     "fresh seeds planned by the project's method, capped at 5 by the CPU budget.",
        prior_sd=0.0217, prior_seeds=3,
        title="Patient KD (PKD-Skip) vs vanilla KD, same initialisation and student (dialect pairs)",
        claim=Claim("A student trained with patient knowledge distillation, learning the teacher's intermediate "
                    "[CLS] states as well as its predictions, outperforms the same student trained with vanilla KD.",
                    "arXiv:1908.09355, section 4, Table 1 (BERT6-PKD above BERT6-KD); PKD-Skip, the better "
                    "strategy in Table 2",
                    treatment="pkd_skip", reference="kd"),
        dataset="dialect-pairs", teacher=encoder.TEACHER, student=STUDENT,
        pretrain_config=encoder.PRETRAIN_CONFIG, teacher_config=encoder.TEACHER_CONFIG,
        student_config=encoder.STUDENT_CONFIG, teaching_epochs=encoder.TEACHING_EPOCHS, temperature=TEMPERATURE,
        arms=(Arm("baseline", "student fine-tuned on the labels only (random initialisation)", scratch_encoder_student),
              Arm("kd", f"vanilla KD (T = {TEMPERATURE:g}, α = {ALPHA:g}) from the teacher's lowest layers",
                  lambda ctx: pkd_student(ctx, strategy=None)),
              Arm("pkd_skip", "vanilla KD + normalised [CLS] states of every k-th teacher layer (PKD-Skip)",
                  pkd_student),
              Arm("pkd_last", "vanilla KD + normalised [CLS] states of the teacher's last layers (PKD-Last)",
                  lambda ctx: pkd_student(ctx, strategy="last"))),
        selection=f"None: T = {TEMPERATURE:g}, α = {ALPHA:g} and the code's β = {CODE_BETA:g} were fixed from the "
                  "paper's search grid before any run, not chosen on validation (CPU budget).",
        notes="Task-specific distillation from the fine-tuned teacher on the pair task's training rows. The KD and PKD "
              "students have half the teacher's layers and its width and start from the pre-trained teacher's lowest "
              "layers (as the paper's start from BERT's); the baseline starts at random. With a 2-layer student one "
              "intermediate layer is matched: teacher layer 2 (Skip) or 3 (Last) of 4.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
