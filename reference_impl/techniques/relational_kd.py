"""Relational knowledge distillation, distance- and angle-wise (Park, Kim, Lu & Cho 2019, arXiv:1904.05068).

The student does not copy the teacher's embedding of each input; it copies the *structure*
of the teacher's embeddings over a mini-batch: how far apart each pair of inputs is, and
the angle that each triplet of inputs forms. Only relations are compared, so the student's
embedding may be narrower than the teacher's (here 64 against 128) with no projection:

    L = CE(y, softmax(z_s)) + λ_D · L_D + λ_A · L_A          (λ_D = 25, λ_A = 50: the paper's weights)

    ψ_D(t_i, t_j) = ‖t_i − t_j‖₂ / μ                                                  Eq. (3)
    μ = (1/|X²|) Σ_{(x_i, x_j) ∈ X²} ‖t_i − t_j‖₂,  X² = the pairs with ‖t_i − t_j‖₂ > 0  Eq. (4)
    L_D = mean over (i, j) of ℓ_δ( ψ_D(t_i, t_j), ψ_D(s_i, s_j) )                     Eqs. (5)-(6)
    ψ_A(t_i, t_j, t_k) = ⟨ (t_i − t_j)/‖t_i − t_j‖₂ , (t_k − t_j)/‖t_k − t_j‖₂ ⟩       Eq. (7)
    L_A = mean over (i, j, k) of ℓ_δ( ψ_A(t_i, t_j, t_k), ψ_A(s_i, s_j, s_k) )        Eq. (8)

t and s are the penultimate features (`model.features`) of teacher and student; μ is
computed separately for each side, which makes L_D invariant to the scale of either
embedding; a cosine is invariant to scale and translation, and so is L_A. μ averages over
the pairs at a distance d > 0 only, as the authors' code does (the mean of the distance
matrix's positive entries): the zero diagonal and inputs with the same embedding are left
out, so μ does not depend on how many duplicates a batch holds. ℓ_δ is the Huber loss with
δ = 1 (= smooth L1). The paper writes sums; like the authors' code we average over the b²
pairs and b³ triplets of the batch (degenerate ones, i = j, are 0 on both sides), and
λ_D = 25, λ_A = 50 are the paper's weights for that averaged form. The teacher is frozen and
its relations carry no gradient.

Combined with KD, as in the authors' classification code, the loss is
CE + 16 · KL(p_t^T ‖ p_s^T) at T = 4 (16 = T², i.e. `soft_targets.soft_target_kl`) + the RKD
terms. The KD arm it is compared with is that same loss without the RKD terms
(λ_D = λ_A = 0): CE + T² · KL at T = 4. An audit found that the earlier KD arm,
`soft_targets`' 0.1 · CE + 0.9 · T² · KL, also changed the CE/KL weighting, so the comparison
confounded that weighting with the relational term. `rkd_objective` is the loss of one batch
and both arms train on it, so they differ by λ_D L_D + λ_A L_A alone.

Claims tested (see EXPERIMENTS): RKD improves the student over training from scratch, and
combined with KD improves over KD alone (section 4.2, image classification).
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

CONCEPT = "RelationalKD"

DISTANCE_WEIGHT = 25.0  # λ_D, paper section 4
ANGLE_WEIGHT = 50.0  # λ_A


def check_embeddings(student: Tensor, teacher: Tensor, min_batch: int) -> None:
    """(batch, width) each, finite, the same batch; the widths may differ."""
    for tensor, name in ((student, "student_embeddings"), (teacher, "teacher_embeddings")):
        check_finite(tensor, name)
        if tensor.dim() != 2:
            raise ValueError(f"{name} must be 2-D (batch, features), got shape {tuple(tensor.shape)}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student_embeddings has {student.shape[0]} rows but teacher_embeddings has "
                         f"{teacher.shape[0]}; row i of both must be the same input")
    if student.shape[0] < min_batch:
        raise ValueError(f"student_embeddings: relations need a batch of at least {min_batch}, got {student.shape[0]}")


def _pairwise(embeddings: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gram matrix G of the centred embeddings, squared distances and the mask of distinct pairs.

    Both potentials are written with G (‖e_i − e_j‖² = G_ii + G_jj − 2 G_ij, and similarly for
    the angle's dot product), which costs O(b³) instead of the O(b³·d) of building every
    difference vector; centring first changes no distance or angle and keeps the identities
    precise. Pairs closer than 1e-3 of the typical distance (i = j, duplicate embeddings)
    count as coincident: distance 0 and no angle, with zero gradient instead of 1/0."""
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    gram = centred @ centred.T
    squared_norms = gram.diagonal()
    squared = (squared_norms[:, None] + squared_norms[None, :] - 2 * gram).clamp_min(0)
    with torch.no_grad():
        distinct = squared > 1e-6 * squared.mean()
    return gram, squared, distinct


