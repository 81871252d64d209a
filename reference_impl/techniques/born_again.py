"""Born-again networks: a student identical to its teacher (Furlanello et al. 2018, arXiv:1805.04770).

Generation 0 is trained on the labels; generation k ≥ 1 is a freshly initialised network of
the SAME architecture trained to match generation k-1's output distribution:

    θ_0 = argmin_θ CE(y, f(x; θ));    θ_k = argmin_θ CE(f(x; θ_{k-1}), f(x; θ)),  k ≥ 1

(section 3, "sequence of teaching selves"; the paper numbers generations from 1). L is the
cross-entropy between output distributions, plain softmax (temperature 1), with the
previous generation's outputs as the only target, as in the original formulation (concept
scopeNote). We minimise KL(p_{k-1} ‖ p_k) = CE(p_{k-1}, p_k) − H(p_{k-1}): the teacher's
entropy is a constant, so the gradient is the same. The teacher is frozen and its logits
are computed once, then indexed with each batch's sample indices.

The fair comparison. The claim is that the born-again student beats ITS OWN teacher, a
network of the same size trained on the labels. So, for every seed s, the BAN arm first
trains generation 0 exactly as the baseline arm does (same initialisation, batch order,
budget: it is the baseline's network for seed s, weight for weight), freezes it, and
teaches generation 1 with it; generation 1 starts from a fresh initialisation (seed
s + 1000), as a new network in the paper does. The paired difference ban − baseline for
seed s is therefore "student minus its own teacher". Using one cached teacher for every
seed instead would mix "beats its teacher" with "beats other seeds' replicas", and a lucky
or unlucky teacher would bias every pair. The experiment's reported teacher is the same
architecture with the same budget and seed 0, i.e. the baseline's network for seed 0.

Claim tested: born-again networks, parameterised identically to their teachers, outperform
them (abstract; section 5, Table 2, CIFAR-100 with DenseNets).
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from reference_impl.harness import Arm, Claim, Context, Experiment, Procedure, TrainConfig, freeze, run_cli
from reference_impl.harness.bench import BASELINE, scratch_student
from reference_impl.harness.train import predict_logits
from reference_impl.techniques.soft_targets import STUDENT, soft_target_kl

CONCEPT = "BornAgainNetworks"

GENERATION_SEED_STRIDE = 1000  # generation k ≥ 1 is initialised (and its batches shuffled) with seed + k·stride


def born_again_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KL(p_teacher ‖ p_student) at temperature 1, batch-averaged; shapes (batch, classes)."""
    # CE(f(x; θ_{k-1}), f(x; θ_k)) up to the teacher's (constant) entropy; soft_target_kl(input, target, T)
    # = T² KL(target ‖ input), here T = 1; the teacher logits come from a frozen network
    return soft_target_kl(student_logits, teacher_logits.detach(), 1.0)


def teach_next_generation(teacher: nn.Module, ctx: Context, generation: int) -> nn.Module:
    """A fresh network of the teacher's architecture trained on the frozen teacher's outputs only."""
    if generation < 1:
        raise ValueError(f"generation must be >= 1 (generation 0 is trained on labels), got {generation!r}")
    seed = ctx.seed + generation * GENERATION_SEED_STRIDE
    student = ctx.new_student(seed=seed)  # the student's architecture, initialised afresh
    x = ctx.split.x_train
    teacher_logits = predict_logits(freeze(teacher), x)  # row i belongs to sample i

    def batch_loss(idx: Tensor) -> Tensor:  # idx indexes inputs and teacher logits alike
        return born_again_loss(student(x[idx]), teacher_logits[idx])

    # same budget as its teacher; its own batch order
    ctx.fit(student, len(x), batch_loss, desc=f"born-again generation {generation}",
            config=replace(ctx.config, seed=seed))
    return student


def born_again_generations(ctx: Context, generations: int = 1) -> list[nn.Module]:
    """[generation 0 (= the baseline's network for this seed), generation 1, ..., generation k]."""
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations!r}")
    chain = [scratch_student(ctx)]  # the very procedure of the baseline arm: same init, batches, budget
    for k in range(1, generations + 1):
        chain.append(teach_next_generation(chain[-1], ctx, k))
    return chain


def born_again_student(ctx: Context, generations: int = 1) -> nn.Module:
    return born_again_generations(ctx, generations)[-1]


EXPERIMENTS = [
    Experiment(
        key="ban-vs-teacher",
        # CPU budget: about 1.6 CPU-minutes a seed (the chain trains three students); 12 seeds is what
        # scripts/decisive_cost.py asked for a decisive verdict at the first run's sd's upper limit.
        max_seeds=12,
        first_seed=100,
        rerun_reason="The first run (seeds 0-4, 2026-11) was inconclusive (-0.11 points, sd 0.35) at its cap of "
                     "5 seeds; this run supersedes it with fresh seeds and a cap of 12, the seeds "
                     "scripts/decisive_cost.py estimated for an 80% chance of a decisive verdict.",
        title="Born-again network vs its own teacher (same architecture, same budget)",
        claim=Claim("Born-again networks, students parameterised identically to their teachers, outperform "
                    "their teachers.",
                    "arXiv:1805.04770, abstract and section 5, Table 2 (CIFAR-100, DenseNet teachers and students)",
                    treatment="ban", reference="baseline"),
        dataset="mnist1d", teacher=STUDENT, student=STUDENT,
        teacher_config=TrainConfig(epochs=100), student_config=TrainConfig(epochs=100),
        arms=(BASELINE,
              Arm("ban", "generation 1: same MLP trained on its generation-0 teacher's outputs",
                  lambda ctx: born_again_student(ctx, generations=1)),
              Arm("ban-gen2", "generation 2: taught by generation 1",
                  lambda ctx: born_again_student(ctx, generations=2))),
        notes="The baseline arm IS generation 0: for each seed the BAN arm retrains it identically (same seed, "
              "init, batches, budget) and uses it, frozen, as the teacher of a freshly initialised MLP of the "
              "same size, so each paired difference is a student minus its own teacher. The teacher row (and "
              "the 'agree w/ teacher' column) is the seed-0 generation 0. Target: the teacher's softmax at T=1, "
              "no label term (the original BAN objective). Budget: at most 100 epochs for every generation, the "
              "epoch chosen per generation and seed on the validation split (the chosen epochs are stored with "
              "the result). An earlier version fixed 100 epochs from where the hard-label MLP's test accuracy "
              "levelled off, a choice read off the test split that the method no longer allows.",
    ),
]

# How reference_impl.distill runs this technique on a user's models (the arms above call the same code)
PROCEDURE = Procedure(born_again_student, teacher="none")


if __name__ == "__main__":
    run_cli(__import__(__name__))
