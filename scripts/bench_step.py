"""Distillation step time with cached teacher outputs ÷ plain cross-entropy step time.

    python scripts/bench_step.py [--steps 2000] [--blocks 21] [--json FILE]

For the same student, batch size and optimiser, times a training step exactly as
`reference_impl.harness.train` runs it (index the batch, loss, zero_grad, backward, Adam
step, read the loss) with three losses:

- ``ce``: plain cross-entropy on the labels, the baseline (a student trained from scratch);
- ``kd``: soft-target distillation as the harness trains it (`CachedSoftTargets`: the
  teacher's softened outputs computed once per sample, indexed with the batch);
- ``kd_reference``: the same loss written as the paper does (`soft_target_loss` on the
  batch's cached teacher logits, autograd through both softmaxes), for comparison;
- ``kd_teacher_forward``: `soft_target_loss` with the teacher (the soft_targets module's
  CNN, frozen) run on every batch instead of cached: what the cache saves.

The teacher costs nothing per step once its outputs are cached; what is measured is the
cost of the distillation loss itself. The target is kd ÷ ce ≤ 1.05. Steps are timed in
interleaved blocks (ce, kd, kd_reference, ce, ...) so that every loss sees the same machine
conditions, and each figure is the median over blocks, with the 10th-90th percentile
range of the per-block ratios. Single-threaded, so no timing depends on scheduling, and with
denormal floats flushed to zero: Adam's moments for weights that get no gradient (pixels that
are zero in every image of a batch) decay through the subnormal range, where each operation
on them is many times slower, at a step that depends on the run and not on the loss.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference_impl.harness import ModelSpec, TrainConfig, build_model, freeze, load_split  # noqa: E402
from reference_impl.techniques.soft_targets import TEACHER, CachedSoftTargets, soft_target_loss  # noqa: E402

CASES = {
    "mnist1d, MLP 64 student (the soft_targets student)": ("mnist1d", ModelSpec("mlp", hidden=(64,))),
    "mnist (784 inputs), MLP 256-128 student": ("mnist", ModelSpec("mlp", hidden=(256, 128))),
    "mnist1d, CNN 16-32 student": ("mnist1d", ModelSpec("cnn", channels=(16, 32))),
}
LOSSES = ("ce", "kd", "kd_reference", "kd_teacher_forward")
TEMPERATURE, ALPHA = 4.0, 0.9


def measure(dataset: str, spec: ModelSpec, n_steps: int = 2000, blocks: int = 21, warm_up: int = 200) -> dict:
    """Median µs per step of each loss for one student, and each distillation step ÷ the CE step."""
    split = load_split(dataset)
    x, y = split.x_train, split.y_train
    torch.manual_seed(0)
    teacher_logits = torch.randn(len(y), split.n_classes) * 3  # stands in for teacher(x), computed once
    cached = CachedSoftTargets(teacher_logits, y, temperature=TEMPERATURE, alpha=ALPHA)
    teacher = freeze(build_model(TEACHER, split))  # untrained: its cost does not depend on its weights

    def teacher_on_batch(idx):
        with torch.no_grad():
            return teacher(x[idx])

    config = TrainConfig()  # the harness's batch size and learning rate
    batches = [torch.randint(0, len(y), (config.batch_size,)) for _ in range(64)]
    batch_losses = {
        "ce": lambda student, idx: F.cross_entropy(student(x[idx]), y[idx]),
        "kd": lambda student, idx: cached(student(x[idx]), idx),
        "kd_reference": lambda student, idx: soft_target_loss(student(x[idx]), teacher_logits[idx], y[idx],
                                                              temperature=TEMPERATURE, alpha=ALPHA),
        "kd_teacher_forward": lambda student, idx: soft_target_loss(student(x[idx]), teacher_on_batch(idx), y[idx],
                                                                    temperature=TEMPERATURE, alpha=ALPHA),
    }
    steps = {}
    for name in LOSSES:
        torch.manual_seed(0)
        student = build_model(spec, split)
        optimiser = torch.optim.Adam(student.parameters(), lr=config.lr)

        def step(i: int, loss_of=batch_losses[name], student=student, optimiser=optimiser) -> None:
            loss = loss_of(student, batches[i % len(batches)])  # as in harness.train
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            float(loss.detach())

        for i in range(warm_up):
            step(i)
        steps[name] = step
    per_block = max(1, n_steps // blocks)
    seconds: dict[str, list[float]] = {name: [] for name in LOSSES}
    for _ in range(blocks):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for i in range(per_block):
                step(i)
            seconds[name].append((time.perf_counter() - t0) / per_block)

    def ratio(name: str) -> dict:
        per_block_ratios = sorted(a / b for a, b in zip(seconds[name], seconds["ce"]))
        deciles = statistics.quantiles(per_block_ratios, n=10, method="inclusive")
        return {"median": round(statistics.median(seconds[name]) / statistics.median(seconds["ce"]), 3),
                "p10_p90_of_block_ratios": [round(deciles[0], 3), round(deciles[-1], 3)]}

    return {"student_params": sum(p.numel() for p in student.parameters()),  # every loss trains the same spec
            **{f"{name}_step_us": round(statistics.median(seconds[name]) * 1e6, 1) for name in LOSSES},
            **{f"{name}_over_ce": ratio(name) for name in LOSSES[1:]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="steps per loss and case (default 2000)")
    parser.add_argument("--blocks", type=int, default=21, help="interleaved timing blocks (default 21)")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    if args.steps < 1 or args.blocks < 2:
        parser.error("--steps must be >= 1 and --blocks >= 2")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    report = {"batch_size": TrainConfig().batch_size, "temperature": TEMPERATURE, "alpha": ALPHA,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cases": {case: measure(ds, spec, args.steps, args.blocks) for case, (ds, spec) in CASES.items()}}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
