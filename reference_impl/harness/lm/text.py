"""Natural text present on every machine: the standard library's docstrings, in two tokenizers.

**Docstrings** (`load_docstrings(tokenizer)`): every paragraph of every docstring (module,
class, function) of the top-level modules of this Python's standard library (`Lib/*.py`,
names not starting with `_`), parsed with `ast` (nothing is imported or downloaded), its
whitespace collapsed, ASCII only. Each paragraph is cut into windows of 48 characters; a
window is a prompt (its first 12 characters) and a target (the rest):

    BOS R e t u r n   t h e   SEP n u m b e r   o f ... EOS PAD ...
        |-- prompt (12) --|      |-- target (up to 36) --|

so the layout, masks, generation and metrics of the dialects task (`data.py`) apply as
they are. Unlike the dialects, the true distribution is unknown: the score is the
next-token accuracy on the target tokens (`metrics.next_token_accuracy`).

Splits are assigned per paragraph by a hash of its text (windows of one paragraph never
straddle two splits): train 4,000 windows, validation 500, test up to 2,000 (1,611 on
Python 3.11). The corpus differs
between Python versions, so the task's `name` carries a digest of its text, and a teacher
cached for one corpus is never loaded for another.

**Two tokenizers** over the same windows, row for row: `"char"` (one token per printable
ASCII character) and `"bpe"` (byte-pair encoding with 256 tokens, trained with Hugging
Face `tokenizers` on the training windows only). A teacher on one and a student on the
other need a cross-tokenizer loss (`techniques/universal_logit_kd.py`); token-level KD
refuses them (`tokens.check_token_logits`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import string
import sysconfig
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from torch import Tensor

from .data import EOS, SPECIALS, SequenceSplit, SequenceTask, Vocabulary, encode_rows

PROMPT_CHARS, WINDOW_CHARS, MIN_WINDOW = 12, 48, 20
SIZES = {"train": 4000, "val": 500, "test": 2000}
BPE_VOCAB_SIZE = 256
TOKENIZERS = ("char", "bpe")
CHAR_VOCAB = Vocabulary("".join(ch for ch in string.printable if ch.isprintable()))  # 95 symbols


def stdlib_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in lib.glob("*.py") if not p.name.startswith("_"))


def docstring_paragraphs(files: list[Path] | None = None) -> list[str]:
    """Distinct docstring paragraphs of the files, whitespace collapsed, ASCII and printable,
    at least MIN_WINDOW characters, in sorted order."""
    found: set[str] = set()
    for path in stdlib_files() if files is None else files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:  # a test module written for another Python: skipped, not fatal
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for paragraph in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
                    text = " ".join(paragraph.split())
                    if len(text) >= MIN_WINDOW and text.isascii() and text.isprintable():
                        found.add(text)
    return sorted(found)


def cached_paragraphs() -> list[str]:
    """`docstring_paragraphs()`, parsed once per machine (about 4 s) and kept beside the other
    generated datasets (KD_DATASET_CACHE_DIR), keyed by the files' names and sizes."""
    files = stdlib_files()
    key = _digest(json.dumps([[p.name, p.stat().st_size] for p in files]))[:12]
    default = Path(__file__).resolve().parents[3] / "data" / "cache" / "datasets"
    path = Path(os.environ.get("KD_DATASET_CACHE_DIR", default)) / f"docstrings-{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    paragraphs = docstring_paragraphs(files)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(paragraphs))
    os.replace(tmp, path)  # a killed run never leaves half a corpus
    return paragraphs


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def split_windows(paragraphs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(prompt, target) windows per split: a paragraph's split from its hash (1 in 10 to test,
    1 in 10 to validation), windows taken in hash order up to each split's size."""
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for paragraph in sorted(paragraphs, key=_digest):
        bucket = int(_digest(paragraph)[:8], 16) % 10
        part = "test" if bucket == 0 else "val" if bucket == 1 else "train"
        for start in range(0, len(paragraph), WINDOW_CHARS):
            window = paragraph[start:start + WINDOW_CHARS]
            if len(window) >= MIN_WINDOW and len(parts[part]) < SIZES[part]:
                parts[part].append((window[:PROMPT_CHARS], window[PROMPT_CHARS:]))
    for part, rows in parts.items():
        if len(rows) < min(SIZES[part], 100):
            raise ValueError(f"the docstring corpus gave only {len(rows)} {part} windows")
    return parts


@dataclass(frozen=True)
class BPEVocabulary:
    """A byte-pair-encoding tokenizer with the four specials at ids 0-3, the interface of
    `data.Vocabulary` (size, encode, decode)."""
    serialized: str  # the tokenizer as JSON (what `tokenizers` saves), so the vocabulary is a value

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer
        return Tokenizer.from_str(self.serialized)

    @property
    def size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int] | Tensor) -> str:
        """Text up to the first EOS; other specials skipped."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        if EOS in ids:
            ids = ids[:ids.index(EOS)]
        return self._tokenizer.decode([i for i in ids if i >= len(SPECIALS)], skip_special_tokens=True)


def train_bpe(texts: list[str], vocab_size: int = BPE_VOCAB_SIZE) -> BPEVocabulary:
    """BPE on characters (no pre-tokenizer: a token may span a space), specials first."""
    from tokenizers import Tokenizer, decoders, models, trainers
    tokenizer = Tokenizer(models.BPE())
    tokenizer.decoder = decoders.Fuse()  # the text is the tokens concatenated as they are
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=list(CHAR_VOCAB.symbols), min_frequency=2)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return BPEVocabulary(tokenizer.to_str())


@lru_cache(maxsize=None)
def load_docstrings(tokenizer: str = "char") -> SequenceTask:
    """The docstrings task in one of `TOKENIZERS`; both give the same windows in the same order."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    parts = split_windows(cached_paragraphs())
    train_text = [p + t for p, t in parts["train"]]
    vocab = CHAR_VOCAB if tokenizer == "char" else train_bpe(train_text)
    digest = _digest("\n".join(p + t for rows in parts.values() for p, t in rows))[:8]
    name = f"docstrings-{tokenizer}-{digest}"
    splits = []
    for part, rows in parts.items():
        sources, targets = [p for p, _ in rows], [t for _, t in rows]
        splits.append(SequenceSplit(f"{name}-{part}", vocab, tuple(sources), tuple(targets),
                                    encode_rows(vocab, sources, targets)))
    return SequenceTask(name, *splits)
