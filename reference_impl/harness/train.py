"""One training loop for everything, seeded and deterministic.

`train` takes a function from a batch of *indices* to a loss. Indexing every per-sample
tensor (inputs, labels, cached teacher outputs) with the same indices is what keeps
cached teacher outputs aligned with their samples however the data is shuffled.

With a `Validation`, the epoch is chosen on the validation split, never the test split:
after every epoch the deployed model is scored on it, the best epoch's weights are kept,
and training stops once `patience` epochs pass without improvement (the config's
`epochs` is the largest budget). The chosen epoch is recorded for the result's provenance.
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
    epochs: int = 30  # the largest budget; with a Validation, the epoch is chosen on it
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    patience: int | None = None  # epochs without a better validation score before stopping (None: epochs // 4, ≥ 10)

    def stopping_patience(self) -> int:
        return self.patience if self.patience is not None else max(10, self.epochs // 4)


class Validation:
    """Scores `model` (the network that is deployed) on the validation split after each epoch."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor):
        if len(x) != len(y) or len(y) == 0:
            raise ValueError(f"validation inputs and labels must be non-empty and the same length, "
                             f"got {len(x)} and {len(y)}")
        self.model, self.x, self.y = model, x, y
        self.best_epoch = 0  # 1-based; 0 until an epoch has been scored
        self.best_score = float("-inf")
        self.scores: list[float] = []

    def score(self) -> float:
        return float(predict_logits(self.model, self.x).argmax(dim=1).eq(self.y).float().mean())


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
          config: TrainConfig, desc: str = "training", *, validation: Validation | None = None) -> list[float]:
    """Minimise `batch_loss(indices)` with Adam over shuffled mini-batches; returns epoch losses.

    `modules` are the trainable parts (a student, plus e.g. a FitNets regressor); they are
    put in train mode. A teacher is never passed here: it stays frozen. With `validation`,
    every module ends with the weights of the epoch that scored best on it.
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
    best_state = None
    for epoch in _progress(range(1, config.epochs + 1), desc, config.epochs):
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
        if validation is not None:
            score = validation.score()  # predict_logits restores train mode afterwards
            validation.scores.append(score)
            if score > validation.best_score:  # ties keep the earlier, shorter budget
                validation.best_score, validation.best_epoch = score, epoch
                best_state = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]
            elif epoch - validation.best_epoch >= config.stopping_patience():
                break
    if best_state is not None:
        for m, state in zip(modules, best_state):
            m.load_state_dict(state)
    for m in modules:
        m.eval()
    return history
