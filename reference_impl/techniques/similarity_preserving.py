"""Similarity-preserving knowledge distillation (Tung & Mori 2019, arXiv:1907.09682).

Inputs that the teacher represents alike should be represented alike by the student, and
inputs it represents differently, differently. For a mini-batch of b inputs the activations
of a layer are flattened into Q ∈ R^{b×d}; their b×b matrix of pairwise similarities is
compared between teacher and student. Only the batch size has to agree, so the student's
layer may be narrower than the teacher's (here 64 against 128 features) with no projection:

    G = Q · Qᵀ,   G̃[i, :] = G[i, :] / ‖G[i, :]‖₂                     Eqs. (1)-(2), for teacher and student
    L_SP = 1/b² · ‖G̃_T − G̃_S‖_F²                                       Eq. (3)
    L = CE(y, softmax(z_s)) + γ · L_SP                                  γ = 3000 (the paper's CIFAR-10 value)

Q is the penultimate features (`model.features`) of teacher and student, the last layer
before the classifier (the paper pairs the ends of corresponding stages; our students have
a single hidden stage). Row normalisation makes L_SP invariant to the scale of either
side's activations. The teacher is frozen and its similarities carry no gradient.

Combined with KD the loss is CE + T² · KL(p_t^T ‖ p_s^T) (T = 4, `soft_targets.soft_target_kl`)
+ γ L_SP, the combination recipe of the RepDistiller benchmark (arXiv:1910.10699's code,
weights 1, 1, γ). The KD arm it is compared with is that same loss without the SP term
(γ = 0): CE + T² · KL at T = 4. An audit found that the earlier KD arm, `soft_targets`'
0.1 · CE + 0.9 · T² · KL, also changed the CE/KL weighting, so the comparison confounded that
weighting with the SP term. `sp_objective` is the loss of one batch and both arms train on
it, so they differ by γ L_SP alone.

Claims tested (see EXPERIMENTS): SP improves the student over training without
distillation (section 4.1, CIFAR-10), and combined with KD improves over KD alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, Context, Experiment, Procedure, run_cli
from reference_impl.harness.bench import BASELINE
from reference_impl.harness.checks import check_finite, check_positive
from reference_impl.techniques.soft_targets import STUDENT, STUDENT_CONFIG, TEACHER, cross_entropy_and_kd

CONCEPT = "SimilarityPreservingKD"

GAMMA = 3000.0  # γ, the paper's weight for CIFAR-10 (also RepDistiller's default for SP)


def similarity_matrix(activations: Tensor) -> Tensor:
    """(b, ...) -> (b, b): G̃, the row-normalised Gram matrix of the flattened activations."""
    q = activations.flatten(1)  # Q ∈ R^{b × chw}
    # G = Q Qᵀ, Eq. (1)
    gram = q @ q.T
    norms = gram.norm(dim=1, keepdim=True)
    # G̃[i, :] = G[i, :] / ‖G[i, :]‖₂, Eq. (2). An all-zero row (an input whose activations are
    # all 0, e.g. every ReLU off) stays 0 with zero gradient rather than F.normalize's 1/eps.
    nonzero = norms > 1e-12
    return torch.where(nonzero, gram / torch.where(nonzero, norms, torch.ones_like(norms)), torch.zeros_like(gram))


def sp_loss(student_activations: Tensor, teacher_activations: Tensor) -> Tensor:
    """L_SP = ‖G̃_T − G̃_S‖_F² / b². Shapes: (batch, ...) each; only the batch must agree."""
    for tensor, name in ((student_activations, "student_activations"), (teacher_activations, "teacher_activations")):
        check_finite(tensor, name)
        if tensor.dim() < 2:
            raise ValueError(f"{name} must be (batch, features...) with at least 2 dimensions, "
                             f"got shape {tuple(tensor.shape)}")
    b = student_activations.shape[0]
    if teacher_activations.shape[0] != b:
        raise ValueError(f"student_activations has {b} rows but teacher_activations has "
                         f"{teacher_activations.shape[0]}; row i of both must be the same input")
    with torch.no_grad():  # the teacher is a fixed target
        target = similarity_matrix(teacher_activations.detach())
    # L_SP = 1/b² Σ ‖G̃_T − G̃_S‖_F², Eq. (3)
    return (target - similarity_matrix(student_activations)).pow(2).sum() / b**2


def check_gamma(gamma: float) -> None:
    """γ >= 0: γ = 0 switches L_SP off (the KD arm, the sp+kd loss without SP)."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")


def sp_objective(logits: Tensor, features_s: Tensor, features_t: Tensor, labels: Tensor,
                 teacher_logits: Tensor | None, *, kd_temperature: float | None, gamma: float = GAMMA) -> Tensor:
    """The loss of one batch: CE(y, softmax(z_s)) [+ T² KL(p_t^T ‖ p_s^T)] + γ L_SP.

    The KL term is there when kd_temperature is given (teacher_logits are then required).
    CE and KL have weight 1 whatever γ is, so with γ = 0 this is the treatment's loss without
    its SP term: the KD arm of `sp-complements-kd`."""
    check_gamma(gamma)
    # RepDistiller's combination with KD: CE + T² KL + γ L_SP
    loss = cross_entropy_and_kd(logits, labels, teacher_logits, kd_temperature=kd_temperature)
    if gamma:  # + γ L_SP last, so that the arms with and without it share CE [+ T² KL] exactly
        loss = loss + gamma * sp_loss(features_s, features_t)
    return loss


