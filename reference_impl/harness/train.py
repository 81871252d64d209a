"""One training loop for everything, seeded and deterministic.

`train` takes a function from a batch of *indices* to a loss. Indexing every per-sample
tensor (inputs, labels, cached teacher outputs) with the same indices is what keeps
cached teacher outputs aligned with their samples however the data is shuffled.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; make torch deterministic; return a generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def freeze(model: nn.Module) -> nn.Module:
    """A teacher that cannot change: eval mode (no dropout/batch-norm updates), no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Logits for a whole tensor in eval mode, without building a graph."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def _progress(iterable: Iterable, desc: str, total: int):
    quiet = os.environ.get("KD_QUIET") == "1" or not sys.stderr.isatty()
    if quiet:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, unit="epoch")


def train(modules: nn.Module | list[nn.Module], n_samples: int, batch_loss: Callable[[Tensor], Tensor],
          config: TrainConfig, desc: str = "training") -> list[float]:
    """Minimise `batch_loss(indices)` with Adam over shuffled mini-batches; returns epoch losses.

    `modules` are the trainable parts (a student, plus e.g. a FitNets regressor); they are
    put in train mode. A teacher is never passed here: it stays frozen.
    """
    modules = modules if isinstance(modules, list) else [modules]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: the modules have no parameters that require gradients")
    generator = seed_everything(config.seed)
    optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    for m in modules:
        m.train()
    history = []
    for _ in _progress(range(config.epochs), desc, config.epochs):
        order = torch.randperm(n_samples, generator=generator)
        total, count = 0.0, 0
        for start in range(0, n_samples, config.batch_size):
            idx = order[start:start + config.batch_size]
            loss = batch_loss(idx)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / max(count, 1))
    for m in modules:
        m.eval()
    return history
