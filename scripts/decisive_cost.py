"""What it would cost to make every claim decisive: seeds and CPU time per claim.

    .venv/bin/python scripts/decisive_cost.py [--results-dir results] [--target 0.8]

For each stored claim: the seeds at which it would get a decisive verdict (held,
contradicted or no practical effect) with 80% probability at the Bonferroni level α/m
(Holm's strictest), if its true difference were the measured mean, at the measured sd and
at that sd's 80% upper confidence limit (`stats.seeds_for_a_decisive_verdict`), and the
CPU time that many seeds would take at the run's own cost per seed (every arm, pilot
excluded, from the arms' recorded training seconds). The measured mean stands in for the
unknown true one, so the figures are estimates of the size of the job, not a plan: a plan
must not assume the effect it tests (bench.plan_seeds does not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyoxigraph as ox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kb.namespaces import KDO  # noqa: E402
from reference_impl.harness import stats  # noqa: E402
from reference_impl.harness.bench import family_size  # noqa: E402
from reference_impl.harness.results import results_dir  # noqa: E402

QUERY = f"""PREFIX kdo: <{KDO}>
SELECT ?r ?sesoi ?n ?mean ?sd ?verdict (SUM(?seconds) AS ?train) WHERE {{
  ?r a kdo:BenchmarkResult ; kdo:sesoi ?sesoi ; kdo:nSeeds ?n ; kdo:meanDifference ?mean ;
     kdo:sdDifference ?sd ; kdo:verdict ?verdict ; kdo:hasArm ?arm .
  ?arm kdo:trainSeconds ?seconds .
}} GROUP BY ?r ?sesoi ?n ?mean ?sd ?verdict ORDER BY ?r"""
CAP = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--target", type=float, default=stats.POWER, help="probability of a decisive verdict")
    args = parser.parse_args()
    store = ox.Store()
    paths = sorted(results_dir(args.results_dir).glob("*.ttl"))
    for path in paths:
        store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    rows = list(store.query(QUERY))
    if not rows:
        raise SystemExit("no stored claims: run `kd bench` first")
    family = family_size()  # every claim the project tests, run or not (bench's family: Holm's strictest level)
    print(f"family of {family} claims ({len(rows)} stored); decisive with probability {args.target:.0%} "
          f"at α = 0.05/{family}")
    print("| claim | verdict | difference ± sd | seeds run | seeds (sd) | seeds (sd's 80% UCL) | CPU min/seed "
          "| CPU h (sd) | CPU h (UCL) |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals = [0.0, 0.0]
    for row in rows:
        n, mean, sd = int(row["n"].value), float(row["mean"].value), float(row["sd"].value)
        sesoi, per_seed = float(row["sesoi"].value), float(row["train"].value) / n / 60
        cells = []
        for i, assumed in enumerate((sd, stats.planning_sd(sd, n))):
            seeds = stats.seeds_for_a_decisive_verdict(assumed, mean, sesoi, family_size=family,
                                                       target=args.target, cap=CAP)
            extra = 0.0 if row["verdict"].value != "inconclusive" else seeds * per_seed / 60
            totals[i] += extra
            cells.append((f"> {CAP}" if seeds > CAP else str(seeds), "-" if not extra else f"{extra:.1f}"))
        print(f"| {row['r'].value.rsplit('/', 1)[-1].replace('--', ' / ')} | {row['verdict'].value} | "
              f"{mean * 100:+.2f} ± {sd * 100:.2f} | {n} | {cells[0][0]} | {cells[1][0]} | {per_seed:.1f} | "
              f"{cells[0][1]} | {cells[1][1]} |")
    print(f"\nre-running the inconclusive claims at those seeds: about {totals[0]:.0f} CPU hours at the measured sd, "
          f"{totals[1]:.0f} at its upper limit (one core each; claims above {CAP} seeds counted at {CAP + 1})")


if __name__ == "__main__":
    main()
