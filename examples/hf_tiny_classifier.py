"""Distil a Hugging Face transformer classifier into a smaller one, both built from a config.

    .venv/bin/python examples/hf_tiny_classifier.py [--epochs 15] [--seed 0]

No weights or tokenizer are downloaded: `BertConfig` describes each model and
`BertForSequenceClassification(config)` initialises it at random. The task is scikit-learn's
8x8 digits read as "sentences" of 64 tokens, one per pixel, whose ids are the pixel
intensities 0-16 (a vocabulary of 17 plus [CLS]). A Hugging Face model returns an output
object, and `distill` needs logits, so a two-line wrapper returns `.logits`; token ids stay
integers all the way through.

The example shows the API on a Hugging Face model; it makes no claim. At its settings (chosen
once, before any run, and not tuned) a transformer is a poor model of 64 pixels in a row: the
teacher reaches about 64% and both small students about 22-25% on seed 0 (and at lr 3e-3,
tried once, the teacher diverged to chance).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from reference_impl import distill, train_on_labels

CLS = 17  # the [CLS] token id, after the 17 intensity tokens


class Logits(nn.Module):
    """A Hugging Face sequence classifier as a function from token ids (B, L) to logits (B, classes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


def bert(hidden: int, layers: int, heads: int) -> Logits:
    config = BertConfig(vocab_size=CLS + 1, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * hidden, max_position_embeddings=65, num_labels=10,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return Logits(BertForSequenceClassification(config))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model.eval()(x).argmax(1).eq(y).float().mean())


def main(epochs: int = 15, seed: int = 0) -> dict[str, float]:
    started = time.perf_counter()
    x, y = load_digits(return_X_y=True)
    tokens = torch.cat([torch.full((len(x), 1), CLS), torch.as_tensor(x, dtype=torch.int64)], dim=1)  # (1797, 65)
    labels = torch.as_tensor(y, dtype=torch.int64)
    rest, test = train_test_split(torch.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
    train, val = train_test_split(rest, test_size=0.2, stratify=y[rest], random_state=0)
    split = lambda idx: (tokens[idx], labels[idx])  # noqa: E731

    torch.manual_seed(seed)
    teacher, student = bert(hidden=64, layers=2, heads=4), bert(hidden=16, layers=1, heads=2)
    baseline = copy.deepcopy(student)
    train_on_labels(teacher, split(train), validation=split(val), epochs=epochs, seed=seed, lr=1e-3)
    train_on_labels(baseline, split(train), validation=split(val), epochs=epochs, seed=seed, lr=1e-3)
    result = distill(teacher, student, split(train), technique="soft_targets", validation=split(val), epochs=epochs,
                     seed=seed, lr=1e-3, temperature=4.0, alpha=0.9)
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"teacher {n_params(teacher):,} parameters, student {n_params(student):,}")
    scores = {"teacher": accuracy(teacher, *split(test)), "student on labels": accuracy(baseline, *split(test)),
              "distilled student": accuracy(result.student, *split(test)), "seconds": time.perf_counter() - started}
    for name, value in scores.items():
        print(f"{name:<18} {value:.3f}" if name != "seconds" else f"{name:<18} {value:.1f}")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.epochs, args.seed)
