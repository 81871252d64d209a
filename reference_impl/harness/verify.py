"""`kd bench --verify`: re-run a stored benchmark's seeds on this machine and check it reproduces.

Results drift between CPUs (vector instruction sets change floating-point sums, and training
amplifies the differences), so bit-identical numbers are not expected. What must reproduce:

- the verdict, recomputed with the stored family's other p-values (Holm) and this run's own;
- the new mean difference lies inside the stored 95% interval.

It prints the stored and the current machine (CPU model, instruction sets, threads) beside
the numbers and writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pyoxigraph as ox
import torch

from kb.namespaces import KDO

from .bench import run_experiment
from .results import FAMILY_FILE, adjust_family, cpu_flags, cpu_model, read_claims, results_dir


def _stored_runs(path: Path) -> dict[str, dict[str, str]]:
    store = ox.Store()
    store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    query = f"""PREFIX kdo: <{KDO}> PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?key ?seeds ?cpu ?flags ?threads WHERE {{
          ?r kdo:experimentKey ?key ; kdo:seeds ?seeds ; prov:wasGeneratedBy ?run . ?run kdo:cpu ?cpu .
          OPTIONAL {{ ?run kdo:cpuFlags ?flags }} OPTIONAL {{ ?run kdo:threads ?threads }} }}"""
    return {row["key"].value: {name: (row[name].value if row[name] is not None else "not recorded")
                               for name in ("seeds", "cpu", "flags", "threads")} for row in store.query(query)}


def verify(module: ModuleType, directory: Path | None = None, *, log=print) -> bool:
    """True when every experiment of the module reproduces (see the module docstring)."""
    directory = results_dir(directory)
    name = module.__name__.rsplit(".", 1)[-1]
    path = directory / f"{name}.ttl"
    if not path.exists():
        log(f"{name}: no stored result in {directory}")
        return False
    runs = _stored_runs(path)
    claims = read_claims(directory)
    family_size = int(_family_size(directory) or len(claims))
    stored_verdicts = {c["iri"]: c["verdict"] for c in adjust_family(claims, family_size)}
    ok = True
    for experiment in module.EXPERIMENTS:
        run = runs.get(experiment.key)
        claim = next((c for c in claims if c["iri"].endswith(f"/{name}--{experiment.key}")), None)
        if run is None or claim is None:
            log(f"{name} / {experiment.key}: not stored")
            ok = False
            continue
        seeds = tuple(int(s) for s in run["seeds"].split())
        log(f"{name} / {experiment.key}: re-running seeds {seeds}\n"
            f"  stored on: {run['cpu']} [{run['flags']}], {run['threads']} threads\n"
            f"  this one:  {cpu_model()} [{cpu_flags()}], {torch.get_num_threads()} threads")
        result = run_experiment(experiment, seeds, log=lambda line: None)
        test = result.test
        again = [dict(c, p=test.p_value, peq=test.equivalence_p_value, mean=test.mean)
                 if c["iri"] == claim["iri"] else c for c in claims]
        verdict = next(c["verdict"] for c in adjust_family(again, family_size) if c["iri"] == claim["iri"])
        inside = claim["low"] <= test.mean <= claim["high"]
        same = verdict == stored_verdicts[claim["iri"]]
        log(f"  difference {test.mean * 100:+.2f} points (stored {claim['mean'] * 100:+.2f}, 95% CI "
            f"{claim['low'] * 100:+.2f} to {claim['high'] * 100:+.2f}): {'inside' if inside else 'OUTSIDE'} the interval")
        log(f"  verdict {verdict} (stored {stored_verdicts[claim['iri']]}): {'same' if same else 'CHANGED'}")
        ok = ok and inside and same
    return ok


def _family_size(directory: Path) -> str | None:
    path = directory / FAMILY_FILE
    if not path.exists():
        return None
    store = ox.Store()
    store.load(path=str(path), format=ox.RdfFormat.TURTLE)
    for quad in store.quads_for_pattern(None, ox.NamedNode(KDO + "familySize"), None):
        return quad.object.value
    return None


__all__ = ["verify"]
