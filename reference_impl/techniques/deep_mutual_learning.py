"""Deep mutual learning: peers trained together teach each other (Zhang et al. 2018, arXiv:1706.00384).

There is no pretrained teacher. A cohort of K untrained networks is trained at the same
time; each minimises its own cross-entropy on the labels plus the KL divergence from the
other peers' current predictions to its own:

    L_Θk = L_Ck + 1/(K-1) · Σ_{l≠k} D_KL(p_l ‖ p_k),    L_Ck = CE(y, p_k),    p = softmax(z)

For two networks (section 3.1, Eqs. (1)-(5)): L_Θ1 = L_C1 + D_KL(p_2 ‖ p_1) and
L_Θ2 = L_C2 + D_KL(p_1 ‖ p_2); section 3.3 extends it to K peers with the 1/(K-1) average.
The distributions are plain softmax outputs (temperature 1, no weight on the KL term).

Each peer treats the others' predictions as fixed targets: p_l is DETACHED in peer k's
loss, so no gradient of L_Θk reaches peer l. The paper updates the peers in turn within
each mini-batch (update network 1, predict again, update network 2). We update all peers
simultaneously from the same forward pass, with detached targets (the common
simplification the concept's scopeNote names): because the peers' parameters are disjoint
and every target is detached, ∂(Σ_k L_Θk)/∂θ_k = ∂L_Θk/∂θ_k, so one backward pass of the
summed loss and one Adam step (Adam is per-parameter) are exactly K separate per-peer
updates taken at the same time.

The experiment's teacher (the harness always prepares one) is NOT used by the DML arm: it
is only shown in the summary table for scale.

Claim tested: each network trained in a DML cohort beats the same network trained alone
(section 4, Table 1, CIFAR-100).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from reference_impl.harness import Arm, Claim, Context, Experiment, Procedure, TrainConfig, run_cli
from reference_impl.harness.bench import BASELINE
from reference_impl.harness.checks import check_logits, check_same_shape
from reference_impl.techniques.soft_targets import STUDENT, TEACHER, soft_target_kl

CONCEPT = "DeepMutualLearning"

PEER_SEED_STRIDE = 1000  # peer k (k ≥ 1) is initialised with seed + k·stride: a different network


def mutual_learning_losses(peer_logits: Sequence[Tensor], labels: Tensor) -> list[Tensor]:
    """[L_Θ1, ..., L_ΘK]: each peer's CE plus its mean KL from the other (detached) peers.

    peer_logits: K ≥ 2 tensors of shape (batch, classes), one per peer; labels: (batch,).
    """
    if not isinstance(peer_logits, (list, tuple)) or len(peer_logits) < 2:
        raise ValueError("peer_logits must be a list of at least two (batch, classes) tensors, one per peer")
    for k, z in enumerate(peer_logits):
        check_logits(z, labels=labels, student_name=f"peer_logits[{k}]")
        check_same_shape(z, peer_logits[0], f"peer_logits[{k}]", "peer_logits[0]")
    n_peers = len(peer_logits)
    losses = []
    for k, z_k in enumerate(peer_logits):
        # L_Ck = -Σ_i Σ_m 1[y_i = m] log p_k^m(x_i), Eq. (2), averaged over the batch
        supervised = F.cross_entropy(z_k, labels)
        # D_KL(p_l ‖ p_k), Eq. (3): the target is peer l, DETACHED so peer l gets no gradient
        # from peer k's loss; soft_target_kl(input, target, T=1) = KL(target ‖ input), batchmean
        mimicry = sum(soft_target_kl(z_k, z_l.detach(), 1.0) for l, z_l in enumerate(peer_logits) if l != k)
        # L_Θk = L_Ck + 1/(K-1) Σ_{l≠k} D_KL(p_l ‖ p_k)  (K = 2: Eqs. (4)-(5))
        losses.append(supervised + mimicry / (n_peers - 1))
    return losses


def new_cohort(ctx: Context, n_peers: int = 2) -> list[nn.Module]:
    """Peer 1 is initialised exactly like the baseline student; the others from other seeds."""
    if n_peers < 2:
        raise ValueError(f"n_peers must be at least 2, got {n_peers!r}")
    return [ctx.new_student()] + [ctx.new_student(seed=ctx.seed + k * PEER_SEED_STRIDE) for k in range(1, n_peers)]


def train_cohort(peers: list[nn.Module], ctx: Context) -> list[nn.Module]:
    """Train all peers together on the mutual-learning losses; same data, batches and budget as the baseline."""
    x, y = ctx.split.x_train, ctx.split.y_train

    def batch_loss(idx: Tensor) -> Tensor:
        logits = [peer(x[idx]) for peer in peers]  # every peer sees the same mini-batch
        # disjoint parameters + detached targets: the gradient of the sum w.r.t. peer k is ∂L_Θk/∂θ_k
        return sum(mutual_learning_losses(logits, y[idx]))

    ctx.fit(peers, len(y), batch_loss, desc=f"DML cohort of {len(peers)}", deployed=peers[0])
    return peers


def mutual_learning_peer(ctx: Context, n_peers: int = 2) -> nn.Module:
    """Peer 1 of a DML cohort (it starts from the baseline's initialisation and batch order)."""
    return train_cohort(new_cohort(ctx, n_peers), ctx)[0]


EXPERIMENTS = [
    Experiment(
        key="dml-vs-independent",
        # CPU budget: about 0.6 CPU-minutes a seed (a cohort trains two students); 35 seeds is what
        # scripts/decisive_cost.py asked for a decisive verdict at the first run's sd's upper limit.
        max_seeds=35,
        first_seed=100,
        rerun_reason="The first run (seeds 0-4, 2026-11) was inconclusive (+0.22 points, sd 0.72) at its cap of "
                     "5 seeds; this run supersedes it with fresh seeds and a cap of 35, the seeds "
                     "scripts/decisive_cost.py estimated for an 80% chance of a decisive verdict.",
        title="Deep mutual learning: a peer of a two-network cohort vs the same network trained alone",
        claim=Claim("Every network trained with deep mutual learning in a cohort performs better than the same "
                    "network trained independently with the conventional supervised loss.",
                    "arXiv:1706.00384, section 4 (results on CIFAR-100), Table 1",
                    treatment="dml", reference="baseline"),
        dataset="mnist1d", teacher=TEACHER, student=STUDENT,
        student_config=TrainConfig(epochs=100),
        arms=(BASELINE, Arm("dml", "peer 1 of a DML cohort of two (CE + KL from the detached other peer)",
                            lambda ctx: mutual_learning_peer(ctx, n_peers=2))),
        notes="No teacher is used: the CNN teacher shown in the table is only the harness's reference point. "
              "Both peers are the student MLP; peer 1 has the baseline's initialisation and batch order, peer 2 "
              "another initialisation. Peers are updated simultaneously from one forward pass with detached "
              "targets (the paper alternates updates within a mini-batch). Temperature 1 and weight 1 on the KL "
              "term, as in the paper; Adam instead of the paper's SGD in both arms. Budget: at most 100 epochs, "
              "the epoch chosen per arm and seed on the validation split (for the cohort, on peer 1's validation "
              "accuracy). An earlier version fixed 100 epochs from where the hard-label baseline's test accuracy "
              "levelled off, a choice read off the test split that the method no longer allows.",
    ),
]

# How reference_impl.distill runs this technique on a user's models (the arms above call the same code)
PROCEDURE = Procedure(mutual_learning_peer, teacher="none")


if __name__ == "__main__":
    run_cli(__import__(__name__))
