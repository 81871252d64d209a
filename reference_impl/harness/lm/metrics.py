"""Scores of a decoder on a sequence split, each in [0, 1] (higher is better).

On the dialects, whose true distribution is known:

- `greedy_validity`: the share of prompts whose greedy output is a valid translation (one
  that some dialect produces). Kim & Rush's question: can the student decode greedily?
- `beam_validity`: the same with beam search (the teacher's reference point).
- `sample_validity`: the share of samples at temperature 1 that are valid, i.e. outputs
  the true distribution rates possible: **precision** (what mode-seeking improves).
- `mode_coverage`: for each prompt, the true probability mass of the distinct valid outputs
  reached by `k` samples, averaged: **recall** (what mass-covering improves; 1 when every
  dialect's translation is sampled).
On any split, natural text included (`TEXT_METRICS`):

- `next_token_accuracy`: the share of target tokens (and EOS) whose most likely next token,
  under teacher forcing, is the right one.
- `token_ece`: expected calibration error of the next-token distribution on the target
  positions under teacher forcing (15 bins, as for the classifiers).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..evaluate import expected_calibration_error
from ..train import predict_logits
from .data import SequenceSplit, translations
from .generate import beam_search, generate

EVAL_BATCH = 1000
MAX_NEW_TOKENS = 10  # on the dialects: the longest target (8) + EOS, and one more to see a missing EOS


def max_new_tokens(split: SequenceSplit) -> int:
    """The split's longest target + EOS, and one more to see a missing EOS (MAX_NEW_TOKENS on the dialects)."""
    return int(split.loss_mask.sum(1).max()) + 1


def _decode(split: SequenceSplit, continuations: Tensor) -> list[str]:
    # a continuation without EOS is cut by decode at the end: it is then valid only if complete
    return [split.vocab.decode(row) if bool((row == 3).any()) else "\x00" for row in continuations]


def outputs(model: nn.Module, split: SequenceSplit, *, how: str = "greedy", seed: int = 0,
            beam_size: int = 5, max_new: int | None = None) -> list[str]:
    """The model's output for every prompt of the split ("greedy", "sample" at T = 1, "beam"),
    at most `max_new` tokens each (default: `max_new_tokens(split)`, from its targets)."""
    prompts, mask = split.prompts()
    generator = torch.Generator().manual_seed(seed)
    longest, out = max_new or max_new_tokens(split), []
    for i in range(0, len(prompts), EVAL_BATCH):
        p, m = prompts[i:i + EVAL_BATCH], mask[i:i + EVAL_BATCH]
        if how == "beam":
            cont = beam_search(model, p, m, max_new_tokens=longest, beam_size=beam_size)
        else:
            cont = generate(model, p, m, max_new_tokens=longest, temperature=1.0 if how == "sample" else 0.0,
                            generator=generator)
        out.extend(_decode(split, cont))
    return out


def validity(split: SequenceSplit, produced: list[str]) -> float:
    return sum(y in translations(x) for x, y in zip(split.sources, produced)) / len(produced)


def greedy_validity(model: nn.Module, split: SequenceSplit) -> float:
    return validity(split, outputs(model, split))


def beam_validity(model: nn.Module, split: SequenceSplit) -> float:
    return validity(split, outputs(model, split, how="beam"))


def sample_validity(model: nn.Module, split: SequenceSplit, *, seed: int = 0) -> float:
    return validity(split, outputs(model, split, how="sample", seed=seed))


def mode_coverage(model: nn.Module, split: SequenceSplit, *, k: int = 8, seed: int = 0) -> float:
    reached: list[set[str]] = [set() for _ in split.sources]
    for j in range(k):
        for i, y in enumerate(outputs(model, split, how="sample", seed=seed * 1000 + j)):
            reached[i].add(y)
    return sum(sum(p for y, p in translations(x).items() if y in seen)
               for x, seen in zip(split.sources, reached)) / len(split)


def agreement(a: list[str], b: list[str]) -> float:
    """The share of prompts where two models' outputs are identical."""
    return sum(x == y for x, y in zip(a, b)) / len(a)


def next_token_accuracy(model: nn.Module, split: SequenceSplit) -> float:
    logits = predict_logits(model, split.inputs)  # (N, L-1, V)
    keep = split.loss_mask.bool()
    return float((logits[keep].argmax(-1) == split.labels[keep]).float().mean())


def token_ece(model: nn.Module, split: SequenceSplit) -> float:
    logits = predict_logits(model, split.inputs)  # (N, L-1, V)
    keep = split.loss_mask.bool()
    return expected_calibration_error(torch.softmax(logits[keep], -1), split.labels[keep])


DESCRIPTIONS = {
    "greedy_validity": "the share whose greedy output is a valid translation",
    "beam_validity": "the share whose beam-search output (beam 5) is a valid translation",
    "sample_validity": "the share of samples at temperature 1 that are valid translations: precision",
    "mode_coverage": "the true probability mass of the distinct valid outputs 8 samples reach: recall",
    "next_token_accuracy": "the share of target tokens predicted right under teacher forcing",
}
METRICS = {"greedy_validity": greedy_validity, "beam_validity": beam_validity,
           "sample_validity": sample_validity, "mode_coverage": mode_coverage,
           "next_token_accuracy": next_token_accuracy}
TEXT_METRICS = ("next_token_accuracy",)
