"""Language-model teachers, trained once and cached (like `harness/teachers.py` for classifiers).

A teacher is trained on the task's training split with cross-entropy on the target tokens and
EOS (prompt and padding masked), its epoch chosen on the validation split by per-token
likelihood. The cache key is the task, the spec, the config and the bytes of the files that
decide the weights (this file, data.py, models.py, tokens.py and the training loop), so an
edit elsewhere (metrics, the runner) does not retrain it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from ..teachers import cache_dir
from ..train import TrainConfig, Validation, freeze, predict_logits, seed_everything, train
from .data import PAD, SequenceSplit, SequenceTask
from .models import Transformer, TransformerSpec, build_transformer
from .tokens import per_token_cross_entropy, token_mean

HERE = Path(__file__).resolve().parent
CODE_FILES = ("data.py", "models.py", "teachers.py", "tokens.py")


class MetricValidation(Validation):
    """Validation by any score of the deployed model (higher is better), e.g. greedy validity."""

    def __init__(self, model: nn.Module, score: Callable[[nn.Module], float]):  # noqa: super().__init__ checks x, y
        self.model, self._score = model, score
        self.best_epoch, self.best_score, self.scores = 0, float("-inf"), []

    def score(self) -> float:
        return float(self._score(self.model))


def new_model(spec: TransformerSpec, task: SequenceTask, seed: int) -> Transformer:
    seed_everything(seed)
    return build_transformer(spec, task.vocab.size, task.max_len)


OBJECTIVES = ("response", "text")


def next_token_loss(model: nn.Module, split: SequenceSplit, *, objective: str = "response") -> Callable[[Tensor], Tensor]:
    """Cross-entropy on the target tokens and EOS of the indexed rows (the scratch baseline,
    the teacher, and sequence-level KD on teacher outputs); objective="text": on every token
    after BOS, prompt included (a language model of the whole text, which can also write prompts)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    inputs, labels = split.inputs, split.labels
    mask = split.loss_mask if objective == "response" else (labels != PAD).float()

    def batch_loss(idx: Tensor) -> Tensor:
        return token_mean(per_token_cross_entropy(model(inputs[idx]), labels[idx]), mask[idx])
    return batch_loss


def _code_version() -> str:
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update((HERE / name).read_bytes())
    digest.update((HERE.parent / "train.py").read_bytes())
    return digest.hexdigest()[:16]


def get_sequence_teacher(task: SequenceTask, spec: TransformerSpec, config: TrainConfig, *,
                         objective: str = "response", use_cache: bool = True) -> Transformer:
    """A trained, frozen teacher for the task, from the cache when possible. `objective`:
    "response" (the answers only, the default) or "text" (prompts too)."""
    payload = {"task": task.name, "spec": asdict(spec), "config": asdict(config), "code": _code_version(),
               "objective": objective}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"{task.name}-{key}.pt"
    model = new_model(spec, task, config.seed)
    if use_cache and path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return freeze(model)
    validation = MetricValidation(model, lambda m: -mean_token_nll(m, task.val))
    train(model, len(task.train), next_token_loss(model, task.train, objective=objective), config,
          desc=f"teacher {spec.describe()}", validation=validation)
    if use_cache:
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return freeze(model)


def mean_token_nll(model: nn.Module, split: SequenceSplit) -> float:
    """Per-token negative log-likelihood of the split's targets (teacher forcing)."""
    logits = predict_logits(model, split.inputs)
    keep = split.loss_mask.bool()
    return float(torch.nn.functional.cross_entropy(logits[keep], split.labels[keep]))