def sp_student(ctx: Context, *, gamma: float = GAMMA, kd_temperature: float | None = None):
    """Train a fresh student on `sp_objective` with the penultimate features of student and teacher."""
    check_gamma(gamma)  # before training, not at its first step
    if kd_temperature is not None:
        kd_temperature = ctx.softening(kd_temperature)  # a teaching run's --temperature, else this arm's own
        check_positive(kd_temperature, "kd_temperature")
    student = ctx.new_student()
    x, y, z_t = ctx.split.x_train, ctx.split.y_train, ctx.teacher_train_logits
    f_t = ctx.teacher_train_features

    def batch_loss(idx: Tensor) -> Tensor:  # idx indexes inputs, labels, teacher logits and features alike
        logits, f_s = ctx.logits_and_features(student, x[idx])
        return sp_objective(logits, f_s, f_t[idx], y[idx], z_t[idx], kd_temperature=kd_temperature,
                            gamma=gamma)

    desc = (f"student (SP, γ={gamma:g}" if gamma else "student (CE") + (" + KD)" if kd_temperature else ")")
    ctx.fit(student, len(y), batch_loss, desc=desc)
    return student


SP = Arm("sp", "CE + SP (γ=3000)", sp_student)
# The reference for "+KD": sp+kd without its SP term, the same CE/KL weighting (see the module docstring)
KD = Arm("kd", "CE + T²·KL (T=4), the sp+kd arm without SP", lambda ctx: sp_student(ctx, gamma=0.0, kd_temperature=4.0))
SP_KD = Arm("sp+kd", "CE + T²·KL (T=4) + SP (γ=3000)", lambda ctx: sp_student(ctx, kd_temperature=4.0))

SOURCE = "arXiv:1907.09682, section 4.1 (CIFAR-10, WideResNet teacher/student pairs, SP vs the student trained alone)"
SOURCE_KD = ("arXiv:1907.09682, section 4 (SP is reported as complementary to other distillation methods, "
             "e.g. SP combined with KD beats KD)")
REGIME = ("mnist1d, teacher CNN 32-64 fc128 (128-d features), student MLP 64 (64-d features), SP on the "
          "penultimate features with the paper's γ = 3000, batch 64, Adam 1e-3, at most 300 epochs for every arm "
          "(soft_targets.STUDENT_CONFIG; at 100, validation chose one of the last epochs for most seeds of the "
          "distilled arms), the epoch chosen on the validation split (the result page flags the arms for which "
          "this budget bound).")

EXPERIMENTS = [
    Experiment(
        key="sp-vs-scratch",
        title="SP vs the same student trained on hard labels",
        claim=Claim("Similarity-preserving distillation improves the student over the same student trained "
                    "without distillation.", SOURCE, treatment="sp", reference="baseline"),
        dataset="mnist1d", teacher=TEACHER, student=STUDENT, arms=(BASELINE, SP),
        student_config=STUDENT_CONFIG,
        notes=REGIME + " An earlier run (100 epochs, 5 seeds) was fragile: with 2 torch threads instead of 1 "
                       "(the recorded runs use 1), whose different summation order changes the last digits of every "
                       "step, the same 5 seeds gave +1.16 points (95% CI -0.18 to +2.50): inconclusive.",
    ),
    Experiment(
        key="sp-complements-kd",
        # CPU budget: about 1.1 CPU-minutes a seed (three MLP arms); 30 seeds, between the 26 that
        # scripts/decisive_cost.py asked for at the first run's sd and the 43 at its upper limit
        max_seeds=30,
        first_seed=100,
        rerun_reason="The first run (seeds 0-7, 2026-11) was inconclusive at its cap of 8 seeds: -0.09 points "
                     "(interval -0.96 to +0.79, sd 1.05). This run supersedes it with fresh seeds and a cap of 30, "
                     "planned from the larger of its pilot's sd and that run's.",
        prior_sd=0.0105, prior_seeds=8,
        title="SP added to soft-target KD vs KD alone",
        claim=Claim("SP is complementary to traditional KD: KD + SP beats KD alone.", SOURCE_KD,
                    treatment="sp+kd", reference="kd"),
        dataset="mnist1d", teacher=TEACHER, student=STUDENT, arms=(BASELINE, KD, SP_KD), temperature=4.0,
        student_config=STUDENT_CONFIG,
        notes=REGIME + " In two exploratory seeds (0, 1) sp+kd was 2 points below kd on one and 2 points above "
                       "on the other (with the earlier kd arm, see below). sp+kd is CE + T² KL (T = 4) + 3000 L_SP, "
                       "RepDistiller's recipe for combining a method with KD; the kd arm is the same loss without the "
                       "SP term, CE + T² KL (T = 4), so the two arms differ by the SP term alone. An audit found that "
                       "the earlier kd arm, soft_targets' 0.1 CE + 0.9 T² KL, confounded that CE/KL weighting with "
                       "the SP term.",
    ),
]

# How reference_impl.distill runs this technique on a user's models (the arms above call the same code)
PROCEDURE = Procedure(sp_student, needs_features=True)


if __name__ == "__main__":
    run_cli(__import__(__name__))
