"""Measure the project's time budgets (never asserted by a test; CI machines are noisy).

    .venv/bin/python scripts/time_budgets.py [--repeat 1] [--only kd-run|build|site|examples] [--json]
        [--techniques soft_targets,fitnets] [--no-warm-up] [--write]

- `kd run <technique>` for every technique module: the teaching-run budget (about 2 minutes
  on a laptop CPU). A run whose teacher is not cached yet trains it first; the script runs
  each technique once before timing so that the figure is the teaching run a reader sees
  (`--no-warm-up` skips that when the teachers are known to be cached).
- `kd build` of the project's sources into a temporary data directory (budget: seconds).
- `kd site build` from that build.
- `examples/*.py`, the "Use it on your own model" examples (budget: about 2 minutes each);
  `--write` records each one's time and printed output in results/example_times.json, which
  that page shows.

Prints one line per measurement: the wall time of each repetition and their median.
`--write` adds the teaching runs' medians to results/teaching_times.json, which
`kd run --list` shows as each experiment's measured duration.
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
    parser.add_argument("--only", choices=["kd-run", "build", "site", "examples"], default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--techniques", default=None, help="comma-separated modules (default: every one)")
    parser.add_argument("--write", action="store_true", help="record the kd run medians in results/teaching_times.json")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="time the first run (the teachers are already cached)")
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

        names = registry.technique_names()
        chosen = args.techniques.split(",") if args.techniques else names
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            parser.error(f"unknown technique(s) {', '.join(unknown)}; known: {', '.join(names)}")
        for name in chosen:
            if args.warm_up:
                timed(KD + ["run", name], env)  # trains and caches its teachers if they are missing
            rows.append((f"kd run {name}", [timed(KD + ["run", name], env) for _ in range(args.repeat)]))
    outputs: dict[str, str] = {}
    if args.only in (None, "examples"):
        for path in sorted((ROOT / "examples").glob("*.py")):
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                done = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise SystemExit(f"{path.name} failed:\n{done.stderr[-2000:]}")
            outputs[f"examples/{path.name}"] = done.stdout.strip()
            rows.append((f"examples/{path.name}", times))
    if args.write:
        if any(label.startswith("kd run ") for label, _ in rows):
            record_teaching_times(rows)
        if outputs:
            record_example_times(rows, outputs)
    if args.json:
        print(json.dumps({name: times for name, times in rows}, indent=2))
        return
    for name, times in rows:
        print(f"{name:<36} median {statistics.median(times):7.1f} s   "
              f"({', '.join(f'{t:.1f}' for t in times)})")


def record_teaching_times(rows: list[tuple[str, list[float]]]) -> None:
    """Merge the `kd run <name>` medians (each module's first experiment) into teaching_times.json."""
    import datetime as dt
    import platform

    from reference_impl import registry
    from reference_impl.harness.results import TEACHING_TIMES, cpu_model, measured_teaching_seconds, results_dir
    times = measured_teaching_seconds()
    for label, values in rows:
        if not label.startswith("kd run "):
            continue
        name = label.removeprefix("kd run ")
        experiment = registry.load(name).EXPERIMENTS[0]
        times[f"{name}/{experiment.key}"] = {
            "seconds": round(statistics.median(values), 1),
            "epochs": min(experiment.teaching_epochs, experiment.student_config.epochs),
            # threads: the torch threads the timed runs used (OMP_NUM_THREADS when set, else one per CPU)
            "cpu": cpu_model(), "threads": int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count()),
            "machine": platform.machine(),
            "load": round(os.getloadavg()[0], 1),  # 1-min load when written: the timed runs add 1-2 (2 threads)
            "date": dt.date.today().isoformat()}
    path = results_dir() / TEACHING_TIMES
    path.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n")
    print(f"wrote {path}")


def record_example_times(rows: list[tuple[str, list[float]]], outputs: dict[str, str]) -> None:
    """Each example's median time and its (last) printed output, for the "Use it on your own model" page."""
    import datetime as dt

    sys.path.insert(0, str(ROOT))
    from reference_impl.harness.results import cpu_model, results_dir
    path = results_dir() / "example_times.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    for label, values in rows:
        if label in outputs:
            times[label] = {"seconds": round(statistics.median(values), 1), "output": outputs[label],
                            "machine": f"{cpu_model()}, {os.cpu_count()} cores, "
                                       f"{os.environ.get('OMP_NUM_THREADS') or os.cpu_count()} torch thread(s)",
                            "load": round(os.getloadavg()[0], 1), "date": dt.date.today().isoformat()}
    path.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
