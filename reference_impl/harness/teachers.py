"""Teachers, trained once and cached.

The cache key is the dataset (with its labelled fraction), the model spec, the training
config and a hash of the harness's own source (data, models, training loop): change any
of them and the teacher is retrained; change nothing and repeated runs reuse it.
Only weights are cached. Teacher *outputs* are recomputed from the weights for whatever
inputs a run uses, so they can never drift out of line with the samples.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .data import Split
from .models import ModelSpec, build_model
from .train import TrainConfig, freeze, seed_everything, train

HERE = Path(__file__).resolve().parent
CODE_FILES = ("data.py", "models.py", "train.py", "teachers.py")


def code_version() -> str:
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    default = HERE.parents[1] / "data" / "cache" / "teachers"
    path = Path(os.environ.get("KD_CACHE_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_key(split: Split, spec: ModelSpec, config: TrainConfig) -> str:
    payload = {"dataset": split.name, "labelled_fraction": split.labelled_fraction,
               "n_train": len(split.y_train), "spec": asdict(spec), "config": asdict(config),
               "code": code_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def train_supervised(model: nn.Module, split: Split, config: TrainConfig, desc: str = "supervised") -> nn.Module:
    """Plain cross-entropy on the labelled training set (teachers and scratch baselines)."""
    x, y = split.x_train, split.y_train
    train(model, len(y), lambda idx: F.cross_entropy(model(x[idx]), y[idx]), config, desc=desc)
    return model


def get_teacher(split: Split, spec: ModelSpec, config: TrainConfig, *, use_cache: bool = True) -> nn.Module:
    """A trained, frozen teacher for this split, from the cache when possible."""
    path = cache_dir() / f"{split.name}-{cache_key(split, spec, config)}.pt"
    seed_everything(config.seed)
    model = build_model(spec, split)
    if use_cache and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        train_supervised(model, split, config, desc=f"teacher {spec.describe()}")
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)  # a killed run never leaves a half-written teacher
    return freeze(model)
