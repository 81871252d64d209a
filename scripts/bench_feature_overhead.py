"""Per-training-step cost of the hook-based feature losses, relative to plain cross-entropy.

    OMP_NUM_THREADS=1 python scripts/bench_feature_overhead.py [--steps 600] [--batch-size 64]

For each student of the feature-based techniques (attention transfer's half-width CNN,
FitNets' thin deep CNN) it times full training steps (forward, loss, backward, Adam step)
on mnist1d batches and prints the median time per step and its ratio to a plain
cross-entropy step of the same student at the same batch size:

    ce              cross-entropy only (the reference, ratio 1)
    ce + hooks      the same step inside `capture(...)`: the cost of the hooks alone
    at              CE + attention transfer on two blocks, teacher maps cached (as the module does)
    at, live T      the same, with the teacher's forward pass (no_grad + hooks) and maps in every step
    fitnets stage 1 hint loss through the regressor; trains the lower blocks only (as the module does)
    fitnets stage 2 the KD loss of Eq. (2); no hooks, shown for comparison

Variants are interleaved in rounds so that load from other processes affects them alike.
Weights are untrained: step time does not depend on them, so no teacher needs training.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference_impl.harness import build_model, load_split  # noqa: E402
from reference_impl.harness.hooks import capture, predict_features  # noqa: E402
from reference_impl.techniques import attention_transfer, fitnets  # noqa: E402
from reference_impl.techniques.attention_transfer import (  # noqa: E402
    attention_distance, attention_map, attention_transfer_loss)
from reference_impl.techniques.fitnets import ConvRegressor, fitnets_kd_loss, hint_loss, modules_up_to  # noqa: E402
from reference_impl.techniques.soft_targets import TEACHER  # noqa: E402

AT_LAYERS = ["blocks.0", "blocks.1"]
HINT, GUIDED = "blocks.1", "blocks.1"


def make_steps(split, teacher, batch_size: int, generator: torch.Generator):
    """name -> (student label, a function doing one full training step)."""
    x, y = split.x_train, split.y_train
    teacher_logits = teacher(x).detach()
    teacher_maps = {n: attention_map(a) for n, a in predict_features(teacher, x, AT_LAYERS).items()}
    batches = lambda: torch.randint(0, len(y), (batch_size,), generator=generator)  # noqa: E731

    def model(spec, seed):
        torch.manual_seed(seed)
        return build_model(spec, split)

    steps = {}
    for label, spec in (("AT student " + attention_transfer.STUDENT.describe(), attention_transfer.STUDENT),
                        ("FitNets student " + fitnets.STUDENT.describe(), fitnets.STUDENT)):
        def ce_step(hooked: bool):
            student = model(spec, 0)
            opt = torch.optim.Adam(student.parameters(), 1e-3)

            def step():
                idx = batches()
                if hooked:
                    with capture(student, AT_LAYERS):
                        loss = F.cross_entropy(student(x[idx]), y[idx])
                else:
                    loss = F.cross_entropy(student(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return step

        steps[(label, "ce")] = ce_step(hooked=False)
        steps[(label, "ce + hooks")] = ce_step(hooked=True)
        if spec == attention_transfer.STUDENT:
            for live in (False, True):
                student = model(spec, 0)
                opt = torch.optim.Adam(student.parameters(), 1e-3)

                def at_step(student=student, opt=opt, live=live):
                    idx = batches()
                    with capture(student, AT_LAYERS) as feats:
                        z = student(x[idx])
                    if live:  # teacher forward in the step, loss from both sides' features
                        with torch.no_grad(), capture(teacher, AT_LAYERS) as t_feats:
                            teacher(x[idx])
                        at = attention_transfer_loss([feats[n] for n in AT_LAYERS], [t_feats[n] for n in AT_LAYERS])
                    else:  # as the module does: the teacher's maps cached, indexed by the batch
                        at = attention_distance([attention_map(feats[n]) for n in AT_LAYERS],
                                                [teacher_maps[n][idx] for n in AT_LAYERS])
                    loss = F.cross_entropy(z, y[idx]) + 500.0 * at
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                steps[(label, "at, live T" if live else "at")] = at_step
        else:
            student = model(spec, 0)
            hints = predict_features(teacher, x, [HINT])[HINT]
            with torch.no_grad(), capture(student, [GUIDED]) as feats:
                student(x[:2])
            regressor = ConvRegressor(feats[GUIDED].shape[1:], hints.shape[1:])
            params = [p for m in [*modules_up_to(student, GUIDED, x[:2]), regressor] for p in m.parameters()]
            opt1 = torch.optim.Adam(params, 1e-3)

            def hint_step():
                idx = batches()
                with capture(student, [GUIDED]) as feats:
                    student(x[idx])
                loss = hint_loss(regressor(feats[GUIDED]), hints[idx])
                opt1.zero_grad(set_to_none=True)
                loss.backward()
                opt1.step()

            student2 = model(spec, 0)
            opt2 = torch.optim.Adam(student2.parameters(), 1e-3)

            def kd_step():
                idx = batches()
                loss = fitnets_kd_loss(student2(x[idx]), teacher_logits[idx], y[idx], temperature=3.0, lam=2.0)
                opt2.zero_grad(set_to_none=True)
                loss.backward()
                opt2.step()

            steps[(label, "fitnets stage 1")] = hint_step
            steps[(label, "fitnets stage 2")] = kd_step
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="timed steps per variant (median reported)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20, help="interleaving rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    split = load_split("mnist1d")
    torch.manual_seed(0)
    teacher = build_model(TEACHER, split).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    steps = make_steps(split, teacher, args.batch_size, torch.Generator().manual_seed(0))
    times: dict = {key: [] for key in steps}
    for step in steps.values():  # warm-up
        for _ in range(30):
            step()
    per_round = max(1, args.steps // args.rounds)
    for _ in range(args.rounds):
        for key, step in steps.items():
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - start)
    print(f"median per training step, batch {args.batch_size}, {per_round * args.rounds} steps each, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'student':<36} {'step':<18} {'ms/step':>8} {'x CE':>6}")
    for (label, name), values in times.items():
        median = statistics.median(values)
        reference = statistics.median(times[(label, "ce")])
        print(f"{label:<36} {name:<18} {median * 1e3:>8.3f} {median / reference:>6.2f}")


if __name__ == "__main__":
    main()
