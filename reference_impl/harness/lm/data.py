"""Sequence data that exists offline, with a known true output distribution.

**Dialects** (`load_sequences("dialects")`): a string-transduction task built so that the
claims of language-model distillation can be checked against the truth. A source string
of 3-8 letters from `a`-`h` is translated letter by letter into one of three *dialects*,
chosen once per sentence with probabilities 0.5, 0.3 and 0.2:

    source  c a f e        dialect 0 (p = 0.5)   ->  4 0 9 3
                           dialect 1 (p = 0.3)   ->  4 B 9 7
                           dialect 2 (p = 0.2)   ->  6 B 2 7

The dialects agree on some letters and differ on others, so a model must remember which
dialect it has committed to: mixing them token by token (what a model that matches only
per-token marginals does when it decodes greedily) gives an output no dialect produces.
The true distribution p(y | x) is known exactly (`true_log_prob`), so outputs can be scored
for validity (precision) and the dialects a model's samples reach (recall).

Layout of one example, one token per symbol (`Vocabulary`):

    BOS c a f e SEP 4 0 9 3 EOS PAD PAD ...      (right-padded to a common length)
    |-- prompt --|  |- target -|

`SequenceSplit.inputs`/`labels` are that row shifted by one (the decoder predicts
labels[t] from inputs[:t+1]); `loss_mask` is 1 exactly where the label is a target token
or the EOS, never on the prompt or on padding.

The train / validation / test splits are generated from fixed seeds (split seed 0), with
targets drawn from the true distribution; the test split has 5,000 prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

PAD, BOS, SEP, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>")
SOURCE_LETTERS = "abcdefgh"
TARGET_SYMBOLS = "0123456789AB"
DIALECT_PROBS = (0.5, 0.3, 0.2)
MIN_LEN, MAX_LEN = 3, 8
SIZES = {"train": 4000, "val": 500, "test": 5000}


@dataclass(frozen=True)
class Vocabulary:
    """Characters as tokens: four specials, then the symbols."""
    symbols: str

    @property
    def size(self) -> int:
        return len(SPECIALS) + len(self.symbols)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self.symbols))
        if unknown:
            raise ValueError(f"text contains symbols outside the vocabulary: {''.join(unknown)!r}")
        return [len(SPECIALS) + self.symbols.index(ch) for ch in text]

    def decode(self, ids: list[int] | Tensor) -> str:
        """Symbols up to the first EOS; specials other than EOS are skipped."""
        out = []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.symbols[i - len(SPECIALS)])
        return "".join(out)


DIALECTS_VOCAB = Vocabulary(SOURCE_LETTERS + TARGET_SYMBOLS)


def dialect_tables(seed: int = 0) -> list[dict[str, str]]:
    """Three one-to-one letter -> symbol maps. Dialect 1 agrees with dialect 0 on three letters
    and dialect 2 with dialect 1 on three (other) letters, so that no single position reveals
    the dialect and a model must carry its choice along the sentence."""
    rng = np.random.default_rng(seed)
    tables = [dict(zip(SOURCE_LETTERS, rng.choice(list(TARGET_SYMBOLS), size=8, replace=False)))]
    for _ in range(2):
        previous = tables[-1]
        while True:  # rejection: the fresh letters must all change symbol
            keep = set(rng.choice(list(SOURCE_LETTERS), size=3, replace=False))
            table = {ch: previous[ch] for ch in SOURCE_LETTERS if ch in keep}
            free = [s for s in rng.permutation(list(TARGET_SYMBOLS)) if s not in table.values()]
            fresh = [ch for ch in SOURCE_LETTERS if ch not in keep]
            table.update(zip(fresh, free))
            if all(table[ch] != previous[ch] for ch in fresh):
                break
        tables.append({ch: str(table[ch]) for ch in SOURCE_LETTERS})
    return [{ch: str(t[ch]) for ch in SOURCE_LETTERS} for t in tables]


TABLES = dialect_tables()


def translations(source: str) -> dict[str, float]:
    """The true distribution p(y | source): each output with its probability (dialects that
    give the same output add up)."""
    out: dict[str, float] = {}
    for table, p in zip(TABLES, DIALECT_PROBS):
        y = "".join(table[ch] for ch in source)
        out[y] = out.get(y, 0.0) + p
    return out


def true_log_prob(source: str, output: str) -> float:
    """log p(output | source) under the true distribution (-inf for an invalid output)."""
    p = translations(source).get(output, 0.0)
    return math.log(p) if p > 0 else float("-inf")


@dataclass(frozen=True)
class SequenceSplit:
    """One split of a sequence task: prompts and full rows, shifted for next-token training."""
    name: str
    vocab: Vocabulary
    sources: tuple[str, ...]  # the prompt's text (source string)
    targets: tuple[str, ...]  # the target drawn for it (one sample of p(y | x))
    tokens: Tensor  # (N, L) int64: BOS source SEP target EOS PAD...

    @property
    def inputs(self) -> Tensor:  # (N, L-1)
        return self.tokens[:, :-1]

    @property
    def labels(self) -> Tensor:  # (N, L-1): labels[:, t] is predicted from inputs[:, :t+1]
        return self.tokens[:, 1:]

    @property
    def loss_mask(self) -> Tensor:  # (N, L-1) float: target tokens and EOS only
        return target_mask(self.tokens)[:, 1:]

    def prompts(self) -> tuple[Tensor, Tensor]:
        """Left-padded prompts `PAD.. BOS source SEP` (N, P) and their attention mask, ready
        for generation (the padding sits where generation does not append)."""
        return encode_prompts(self.vocab, self.sources)

    def __len__(self) -> int:
        return len(self.sources)


def target_mask(tokens: Tensor) -> Tensor:
    """1.0 on the target tokens and the EOS of each row (after its SEP, up to and including
    its first EOS), 0.0 on BOS, the prompt, the SEP and padding. Works whatever the pad id,
    since it follows SEP and EOS, not PAD."""
    after_sep = (tokens == SEP).long().cumsum(1) - (tokens == SEP).long()  # 1 strictly after SEP
    eos_before = (tokens == EOS).long().cumsum(1) - (tokens == EOS).long()  # 1 strictly after an EOS
    return ((after_sep > 0) & (eos_before == 0)).float()


def encode_rows(vocab: Vocabulary, sources: list[str], targets: list[str]) -> Tensor:
    rows = [[BOS, *vocab.encode(s), SEP, *vocab.encode(t), EOS] for s, t in zip(sources, targets)]
    width = max(map(len, rows))
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


def encode_prompts(vocab: Vocabulary, sources: tuple[str, ...] | list[str]) -> tuple[Tensor, Tensor]:
    rows = [[BOS, *vocab.encode(s), SEP] for s in sources]
    width = max(map(len, rows))
    tokens = torch.tensor([[PAD] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return tokens, mask


def _dialect_split(part: str, n: int, seed: int) -> SequenceSplit:
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    for _ in range(n):
        length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        source = "".join(rng.choice(list(SOURCE_LETTERS), size=length))
        dialect = int(rng.choice(len(DIALECT_PROBS), p=DIALECT_PROBS))
        sources.append(source)
        targets.append("".join(TABLES[dialect][ch] for ch in source))
    return SequenceSplit(f"dialects-{part}", DIALECTS_VOCAB, tuple(sources), tuple(targets),
                         encode_rows(DIALECTS_VOCAB, sources, targets))


@dataclass(frozen=True)
class SequenceTask:
    """A task's three splits (generated once per process; fixed split seeds)."""
    name: str
    train: SequenceSplit
    val: SequenceSplit
    test: SequenceSplit

    @property
    def vocab(self) -> Vocabulary:
        return self.train.vocab

    @property
    def max_len(self) -> int:
        """The longest row of any split (for the models' position table)."""
        return max(s.tokens.shape[1] for s in (self.train, self.val, self.test))


TASKS = ("dialects",)


@lru_cache(maxsize=None)
def load_sequences(name: str) -> SequenceTask:
    if name != "dialects":
        raise ValueError(f"unknown sequence task {name!r}; known: {', '.join(TASKS)}")
    return SequenceTask(name, *(_dialect_split(part, SIZES[part], seed)
                                for part, seed in (("train", 0), ("val", 1), ("test", 2))))
