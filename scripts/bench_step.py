"""Distillation step time with cached teacher outputs ÷ plain cross-entropy step time.

    python scripts/bench_step.py [--steps 2000]

For the same student, batch size and optimiser, times (median of repeated blocks of steps)
a training step on plain cross-entropy and a step on the soft-target loss whose teacher
logits come from the per-sample cache (indexed with the batch). The teacher itself costs
nothing per step once cached; what remains is the cost of the extra loss terms. The
target is a ratio ≤ 1.05. Runs single-threaded so the two timings share the same conditions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference_impl.harness import ModelSpec, build_model, load_split  # noqa: E402
from reference_impl.techniques.soft_targets import soft_target_loss  # noqa: E402

CASES = {
    "mnist1d, MLP 64 student": ("mnist1d", ModelSpec("mlp", hidden=(64,))),
    "mnist (784 inputs), MLP 256-128 student": ("mnist", ModelSpec("mlp", hidden=(256, 128))),
    "mnist1d, CNN 16-32 student": ("mnist1d", ModelSpec("cnn", channels=(16, 32))),
}


def measure(dataset: str, spec: ModelSpec, n_steps: int, batch_size: int = 64, blocks: int = 21) -> dict:
    """Median µs per step of each kind, timed in alternating blocks (CE, KD, CE, KD, ...) so that
    both see the same machine conditions."""
    split = load_split(dataset)
    x, y = split.x_train, split.y_train
    torch.manual_seed(0)
    cached_teacher_logits = torch.randn(len(y), split.n_classes) * 3  # stands in for teacher(x), computed once
    batches = [torch.randint(0, len(y), (batch_size,)) for _ in range(64)]
    steps = {}
    for name in ("ce", "kd"):
        torch.manual_seed(0)
        student = build_model(spec, split)
        optimiser = torch.optim.Adam(student.parameters(), lr=1e-3)

        def step(i: int, name=name, student=student, optimiser=optimiser) -> None:
            idx = batches[i % len(batches)]
            logits = student(x[idx])
            if name == "ce":
                loss = F.cross_entropy(logits, y[idx])
            else:  # teacher outputs come from the cache, indexed like the inputs
                loss = soft_target_loss(logits, cached_teacher_logits[idx], y[idx], temperature=4.0, alpha=0.9)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        for i in range(50):  # warm-up
            step(i)
        steps[name] = step
    per_block = max(1, n_steps // blocks)
    timings: dict[str, list[float]] = {"ce": [], "kd": []}
    for _ in range(blocks):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for i in range(per_block):
                step(i)
            timings[name].append((time.perf_counter() - t0) / per_block)
    ce, kd = statistics.median(timings["ce"]), statistics.median(timings["kd"])
    return {"student_params": sum(p.numel() for p in build_model(spec, split).parameters()),
            "ce_step_us": round(ce * 1e6, 1), "kd_step_us": round(kd * 1e6, 1), "ratio": round(kd / ce, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {case: measure(ds, spec, args.steps) for case, (ds, spec) in CASES.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
