"""Soft-target distillation with temperature (Hinton, Vinyals & Dean 2015, arXiv:1503.02531).

The student learns from the teacher's class probabilities softened by a temperature T,
which expose how the teacher ranks the wrong classes ("dark knowledge"), as well as from
the hard labels:

    L = (1 - α) · CE(y, softmax(z_s)) + α · T² · KL( softmax(z_t / T) ‖ softmax(z_s / T) )

softmax(z / T) is Eq. (1) of the paper. The weighted sum of the two terms and the T²
factor are in section 2: the gradients of the soft term scale as 1/T², so multiplying by
T² keeps their size comparable when T changes. KL is averaged over the batch
(`reduction="batchmean"`), with log-probabilities on both sides (`log_target=True`); the
teacher is frozen and its logits are computed once, then indexed with the batch.

Claims tested (see EXPERIMENTS):
1. a student trained on the teacher's soft targets beats the same student trained on
   the hard labels (section 3, MNIST);
2. soft targets let a model trained on about 3% of the data generalise far better than
   the same model trained on that 3% with hard targets (section 5, speech).

`soft_target_loss` is the loss on a batch's teacher logits, with KL as the soft term.
`CachedSoftTargets` is the form the harness trains with: the same gradient, the teacher's
side computed once per sample, and few operations per step, so that a distillation step
costs little more than a plain cross-entropy step (`scripts/bench_step.py`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, Context, Experiment, ModelSpec, Procedure, TrainConfig, run_cli
from reference_impl.harness.bench import BASELINE
from reference_impl.harness.checks import check_logits, check_positive

CONCEPT = "SoftTargetDistillation"


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T² · KL(p_t^T ‖ p_s^T), averaged over the batch. Shapes: (batch, classes) each."""
    check_positive(temperature, "temperature")
    check_logits(student_logits, teacher_logits)
    return _softened_kl(student_logits, teacher_logits, temperature)


def _softened_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """The computation of soft_target_kl, for callers that have validated their inputs."""
    # p^T = softmax(z / T), Eq. (1); both sides as log-probabilities
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    # KL(teacher ‖ student): the input is the student, the target is the teacher
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    # × T², so the soft term's gradient does not shrink as 1/T² (section 2)
    return temperature**2 * kl


