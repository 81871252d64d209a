"""Decoupled knowledge distillation, DKD (Zhao, Cui, Song, Qiu & Liang 2022, arXiv:2203.08679).

With p = softmax(z / T) and t the true class, the classical soft-target loss splits
exactly into a term about the target class and a term about all the others:

    b = [p_t, 1 − p_t]                      binary: target vs. every non-target class
    p̂_i = p_i / (1 − p_t),  i ≠ t          the non-target classes among themselves
    KL(p^T ‖ p^S) = KL(b^T ‖ b^S) + (1 − p_t^T) · KL(p̂^T ‖ p̂^S)
                  =       TCKD     + (1 − p_t^T) ·      NCKD                 Eq. (7)

The weight (1 − p_t^T) is small exactly where the teacher is confident, so classical KD
suppresses the non-target knowledge (NCKD) on the samples the teacher knows best. DKD
drops the coupling and weights the two parts freely:

    DKD = α · TCKD + β · NCKD                                                Eq. (8)
    L   = CE(y, softmax(z_s)) + w(step) · T² · (α · TCKD + β · NCKD)

Defaults are the paper's CIFAR-100 settings (α = 1, β = 8, T = 4; section 4 and the
authors' mdistiller configs). Two details come from the authors' code rather than the
equations: both KL terms are multiplied by T² (as in Hinton et al.), and the DKD term is
warmed up linearly over the first 20 epochs, w = min(epoch / 20, 1), because a large β
makes the loss large at initialisation; we ramp w per step over the same 20 epochs.
KL divergences are per sample (summed over classes) and averaged over the batch.

Claim tested (see EXPERIMENTS): DKD beats classical KD with the same teacher, student,
temperature and budget (section 4, CIFAR-100 and ImageNet tables), in two regimes: the
small MLP student of soft_targets, which under-fits, and a CNN student that fits its data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, Context, Experiment, Procedure, TrainConfig, run_cli
from reference_impl.harness.bench import BASELINE
from reference_impl.harness.checks import check_logits, check_positive
from reference_impl.techniques.attention_transfer import STUDENT as CNN_STUDENT
from reference_impl.techniques.attention_transfer import TEACHER_CONFIG as CNN_TEACHER_CONFIG
from reference_impl.techniques.soft_targets import STUDENT, TEACHER, distilled_student

CONCEPT = "DecoupledKD"


def _binary_and_non_target_log_probs(logits: Tensor, labels: Tensor, rest: Tensor,
                                     temperature: float) -> tuple[Tensor, Tensor]:
    """log b = [log p_t, log(1 − p_t)] as (B, 2), and log p̂ over the non-target classes `rest`
    as (B, C − 1). In log space: 1 − p_t underflows to 0 for a confident model, its log does not."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    log_p_target = log_p.gather(1, labels[:, None])  # (B, 1)
    log_p_rest = log_p.gather(1, rest)  # (B, C − 1)
    log_b = torch.cat([log_p_target, torch.logsumexp(log_p_rest, dim=1, keepdim=True)], dim=1)
    # p̂_i = p_i / (1 − p_t): a softmax over the non-target logits alone
    log_p_hat = F.log_softmax(log_p_rest, dim=1)
    return log_b, log_p_hat


