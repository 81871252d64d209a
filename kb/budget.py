"""When a training budget bound: the rule shared by the harness (reference_impl.harness.bench,
scripts/budget_check.py) and the site, which flags such results. Torch-free, so that the site
and the server can use it."""

from __future__ import annotations

LATE = 0.9  # an epoch in the last 10% of the budget


def budget_binds(chosen_epochs: list[int], budget: int) -> bool:
    """Whether the largest budget bound: validation chose an epoch in its last 10% for at least
    half of the seeds, so the arm may still have been improving when the budget ran out."""
    late = sum(e > LATE * budget for e in chosen_epochs)
    return bool(chosen_epochs) and 2 * late >= len(chosen_epochs)