def _safe(squared: Tensor, distinct: Tensor) -> Tensor:
    """Squared distances with coincident pairs set to 1, so that sqrt/rsqrt have finite gradients
    everywhere; the caller masks those entries out again (the double-where trick)."""
    return torch.where(distinct, squared, torch.ones_like(squared))


def distance_potential(embeddings: Tensor) -> Tensor:
    """(b, d) -> (b, b): ψ_D, pairwise distances divided by μ, their mean over the pairs with d > 0.

    d > 0 means not coincident in the sense of `_pairwise` (i = j, or the same embedding)."""
    _, squared, distinct = _pairwise(embeddings)
    distances = torch.where(distinct, _safe(squared, distinct).sqrt(), torch.zeros_like(squared))
    # μ = (1/|X²|) Σ_{(x_i, x_j) ∈ X²} ‖t_i − t_j‖₂, Eq. (4), with X² the pairs at distance d > 0, as the authors'
    # code takes the mean of the distance matrix's positive entries. Dividing by b² or b(b − 1) instead would count
    # the zero diagonal or duplicate inputs and shrink μ; the count is a constant (`distinct` carries no gradient).
    mu = distances.sum() / distinct.sum().clamp_min(1)
    # ψ_D(t_i, t_j) = ‖t_i − t_j‖₂ / μ, Eq. (3); μ = 0 only when every pair coincides, and then ψ_D = 0
    return distances / mu.clamp_min(1e-12)


def angle_potential(embeddings: Tensor) -> Tensor:
    """(b, d) -> (b, b, b): entry [j, i, k] is the cosine of the angle at e_j between e_i and e_k."""
    gram, squared, distinct = _pairwise(embeddings)
    inverse = torch.where(distinct, _safe(squared, distinct).rsqrt(), torch.zeros_like(squared))  # 1/‖e_i − e_j‖
    # ⟨e_i − e_j, e_k − e_j⟩ = G_ik − G_ij − G_jk + G_jj, indexed [j, i, k]
    dot = gram[None, :, :] - gram[:, :, None] - gram[:, None, :] + gram.diagonal()[:, None, None]
    # ψ_A(t_i, t_j, t_k) = ⟨(t_i − t_j)/‖t_i − t_j‖, (t_k − t_j)/‖t_k − t_j‖⟩, Eq. (7)
    return dot * (inverse[:, :, None] * inverse[:, None, :])


