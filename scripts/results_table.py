"""Print every stored claim as one Markdown table (for notes and reviews).

    .venv/bin/python scripts/results_table.py [--results-dir results]

Columns: module / experiment, SESOI, seeds (planned, capped), difference ± sd (points), 95%
interval, raw and Holm-adjusted p-values of the difference and equivalence tests, minimal
detectable effect, verdict; then the count of decisive verdicts.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pyoxigraph as ox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kb.namespaces import KDO  # noqa: E402
from reference_impl.harness import stats  # noqa: E402
from reference_impl.harness.bench import family_size  # noqa: E402
from reference_impl.harness.results import FAMILY_FILE, results_dir  # noqa: E402

QUERY = f"""PREFIX kdo: <{KDO}>
SELECT ?r ?sesoi ?n ?needed ?mean ?sd ?low ?high ?p ?padj ?peq ?peqadj ?mde ?verdict WHERE {{
  ?r a kdo:BenchmarkResult ; kdo:sesoi ?sesoi ; kdo:nSeeds ?n ; kdo:meanDifference ?mean ; kdo:sdDifference ?sd ;
     kdo:ciLow ?low ; kdo:ciHigh ?high ; kdo:pValue ?p ; kdo:adjustedPValue ?padj ; kdo:equivalencePValue ?peq ;
     kdo:adjustedEquivalencePValue ?peqadj ; kdo:verdict ?verdict .
  OPTIONAL {{ ?r kdo:seedsNeeded ?needed }} OPTIONAL {{ ?r kdo:minimalDetectableEffect ?mde }}
}} ORDER BY ?r"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args()
    directory = results_dir(args.results_dir)
    store = ox.Store()
    for path in sorted(directory.glob("*.ttl")):
        store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    if not (directory / FAMILY_FILE).exists():
        raise SystemExit(f"no {FAMILY_FILE} in {directory}: run `kd bench` first")
    print("| claim | SESOI | seeds (needed) | difference ± sd | 95% interval | p | p Holm | p≈ (TOST) | p≈ Holm "
          "| MDE | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    verdicts = Counter()
    family = family_size()
    for row in store.query(QUERY):
        v = {name: row[name].value if row[name] is not None else "" for name in
             ("r", "sesoi", "n", "needed", "mean", "sd", "low", "high", "p", "padj", "peq", "peqadj", "mde", "verdict")}
        verdicts[v["verdict"]] += 1
        pts = lambda x: f"{float(x) * 100:+.2f}"  # noqa: E731
        mde = (f"{float(v['mde']) * 100:.2f}" if v["mde"] else  # fixed seeds: from the run's own spread, marked *
               f"{stats.minimal_detectable_effect(int(v['n']), float(v['sd']), family_size=family) * 100:.2f}*")
        print(f"| {v['r'].rsplit('/', 1)[-1].replace('--', ' / ')} | {float(v['sesoi']) * 100:g} | {v['n']} "
              f"({v['needed'] or 'fixed'}) | {pts(v['mean'])} ± {float(v['sd']) * 100:.2f} | [{pts(v['low'])}, "
              f"{pts(v['high'])}] | {float(v['p']):.2g} | {float(v['padj']):.2g} | {float(v['peq']):.2g} | "
              f"{float(v['peqadj']):.2g} | {mde} | {v['verdict']} |")
    total = sum(verdicts.values())
    decisive = total - verdicts["inconclusive"]
    print(f"\n{total} claims: " + ", ".join(f"{k} {n}" for k, n in sorted(verdicts.items()))
          + f"; decisive {decisive}/{total} ({decisive / max(total, 1):.0%})")


if __name__ == "__main__":
    main()