def cross_entropy_and_kd(logits: Tensor, labels: Tensor, teacher_logits: Tensor | None, *,
                         kd_temperature: float | None) -> Tensor:
    """CE(y, softmax(z_s)) [+ T² · KL(p_t^T ‖ p_s^T)], both with weight 1: the task part of the
    feature- and relation-based objectives that add a term to it (RKD, SP, as their authors run
    them with KD). The KL term is there when kd_temperature is given (teacher_logits then required)."""
    kd = kd_temperature is not None
    if kd:
        check_positive(kd_temperature, "kd_temperature")
        if teacher_logits is None:
            raise ValueError("teacher_logits are required when kd_temperature is given")
    check_logits(logits, teacher_logits if kd else None, labels)  # once: the KL below trusts it
    loss = F.cross_entropy(logits, labels)
    if kd:
        loss = loss + _softened_kl(logits, teacher_logits, kd_temperature)
    return loss


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *,
                     temperature: float = 4.0, alpha: float = 0.9) -> Tensor:
    """(1 - α) · CE(y, softmax(z_s)) + α · T² · KL(p_t^T ‖ p_s^T)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    check_positive(temperature, "temperature")
    check_logits(student_logits, teacher_logits, labels)  # once per step: the terms below trust it
    hard = F.cross_entropy(student_logits, labels)
    soft = _softened_kl(student_logits, teacher_logits, temperature)
    return (1 - alpha) * hard + alpha * soft


class CachedSoftTargets:
    """The soft-target loss for training, with the teacher's side computed once per sample.

    Section 2 of the paper writes the objective with cross-entropies H(p, q) = -Σ_c p_c log q_c:

        L = (1 - α) · H(y, p_s) + α · T² · H(p_t^T, p_s^T)

    Since H(p, q) = H(p) + KL(p ‖ q), this is `soft_target_loss` plus α T² H(p_t^T), the
    teacher's entropy: a constant for each sample, so the gradient is the same (a test checks
    value and gradient). Both terms have one form, "weighted target · log softmax(z_s / τ)",
    with τ = 1 for the labels and τ = T for the teacher, so the two weighted targets of every
    sample are computed (and validated) once, and a step indexes them with the batch, like the
    inputs: one log_softmax and one dot product.
    """

    def __init__(self, teacher_logits: Tensor, labels: Tensor, *, temperature: float = 4.0, alpha: float = 0.9):
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        check_positive(temperature, "temperature")
        check_logits(teacher_logits, labels=labels, student_name="teacher_logits")
        self.n_samples, self.n_classes = teacher_logits.shape
        with torch.no_grad():
            p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)  # p_t^T, Eq. (1): (N, C)
            one_hot = F.one_hot(labels, self.n_classes).to(p_teacher.dtype)
            weighted_targets = torch.cat([(1 - alpha) * one_hot, alpha * temperature**2 * p_teacher], 1)
        # Classes first, (2C, N): log_softmax over a short class axis (C = 10) runs about ten times
        # faster on a CPU when that axis is not the last one, and a batch's targets then line up.
        self.weighted_targets = weighted_targets.t().contiguous()
        self.inverse_temperatures = torch.tensor([1.0, 1.0 / temperature], dtype=p_teacher.dtype,
                                                 device=p_teacher.device).view(2, 1, 1)

    def __call__(self, student_logits: Tensor, idx: Tensor) -> Tensor:
        """The loss of a batch: `student_logits` (B, C) of the samples `idx` (B,)."""
        try:  # called on every step: bad input is diagnosed only once something has failed
            batch = len(idx)
            # -(1/B) · the batch's weighted targets, (2C, B): constants, so no gradient flows into them
            targets = self.weighted_targets.index_select(1, idx).mul_(-1.0 / batch)
            # log softmax(z_s / τ) for τ = 1 and τ = T, classes first: (2, C, B)
            log_p = torch.log_softmax(student_logits.t() * self.inverse_temperatures, dim=1)
            # L = -(1/B) Σ_samples Σ_τ Σ_c weighted target · log softmax(z_s / τ)
            loss = torch.vdot(targets.view(-1), log_p.view(-1))
            well_formed = student_logits.shape == (batch, self.n_classes)
        except (AttributeError, IndexError, RuntimeError, TypeError):
            well_formed = False
        if not well_formed:
            raise ValueError(self._what_is_wrong(student_logits, idx))
        if not math.isfinite(loss.item()):  # the cached targets are finite, so the logits are not
            raise ValueError("student_logits contains NaN or infinite values")
        return loss

    def _what_is_wrong(self, student_logits, idx) -> str:
        if not isinstance(student_logits, Tensor) or not isinstance(idx, Tensor):
            return "student_logits and idx must be torch.Tensors"
        if idx.dim() != 1 or idx.dtype not in (torch.int64, torch.int32):
            return f"idx must be a 1-D tensor of sample indices, got {idx.dtype} of shape {tuple(idx.shape)}"
        if len(idx) and not 0 <= int(idx.min()) <= int(idx.max()) < self.n_samples:
            return f"idx must index the {self.n_samples} cached samples, got values in [{int(idx.min())}, {int(idx.max())}]"
        if student_logits.shape != (len(idx), self.n_classes):
            return (f"student_logits must have shape ({len(idx)}, {self.n_classes}) for {len(idx)} indices, "
                    f"got {tuple(student_logits.shape)}")
        if student_logits.dtype != self.weighted_targets.dtype:
            return f"student_logits are {student_logits.dtype} but the cached targets {self.weighted_targets.dtype}"
        return f"cannot compute the loss of student_logits {tuple(student_logits.shape)} for idx {tuple(idx.shape)}"


def distilled_student(ctx: Context, *, temperature: float = 4.0, alpha: float = 0.9):
    """Train a fresh student on the soft-target loss, teacher outputs cached per sample."""
    temperature = ctx.softening(temperature)  # a teaching run's --temperature, else this arm's own
    student = ctx.new_student()
    x, y = ctx.split.x_train, ctx.split.y_train
    targets = CachedSoftTargets(ctx.teacher_train_logits, y, temperature=temperature, alpha=alpha)

    def batch_loss(idx: Tensor) -> Tensor:  # idx indexes the inputs and the cached targets alike
        return targets(student(x[idx]), idx)

    ctx.fit(student, len(y), batch_loss, desc=f"student (soft targets, T={temperature:g})")
    return student


TEACHER = ModelSpec("cnn", channels=(32, 64), fc=128)
STUDENT = ModelSpec("mlp", hidden=(64,))
# The largest budget of an MLP student on all of MNIST-1D, shared by the modules that use this
# teacher and student. 300 epochs (early stopping after 75 without a better validation score):
# at 100, the validation split chose one of the last 10 epochs for most seeds of nearly every
# distilled arm (`kb.budget.budget_binds`, scripts/budget_check.py), so they were still improving.
STUDENT_CONFIG = TrainConfig(epochs=300)
BUDGET_NOTE = ("Budget: at most 300 epochs for every student arm, the epoch chosen per arm and seed on the "
               "validation split; raised from 100, where validation chose one of the last 10 epochs for most "
               "seeds of the distilled arms (still improving). ")

EXPERIMENTS = [
    Experiment(
        key="soft-vs-hard",
        # CPU budget: about 1.4 CPU-minutes a seed; 31 seeds is what scripts/decisive_cost.py asked for a
        # decisive verdict at the first run's sd's upper limit.
        max_seeds=31,
        first_seed=100,
        rerun_reason="The first run at 300 epochs (seeds 0-4, 2026-11) was inconclusive (-0.01 points, sd 0.80) at "
                     "the 5 seeds its pilot planned (pilot sd 0.25 points, a third of the run's); this run supersedes it with fresh seeds and a "
                     "cap of 31, the seeds scripts/decisive_cost.py estimated for an 80% chance of a decisive verdict.",
        prior_sd=0.0080, prior_seeds=5,  # the superseded run: its pilot's sd (0.25 points) was a third of it
        title="Soft targets vs hard labels, same student, full training set",
        claim=Claim("A small model trained on the soft targets of a larger model generalises better "
                    "than the same model trained on the hard labels.",
                    "arXiv:1503.02531, section 3 (MNIST: the small net makes 146 test errors trained on "
                    "hard labels, 74 trained on the soft targets of a large net)",
                    treatment="distilled", reference="baseline"),
        dataset="mnist1d", teacher=TEACHER, student=STUDENT,
        arms=(BASELINE, Arm("distilled", "soft targets, T=4, α=0.9",
                            lambda ctx: distilled_student(ctx, temperature=4.0, alpha=0.9))),
        student_config=STUDENT_CONFIG, temperature=4.0,
        notes=BUDGET_NOTE + "At 30 epochs (both arms undertrained) distillation was "
              "3.5 and 4.5 points behind on two seeds: soft targets converge more slowly here. On the "
              "digits dataset (teacher 98%) distillation did not help a 16-unit MLP.",
    ),
    Experiment(
        key="three-percent",
        title="Training on 3% of the data: soft targets vs hard labels",
        claim=Claim("Soft targets allow a new model to generalise well from only 3% of the training set, "
                    "where the same model trained on hard targets overfits badly.",
                    "arXiv:1503.02531, section 5, Table 2 (speech: 44.5% hard vs 57.0% soft, frame accuracy)",
                    treatment="distilled", reference="baseline"),
        dataset="mnist1d", teacher=TEACHER, student=TEACHER, labelled_fraction=0.03,
        # 600 epochs of 2 steps: at 200, validation chose one of the last 20 epochs for most seeds of both arms
        student_config=TrainConfig(epochs=600),
        arms=(BASELINE, Arm("distilled", "soft targets only, T=4 (α=1), on the same 3%",
                            lambda ctx: distilled_student(ctx, temperature=4.0, alpha=1.0))),
        temperature=4.0,
        notes="As in the paper's speech experiment, the model trained on 3% has the same architecture as "
              "the model trained on the full training set that supplies the soft targets. Both arms see "
              "only the same 3% of the inputs (120 of 4000), with hard labels or with soft targets. "
              "A first run with the 3,274-parameter MLP student instead (not the paper's setup) gave "
              "22.6% vs 24.5% (+1.9 points, 95% CI -0.04 to +3.8, 5 seeds): inconclusive.",
    ),
]

# How reference_impl.distill runs this technique on a user's models (the arms above call the same code)
PROCEDURE = Procedure(distilled_student)


if __name__ == "__main__":
    run_cli(__import__(__name__))
