"""Which stored results had a budget that bound: validation chose an epoch in the last 10% of
the largest budget for at least half of an arm's seeds (the arm may still have been improving).

    .venv/bin/python scripts/budget_check.py [results_dir]

Reads results/*.ttl (kdo:studentEpochs, kdo:chosenEpochs per arm); prints every arm, marks the
binding ones and exits 1 if any binds. The rule is kb.budget.budget_binds, which the benchmark and the site apply too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyoxigraph as ox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kb.namespaces import KDO  # noqa: E402
from kb.budget import budget_binds  # noqa: E402

QUERY = f"""PREFIX kdo: <{KDO}>
SELECT ?r ?key ?budget ?arm ?chosen WHERE {{
  ?r a kdo:BenchmarkResult ; kdo:experimentKey ?key ; kdo:studentEpochs ?budget ; kdo:hasArm ?a .
  ?a kdo:armKey ?arm ; kdo:chosenEpochs ?chosen .
}} ORDER BY ?r ?arm"""


def main(directory: Path) -> int:
    store = ox.Store()
    for path in sorted(directory.glob("*.ttl")):
        store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    binding = 0
    for row in store.query(QUERY):
        budget = int(row["budget"].value)
        chosen = [int(v) for v in row["chosen"].value.split()]
        binds = budget_binds(chosen, budget)
        binding += binds
        module = row["r"].value.rsplit("/", 1)[-1].split("--")[0]
        print(f"{'BINDS' if binds else 'ok   '}  {module:<22} {row['key'].value:<22} {row['arm'].value:<16} "
              f"budget {budget:>4}  chosen {' '.join(map(str, chosen))}")
    print(f"{binding} arm(s) with a binding budget")
    return 1 if binding else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results"))
