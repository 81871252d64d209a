"""kb.budget.budget_binds: when validation's choice of epoch says the budget ran out too soon."""

import pytest

from kb.budget import budget_binds


@pytest.mark.parametrize("chosen, budget, binds", [
    ([91, 95, 10], 100, True),     # 2 of 3 in the last 10% (> 90)
    ([90, 95, 10], 100, False),    # 90 is not past 90% of 100: 1 of 3
    ([91, 10], 100, True),         # half is enough
    ([91, 10, 10], 100, False),
    ([300, 280, 271, 5], 300, True),  # > 270
    ([270, 270, 300], 300, False),
    ([], 100, False),              # nothing recorded: nothing to flag
])
def test_budget_binds(chosen, budget, binds):
    assert budget_binds(chosen, budget) is binds