def rkd_distance_loss(student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    """L_D: Huber between the teacher's and the student's normalised pairwise distances."""
    check_embeddings(student_embeddings, teacher_embeddings, min_batch=2)
    with torch.no_grad():  # the teacher is a fixed target
        target = distance_potential(teacher_embeddings.detach())
    # L_D = Σ ℓ_δ(ψ_D(t_i, t_j), ψ_D(s_i, s_j)), Eqs. (5)-(6), averaged over the b² pairs
    return F.smooth_l1_loss(distance_potential(student_embeddings), target, beta=1.0)


def rkd_angle_loss(student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    """L_A: Huber between the teacher's and the student's triplet-angle cosines."""
    check_embeddings(student_embeddings, teacher_embeddings, min_batch=3)
    with torch.no_grad():
        target = angle_potential(teacher_embeddings.detach())
    # L_A = Σ ℓ_δ(ψ_A(t_i, t_j, t_k), ψ_A(s_i, s_j, s_k)), Eq. (8), averaged over the b³ triplets
    return F.smooth_l1_loss(angle_potential(student_embeddings), target, beta=1.0)


def check_weights(distance_weight: float, angle_weight: float) -> None:
    for value, name in ((distance_weight, "distance_weight"), (angle_weight, "angle_weight")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def rkd_loss(student_embeddings: Tensor, teacher_embeddings: Tensor, *,
             distance_weight: float = DISTANCE_WEIGHT, angle_weight: float = ANGLE_WEIGHT) -> Tensor:
    """λ_D · L_D + λ_A · L_A (a weight of 0 switches its term off: RKD-D or RKD-A alone, or neither)."""
    check_weights(distance_weight, angle_weight)
    check_embeddings(student_embeddings, teacher_embeddings, min_batch=3 if angle_weight else 2)
    loss = student_embeddings.new_zeros(())
    if distance_weight:
        loss = loss + distance_weight * rkd_distance_loss(student_embeddings, teacher_embeddings)
    if angle_weight:
        loss = loss + angle_weight * rkd_angle_loss(student_embeddings, teacher_embeddings)
    return loss


def rkd_objective(logits: Tensor, features_s: Tensor, features_t: Tensor, labels: Tensor,
                  teacher_logits: Tensor | None, *, kd_temperature: float | None,
                  distance_weight: float = DISTANCE_WEIGHT, angle_weight: float = ANGLE_WEIGHT) -> Tensor:
    """The loss of one batch: CE(y, softmax(z_s)) [+ T² KL(p_t^T ‖ p_s^T)] + λ_D L_D + λ_A L_A.

    The KL term is there when kd_temperature is given (teacher_logits are then required).
    CE and KL have weight 1 whatever λ_D and λ_A are, so with λ_D = λ_A = 0 this is the
    treatment's loss without its relational term: the KD arm of `rkd-complements-kd`."""
    # the authors' combination with KD: CE + 16 · KL at T = 4, i.e. T² · KL
    loss = cross_entropy_and_kd(logits, labels, teacher_logits, kd_temperature=kd_temperature)
    # + λ_D L_D + λ_A L_A last, so that the arms with and without it share CE [+ T² KL] exactly
    return loss + rkd_loss(features_s, features_t, distance_weight=distance_weight, angle_weight=angle_weight)


def rkd_student(ctx: Context, *, kd_temperature: float | None = None,
                distance_weight: float = DISTANCE_WEIGHT, angle_weight: float = ANGLE_WEIGHT):
    """Train a fresh student on `rkd_objective` with the penultimate features of student and teacher."""
    if kd_temperature is not None:
        kd_temperature = ctx.softening(kd_temperature)  # a teaching run's --temperature, else this arm's own
        check_positive(kd_temperature, "kd_temperature")
    check_weights(distance_weight, angle_weight)  # before training, not at its first step
    student = ctx.new_student()
    x, y, z_t = ctx.split.x_train, ctx.split.y_train, ctx.teacher_train_logits
    f_t = ctx.teacher_train_features

    def batch_loss(idx: Tensor) -> Tensor:  # idx indexes inputs, labels, teacher logits and features alike
        logits, f_s = ctx.logits_and_features(student, x[idx])
        return rkd_objective(logits, f_s, f_t[idx], y[idx], z_t[idx], kd_temperature=kd_temperature,
                             distance_weight=distance_weight, angle_weight=angle_weight)

    relational = "RKD-DA" if distance_weight or angle_weight else "CE"
    ctx.fit(student, len(y), batch_loss, desc=f"student ({relational}" + (" + KD)" if kd_temperature else ")"))
    return student


RKD = Arm("rkd", "CE + RKD-D (λ=25) + RKD-A (λ=50)", rkd_student)
# The reference for "+KD": rkd+kd without its RKD terms, the same CE/KL weighting (see the module docstring)
KD = Arm("kd", "CE + T²·KL (T=4), the rkd+kd arm without RKD",
         lambda ctx: rkd_student(ctx, kd_temperature=4.0, distance_weight=0.0, angle_weight=0.0))
RKD_KD = Arm("rkd+kd", "CE + T²·KL (T=4) + RKD-D + RKD-A", lambda ctx: rkd_student(ctx, kd_temperature=4.0))

SOURCE = ("arXiv:1904.05068, section 4.2 (image classification on CIFAR-100 and Tiny ImageNet: RKD-D and "
          "RKD-DA beat the baseline student, and HKD + RKD-DA beats HKD alone)")
REGIME = ("mnist1d, teacher CNN 32-64 fc128 (128-d features), student MLP 64 (64-d features), RKD on the "
          "penultimate features with the paper's λ_D = 25, λ_A = 50, batch 64, Adam 1e-3, at most 300 epochs for every arm "
          "(soft_targets.STUDENT_CONFIG; at 100, validation chose one of the last epochs for most seeds of the "
          "distilled arms), the epoch chosen on the validation split (the result page flags the arms for which "
          "this budget bound).")

EXPERIMENTS = [
    Experiment(
        key="rkd-vs-scratch",
        title="RKD (distance + angle) vs the same student trained on hard labels",
        claim=Claim("Relational knowledge distillation improves the student over the same student trained "
                    "without distillation.", SOURCE, treatment="rkd", reference="baseline"),
        dataset="mnist1d", teacher=TEACHER, student=STUDENT, arms=(BASELINE, RKD),
        student_config=STUDENT_CONFIG,
        notes=REGIME,
    ),
    Experiment(
        key="rkd-complements-kd",
        title="RKD added to soft-target KD vs KD alone",
        claim=Claim("RKD is complementary to Hinton's KD: KD + RKD-DA beats KD alone.", SOURCE,
                    treatment="rkd+kd", reference="kd"),
        dataset="mnist1d", teacher=TEACHER, student=STUDENT, arms=(BASELINE, KD, RKD_KD), temperature=4.0,
        student_config=STUDENT_CONFIG,
        notes=REGIME + " rkd+kd is the authors' combination CE + T² KL (T = 4, their λ_KD = 16) + 25 L_D + 50 L_A; "
                       "the kd arm is the same loss without the RKD terms, CE + T² KL (T = 4), so the two arms "
                       "differ by the relational term alone. An audit found that the earlier kd arm, soft_targets' "
                       "0.1 CE + 0.9 T² KL, confounded that CE/KL weighting with the relational term.",
    ),
]

# How reference_impl.distill runs this technique on a user's models (the arms above call the same code)
PROCEDURE = Procedure(rkd_student, needs_features=True)


if __name__ == "__main__":
    run_cli(__import__(__name__))