def decoupled_terms(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
                    temperature: float = 4.0) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample: TCKD = KL(b^T ‖ b^S), NCKD = KL(p̂^T ‖ p̂^S), and the teacher's p_t^T.
    Shapes: logits (batch, classes) with classes ≥ 3, labels (batch,); each result (batch,).
    The teacher side is detached: gradients reach the student only."""
    check_positive(temperature, "temperature")
    check_logits(student_logits, teacher_logits, labels)
    if student_logits.shape[1] < 3:
        raise ValueError(f"student_logits needs at least 3 classes for a non-target distribution, "
                         f"got {student_logits.shape[1]}")
    labels = labels.long()
    n_classes = student_logits.shape[1]
    # each row's non-target classes in class order: a stable sort puts the C − 1 zeros of the one-hot first
    rest = F.one_hot(labels, n_classes).argsort(dim=1, stable=True)[:, :n_classes - 1]
    log_b_s, log_p_hat_s = _binary_and_non_target_log_probs(student_logits, labels, rest, temperature)
    with torch.no_grad():
        log_b_t, log_p_hat_t = _binary_and_non_target_log_probs(teacher_logits.detach(), labels, rest, temperature)
    # KL(teacher ‖ student) per sample: sum_i q_i (log q_i − log p_i) with q the teacher
    tckd = (log_b_t.exp() * (log_b_t - log_b_s)).sum(dim=1)
    nckd = (log_p_hat_t.exp() * (log_p_hat_t - log_p_hat_s)).sum(dim=1)
    return tckd, nckd, log_b_t[:, 0].exp()


def dkd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *,
             temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0) -> Tensor:
    """T² · mean over the batch of (α · TCKD + β · NCKD), Eq. (8)."""
    for value, name in ((alpha, "alpha"), (beta, "beta")):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    tckd, nckd, _ = decoupled_terms(student_logits, teacher_logits, labels, temperature)
    # DKD = α·TCKD + β·NCKD, Eq. (8); × T² as in the authors' code (and Hinton's soft term)
    return temperature**2 * (alpha * tckd + beta * nckd).mean()


def warmup_weight(step: int, warmup_steps: int) -> float:
    """Linear warm-up of the distillation term: (step + 1) / warmup_steps, capped at 1."""
    return 1.0 if warmup_steps <= 0 else min((step + 1) / warmup_steps, 1.0)


def dkd_student(ctx: Context, *, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0,
                warmup_epochs: int = 20):
    """Train a fresh student on CE + warm-up · DKD; teacher logits cached, indexed by the batch."""
    temperature = ctx.softening(temperature)  # a teaching run's --temperature, else this arm's own
    student = ctx.new_student()
    x, y, z_t = ctx.split.x_train, ctx.split.y_train, ctx.teacher_train_logits
    steps_per_epoch = math.ceil(len(y) / ctx.config.batch_size)
    step = 0

    def batch_loss(idx: Tensor) -> Tensor:  # idx indexes inputs, labels and teacher logits alike
        nonlocal step
        z_s = student(x[idx])
        weight = warmup_weight(step, warmup_epochs * steps_per_epoch)
        step += 1
        return F.cross_entropy(z_s, y[idx]) + weight * dkd_loss(
            z_s, z_t[idx], y[idx], temperature=temperature, alpha=alpha, beta=beta)

    ctx.fit(student, len(y), batch_loss, desc=f"student (DKD, α={alpha:g}, β={beta:g})")
    return student


CLAIM = Claim("DKD, which weights the target-class and non-target-class terms of the KD loss "
              "independently, gives a better student than classical KD at the same temperature.",
              "arXiv:2203.08679, section 4 (CIFAR-100 tables: DKD above KD for every teacher-student "
              "pair; ImageNet: ResNet-18 71.70% with DKD vs 70.66% with KD)",
              treatment="dkd", reference="kd")
KD = Arm("kd", "classical KD (soft targets), T=4, α=0.9", lambda ctx: distilled_student(ctx, temperature=4.0, alpha=0.9))


def dkd_arm(beta: float) -> Arm:
    return Arm("dkd", f"CE + DKD, T=4, α=1, β={beta:g}, 20-epoch warm-up",
               lambda ctx: dkd_student(ctx, temperature=4.0, alpha=1.0, beta=beta, warmup_epochs=20))


# β is the project's choice for 10 classes: the paper uses 8 on CIFAR-100 and 0.5 on ImageNet, ties it
# to the teacher's confidence (the logit gap), and gives no value for a 10-class task; the candidates
# below are scored on the validation split by scripts/choose_on_validation.py.
BETAS_TO_TRY = (0.5, 1.0, 2.0, 4.0, 8.0)
CANDIDATES = {key: {f"β={b:g}": dkd_arm(b) for b in BETAS_TO_TRY} for key in ("dkd-vs-kd", "dkd-vs-kd-cnn")}
MLP_BETA = 0.5  # chosen on the validation split (see the experiment's selection)
CNN_BETA = 0.5  # chosen on the validation split (see the experiment's selection)

EXPERIMENTS = [
    Experiment(
        key="dkd-vs-kd",
        title="Decoupled KD vs classical KD, same teacher, student, temperature and budget",
        claim=CLAIM,
        dataset="mnist1d", teacher=TEACHER, student=STUDENT,
        # 100 epochs, not soft_targets.STUDENT_CONFIG's 300: β was chosen, and the result run, at 100;
        # the result page flags the budget where it bound
        student_config=TrainConfig(epochs=100),
        arms=(BASELINE, KD, dkd_arm(MLP_BETA)),
        temperature=4.0,
        max_seeds=16,  # CPU budget: about 0.7 CPU-minutes a seed for the three arms
        first_seed=100,
        rerun_reason="The first run (seeds 0-4, 2026-11) measured +1.67 points (interval +0.97 to +2.36, sd 0.56) "
                     "but was inconclusive after Holm's adjustment over the family (p 0.068): its pilot had planned "
                     "5 seeds. This run supersedes it with fresh seeds, planned from the larger of its pilot's sd "
                     "and that run's.",
        prior_sd=0.0056, prior_seeds=5,
        selection="β = 0.5, chosen on the validation split (scripts/choose_on_validation.py, pilot seeds "
                  "1000-1002, never the reported ones): mean validation accuracy β=0.5 0.598, β=1 0.586, "
                  "β=2 0.571, β=4 0.553, β=8 0.531. The best is the smallest candidate; smaller β were not tried. "
                  "The paper uses β=8 on CIFAR-100 and 0.5 on ImageNet and gives no value for 10 classes.",
        notes="Teacher, student and data are those of soft_targets' first experiment, so the teacher is "
              "shared through the cache; the budget is at most 100 epochs. KD uses the authors' KD settings (CE weight 0.1, KL weight 0.9, T=4); "
              "DKD the authors' CIFAR settings (CE weight 1, α=1, T=4, 20-epoch linear warm-up) with β chosen on the "
              "validation split (0.5; the paper's CIFAR value is 8). Exploratory "
              "runs (seeds 0-2, not the benchmark): DKD 5-10 points below KD and below the baseline, with "
              "ECE 0.16-0.19 against KD's 0.10; on seeds 1-2, β=1 instead of 8 matched KD and CE + 8·NCKD "
              "alone (α=0) fell to 44-45%. On this under-fitting student the up-weighted non-target term hurts, the opposite of "
              "the paper's finding that NCKD carries the benefit; the second experiment checks a student "
              "that fits its data.",
    ),
    Experiment(
        key="dkd-vs-kd-cnn",
        title="Decoupled KD vs classical KD with a capable student (half-width CNN, 96% teacher)",
        claim=CLAIM,
        dataset="mnist1d", teacher=TEACHER, student=CNN_STUDENT, teacher_config=CNN_TEACHER_CONFIG,
        student_config=TrainConfig(epochs=100, lr=3e-3),
        arms=(BASELINE, KD, dkd_arm(CNN_BETA)),
        temperature=4.0,
        max_seeds=16,  # CPU budget: about 2 CPU-minutes a seed for the three arms; the first run's plan asked 15
        first_seed=100,
        rerun_reason="The first run (seeds 0-7, 2026-11) used the paper's CIFAR-100 β = 8 untuned, because the "
                     "validation search had been cut short, and was inconclusive (-0.28 points, sd 0.71). This run "
                     "uses β chosen on the validation split and supersedes it with fresh seeds; it plans from the "
                     "larger of its pilot's sd and that run's (same student, data and KD reference arm).",
        prior_sd=0.0071, prior_seeds=8,
        selection="β = 0.5, chosen on the validation split (scripts/choose_on_validation.py decoupled_kd "
                  "--experiment dkd-vs-kd-cnn, pilot seeds 1000-1002, never the reported ones): mean validation "
                  "accuracy β=0.5 0.968, β=1 0.964, β=2 0.967, β=4 0.961, β=8 0.953. As for the MLP, the best is "
                  "the smallest candidate, and smaller β were not tried; the paper's CIFAR-100 value (8) is the "
                  "worst here.",
        notes="The regime of attention_transfer (teacher and student shared through the cache; Adam lr 3e-3 "
              "and 100 epochs from that hard-label baseline's convergence): a student that, unlike the MLP, "
              "fits the training set, as the paper's CIFAR students do. Same KD settings; DKD with β chosen on "
              "validation (0.5). Exploratory seeds 0-1 (β = 8): DKD −0.8 and +1.4 points against KD.",
    ),
]

# How reference_impl.distill runs this technique on a user's models (the arms above call the same code)
PROCEDURE = Procedure(dkd_student)


if __name__ == "__main__":
    run_cli(__import__(__name__))
