"""Measure the project's time budgets (never asserted by a test; CI machines are noisy).

    .venv/bin/python scripts/time_budgets.py [--repeat 1] [--only kd-run|build|site] [--json]

- `kd run <technique>` for every technique module: the teaching-run budget (about 2 minutes
  on a laptop CPU). A run whose teacher is not cached yet trains it first; the script runs
  each technique once before timing so that the figure is the teaching run a reader sees.
- `kd build` of the project's sources into a temporary data directory (budget: seconds).
- `kd site build` from that build.

Prints one line per measurement: the wall time of each repetition and their median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KD = [sys.executable, "-m", "kb.cli"]


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=["kd-run", "build", "site"], default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "KD_QUIET": "1"}
    rows: list[tuple[str, list[float]]] = []
    if args.only in (None, "build", "site"):
        data = tempfile.mkdtemp(prefix="kd-budget-")
        env_data = {**env, "KD_DATA_DIR": data}
        rows.append(("kd build", [timed(KD + ["build"], env_data) for _ in range(args.repeat)]))
        if args.only in (None, "site"):
            out = tempfile.mkdtemp(prefix="kd-site-")
            rows.append(("kd site build", [timed(KD + ["site", "build", "--out", out], env_data)
                                           for _ in range(args.repeat)]))
    if args.only in (None, "kd-run"):
        sys.path.insert(0, str(ROOT))
        from reference_impl import registry

        for name in registry.technique_names():
            timed(KD + ["run", name], env)  # trains and caches its teachers if they are missing
            rows.append((f"kd run {name}", [timed(KD + ["run", name], env) for _ in range(args.repeat)]))
    if args.json:
        print(json.dumps({name: times for name, times in rows}, indent=2))
        return
    for name, times in rows:
        print(f"{name:<36} median {statistics.median(times):7.1f} s   "
              f"({', '.join(f'{t:.1f}' for t in times)})")


if __name__ == "__main__":
    main()
