"""Copy corrected citations from a module into its stored results, without re-running it.

    .venv/bin/python scripts/refresh_citations.py tinybert minilm [--results-dir results] [--dry-run]

A stored result keeps the text its experiment had when it ran. When a citation is corrected
later (a section, table or equation number; a statement about the paper or its code), this
rewrites only those descriptive fields of results/<module>.ttl from the module as it is now:

    kdo:claimSource          where the claim comes from in the paper
    kdo:selectionProcedure   how the project's settings were chosen, with its sources
    skos:note                the experiment's notes: its setting, described in words

Nothing measured is touched: every other triple is written back unchanged (the script checks
this before it writes), and each changed field is printed old → new.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyoxigraph as ox

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kb.namespaces import KDO, KDR, PREFIXES  # noqa: E402
from reference_impl import registry  # noqa: E402
from reference_impl.harness.results import _write_atomically, results_dir  # noqa: E402

FIELDS = {KDO + "claimSource": lambda e: e.claim.source, KDO + "selectionProcedure": lambda e: e.selection,
          PREFIXES["skos"] + "note": lambda e: e.notes}


def refresh(name: str, directory: Path, *, dry_run: bool = False) -> list[str]:
    """The changes made to <directory>/<name>.ttl, as text (a field the module no longer has is
    dropped; a field the stored result never had is not added: that would describe a run it did not have)."""
    module = registry.load(name)
    path = directory / f"{name}.ttl"
    text = path.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("# "))
    triples = list(ox.parse(text.encode(), format=ox.RdfFormat.TURTLE))  # in the file's order
    refreshed, changes = [], []
    experiments = {f"{KDR}{name}--{e.key}": e for e in module.EXPERIMENTS}
    for triple in triples:
        experiment = experiments.get(triple.subject.value)
        field = FIELDS.get(triple.predicate.value)
        if experiment is None or field is None:
            refreshed.append(triple)
            continue
        old_value, new_value = triple.object.value, field(experiment)
        if new_value:
            refreshed.append(ox.Triple(triple.subject, triple.predicate, ox.Literal(new_value)))
        if new_value != old_value:
            changes.append(f"{name} / {experiment.key} {triple.predicate.value.rsplit('#', 1)[-1]}:\n"
                           f"  - {old_value}\n  + {new_value or '(dropped)'}")
    if [t for t in triples if t.predicate.value not in FIELDS] != [t for t in refreshed if t.predicate.value not in FIELDS]:
        raise RuntimeError(f"{path}: a measured triple would change; nothing written")
    if changes and not dry_run:
        body = ox.serialize(refreshed, format=ox.RdfFormat.TURTLE, prefixes=PREFIXES)
        _write_atomically(path, header.encode() + body)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    args = parser.parse_args()
    directory = results_dir(args.results_dir)
    for name in args.modules:
        changes = refresh(name, directory, dry_run=args.dry_run)
        print("\n".join(changes) if changes else f"{name}: citations already current")


if __name__ == "__main__":
    main()
