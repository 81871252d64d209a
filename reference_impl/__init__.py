"""Reference implementations of knowledge-distillation techniques.

One small, readable torch module per technique, each linked from its concept in the
ontology (`kdo:implementedBy`), plus the shared harness (data, models, training loop,
evaluation, benchmark runner). The knowledge-base server never imports this package.

The public API, for your own models (see `reference_impl.api` and the site's "Use it on
your own model" page):

    from reference_impl import distill, losses
    result = distill(teacher, student, (x, y), technique="soft_targets", temperature=4.0)

`distill`, `train_on_labels` and `Distilled` are imported on first use, so that importing the
package (e.g. for its registry) does not load torch. (`reference_impl.techniques` is the package
of technique modules; `reference_impl.api.techniques()` lists what `distill` runs.)
"""

__all__ = ["Distilled", "distill", "losses", "train_on_labels"]


def __getattr__(name: str):
    if name in ("Distilled", "distill", "train_on_labels"):
        from . import api
        return getattr(api, name)
    if name == "losses":
        import importlib
        return importlib.import_module(f"{__name__}.losses")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
