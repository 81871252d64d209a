"""Intermediate activations by module name, through forward hooks: no model changes.

Feature-based techniques (FitNets, attention transfer, ...) need the output of inner
layers. Every model in `models.py` names its layers (`blocks.0`, `body.fc1`, ...; see
`dict(model.named_modules())`), so a technique names the layers it wants:

    with capture(student, ["blocks.0", "blocks.1"]) as feats:
        logits = student(x)                 # one ordinary forward pass
    feats["blocks.0"]                       # that module's output in this pass

The stored tensors are the modules' outputs themselves, neither detached nor copied:
a student's features keep their graph (a loss on them trains the student), and a
teacher run under `torch.no_grad()` yields features without one. Each forward pass
overwrites the entries; a module called twice in one pass keeps its last output. The
hooks are removed when the block exits, even on an exception.

`predict_features` is the feature counterpart of `predict_logits`: a frozen teacher's
features for a whole tensor, computed once, so an arm can index them with the batch
indices exactly as it indexes cached teacher logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def _modules_by_name(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of module names, got {names!r}")
    known = dict(model.named_modules())
    unknown = [n for n in names if n not in known or n == ""]
    if unknown:
        raise ValueError(f"names {unknown} are not modules of {type(model).__name__}; "
                         f"known: {', '.join(n for n in known if n)}")
    return [known[n] for n in names]


@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Within the block, `feats[name]` is the output of `model`'s submodule `name` in the
    latest forward pass. Unknown names raise ValueError before any hook is attached."""
    modules = _modules_by_name(model, names)
    feats: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(_module: nn.Module, _inputs, output) -> None:
            feats[name] = output
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in zip(names, modules)]
    try:
        yield feats
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def predict_features(model: nn.Module, x: Tensor, names: Sequence[str], batch_size: int = 1024) -> dict[str, Tensor]:
    """The named features for a whole tensor, in eval mode and without a graph; row i
    belongs to x[i]."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[Tensor]] = {n: [] for n in names}
    with capture(model, names) as feats:
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size])
            for n in names:
                chunks[n].append(feats[n])
    model.train(was_training)
    return {n: torch.cat(parts) for n, parts in chunks.items()}


__all__ = ["capture", "predict_features"]
