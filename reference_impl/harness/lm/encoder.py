"""Encoder (BERT-style) experiments in the one benchmark method (`harness/bench.py`).

**The task** (`load_encoder_task("dialect-pairs")`), derived offline from the dialects data
(`data.py`). Each row is a source and a candidate translation,

    [CLS] c a f e [SEP] 4 0 9 3 [EOS] PAD ...      ([CLS] is the BOS token; the class is read there)

labelled 1 when the candidate is a valid translation of the source in some dialect and 0 when
it is corrupted. Half of the corruptions mix dialects position by position (every letter is
translated validly, but not all by one dialect, so only the sentence as a whole shows the
error); the other half substitute one symbol (a local error). Labels are exactly balanced.
The train / validation / test rows (4,000 / 500 / 5,000) take their sources and positive
candidates from the dialects splits of the same sizes (split seeds 0, 1, 2); which rows are
negative and how they are corrupted is drawn from seeds 10, 11, 12.

**Pre-training rows** (`EncoderTask.corpus`, `corpus_val`): the dialects train and validation
rows (valid pairs, no labels), for masked-LM pre-training and task-agnostic distillation.
`mask_tokens` masks them as BERT does: 15% of the symbol positions (never a special token or
padding) are chosen; of those, 80% become [MASK], 10% a random symbol, 10% stay; the loss is
the cross-entropy on the chosen positions only. [MASK] is one token added after the dialects
vocabulary (`MASK`, `VOCAB_SIZE`).

**Teachers** (`get_encoder_teachers`, trained once and cached): an encoder pre-trained with
masked LM (epoch chosen by validation masked-LM loss), then fine-tuned on the classification
rows with cross-entropy on [CLS] (epoch chosen by validation accuracy). Both are kept: the
*pretrained* encoder is what task-agnostic methods (DistilBERT, MiniLM) distil and initialise
from; the *fine-tuned* teacher is what task-specific methods (TinyBERT, Patient KD) distil,
and what the teaching table scores. The cache key is the task, the spec, both configs and the
bytes of this file, the LM data/models/tokens files and the training loop.

An `EncoderExperiment` supplies the runner's hooks (`setup`, `context`, `evaluate`) like
`SequenceExperiment`; its score is test classification accuracy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..bench import Experiment
from ..evaluate import Evaluation, expected_calibration_error
from ..models import n_params
from ..teachers import cache_dir
from ..train import TrainConfig, freeze, seed_everything, train
from .data import DIALECTS_VOCAB, PAD, SPECIALS, TABLES, TARGET_SYMBOLS, encode_rows, load_sequences, translations
from .models import Transformer, TransformerOutput, TransformerSpec, build_transformer
from .teachers import MetricValidation
from .tokens import per_token_cross_entropy, token_mean

HERE = Path(__file__).resolve().parent
MASK = DIALECTS_VOCAB.size  # one token after the dialects vocabulary
VOCAB_SIZE = MASK + 1
FIRST_SYMBOL = len(SPECIALS)
N_CLASSES = 2
MASK_RATE = 0.15
CORRUPTION_SEEDS = {"train": 10, "val": 11, "test": 12}
TASKS = ("dialect-pairs",)

# The teacher every encoder experiment shares (so it is trained and cached once), and the
# students' budget. Adam at 3e-3: these small encoders train in few epochs on a CPU.
TEACHER = TransformerSpec(causal=False, n_layer=4, n_head=4, d_model=32, n_classes=2)
PRETRAIN_CONFIG = TrainConfig(epochs=12, lr=3e-3)
TEACHER_CONFIG = TrainConfig(epochs=15, lr=3e-3)
STUDENT_CONFIG = TrainConfig(epochs=40, lr=3e-3)
TEACHING_EPOCHS = 20  # a teaching run's largest budget (fewer than the default 30: these arms train in stages)


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class PairSplit:
    name: str
    sources: tuple[str, ...]
    candidates: tuple[str, ...]
    labels: Tensor  # (N,) int64: 1 valid translation, 0 corrupted
    tokens: Tensor  # (N, L) int64: BOS source SEP candidate EOS PAD...

    @property
    def attention_mask(self) -> Tensor:  # (N, L): 1 on real tokens
        return (self.tokens != PAD).long()

    def __len__(self) -> int:
        return len(self.sources)


@dataclass(frozen=True)
class EncoderTask:
    name: str
    train: PairSplit
    val: PairSplit
    test: PairSplit
    corpus: Tensor  # (N, L) unlabelled valid rows for masked LM / task-agnostic distillation
    corpus_val: Tensor  # (M, L) the same from the validation sources, for choosing epochs

    @property
    def max_len(self) -> int:
        return max(t.shape[1] for t in (self.train.tokens, self.val.tokens, self.test.tokens, self.corpus,
                                        self.corpus_val))


def corrupt(source: str, target: str, rng: np.random.Generator) -> str:
    """An invalid candidate for `source` (not in `translations(source)`): a per-position mix of
    dialects or, half the time or when no mix is invalid (sources whose letters all dialects
    translate alike), `target` with one symbol substituted."""
    valid = translations(source)
    if rng.random() < 0.5:
        for _ in range(50):
            choice = rng.integers(len(TABLES), size=len(source))
            mixed = "".join(TABLES[d][ch] for d, ch in zip(choice, source))
            if mixed not in valid:
                return mixed
    while True:
        pos = int(rng.integers(len(target)))
        symbol = str(rng.choice([s for s in TARGET_SYMBOLS if s != target[pos]]))
        candidate = target[:pos] + symbol + target[pos + 1:]
        if candidate not in valid:
            return candidate


def _pair_split(part: str) -> PairSplit:
    base = getattr(load_sequences("dialects"), part)
    rng = np.random.default_rng(CORRUPTION_SEEDS[part])
    n = len(base)
    labels = rng.permutation(np.arange(n) < n // 2).astype(np.int64)  # exactly balanced (n even)
    candidates = [t if y else corrupt(s, t, rng) for s, t, y in zip(base.sources, base.targets, labels)]
    return PairSplit(f"dialect-pairs-{part}", base.sources, tuple(candidates), torch.from_numpy(labels),
                     encode_rows(DIALECTS_VOCAB, list(base.sources), candidates))


@lru_cache(maxsize=None)
def load_encoder_task(name: str) -> EncoderTask:
    if name not in TASKS:
        raise ValueError(f"unknown encoder task {name!r}; known: {', '.join(TASKS)}")
    dialects = load_sequences("dialects")
    return EncoderTask(name, *(_pair_split(p) for p in ("train", "val", "test")),
                       corpus=dialects.train.tokens, corpus_val=dialects.val.tokens)


def mask_tokens(tokens: Tensor, generator: torch.Generator, rate: float = MASK_RATE) -> tuple[Tensor, Tensor]:
    """BERT's masking of (B, L) rows: the masked inputs (B, L) and the chosen positions (B, L)
    float 0/1, where the masked-LM loss is taken. Only symbols are chosen, never [CLS], [SEP],
    [EOS] or padding."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    chosen = (torch.rand(tokens.shape, generator=generator) < rate) & (tokens >= FIRST_SYMBOL)
    action = torch.rand(tokens.shape, generator=generator)  # < 0.8 mask, < 0.9 random symbol, else keep
    random_symbol = torch.randint(FIRST_SYMBOL, MASK, tokens.shape, generator=generator)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(tokens, MASK), tokens)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_symbol, inputs)
    return inputs, chosen.float()


def masked_lm_loss(logits: Tensor, tokens: Tensor, chosen: Tensor) -> Tensor:
    """Cross-entropy of the original tokens (B, L) at the chosen positions, mean over them."""
    return token_mean(per_token_cross_entropy(logits, tokens), chosen)


# ------------------------------------------------------------------ models
def new_encoder(spec: TransformerSpec, task: EncoderTask, seed: int) -> Transformer:
    if spec.causal or spec.n_classes != N_CLASSES:
        raise ValueError(f"spec must be an encoder (causal=False) with n_classes={N_CLASSES}, got {spec}")
    seed_everything(seed)
    return build_transformer(spec, VOCAB_SIZE, task.max_len)


def states(model: nn.Module, tokens: Tensor) -> TransformerOutput:
    """Every layer's outputs for (B, L) rows, padding masked."""
    return model(tokens, (tokens != PAD).long(), output_states=True)


@torch.no_grad()
def predict_states(model: nn.Module, tokens: Tensor, batch_size: int = 1000) -> TransformerOutput:
    """A frozen model's outputs for every row (eval mode, no graph), concatenated over batches:
    row i of every field belongs to row i of `tokens`, so `select(out, idx)` stays aligned with
    shuffled batches."""
    was_training = model.training
    model.eval()
    parts = [states(model, tokens[i:i + batch_size]) for i in range(0, len(tokens), batch_size)]
    model.train(was_training)
    cat = lambda name: [torch.cat(xs) for xs in zip(*(getattr(p, name) for p in parts))]  # noqa: E731
    return TransformerOutput(torch.cat([p.logits for p in parts]), cat("hidden_states"), cat("attention_scores"),
                             cat("attention_probs"), cat("values"),
                             None if parts[0].class_logits is None else torch.cat([p.class_logits for p in parts]))


def select(out: TransformerOutput, idx: Tensor) -> TransformerOutput:
    """The rows `idx` of every field of `out`."""
    rows = lambda xs: [x[idx] for x in xs]  # noqa: E731
    return TransformerOutput(out.logits[idx], rows(out.hidden_states), rows(out.attention_scores),
                             rows(out.attention_probs), rows(out.values),
                             None if out.class_logits is None else out.class_logits[idx])


@torch.no_grad()
def predict_class_logits(model: nn.Module, tokens: Tensor, batch_size: int = 1024) -> Tensor:
    """(N, classes) logits from [CLS], in eval mode, without a graph."""
    was_training = model.training
    model.eval()
    out = torch.cat([states(model, tokens[i:i + batch_size]).class_logits for i in range(0, len(tokens), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, split: PairSplit) -> float:
    return float(predict_class_logits(model, split.tokens).argmax(1).eq(split.labels).float().mean())


def classification_loss(model: nn.Module, split: PairSplit) -> Callable[[Tensor], Tensor]:
    """Cross-entropy of [CLS]'s class logits on the indexed rows' labels (fine-tuning)."""
    return lambda idx: F.cross_entropy(states(model, split.tokens[idx]).class_logits, split.labels[idx])


@torch.no_grad()
def validation_mlm_loss(model: nn.Module, task: EncoderTask) -> float:
    """Masked-LM loss on the validation rows, masked once with a fixed generator."""
    inputs, chosen = mask_tokens(task.corpus_val, torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    loss = float(masked_lm_loss(model(inputs, (inputs != PAD).long()), task.corpus_val, chosen))
    model.train(was_training)
    return loss


def pretrain_mlm(model: Transformer, task: EncoderTask, config: TrainConfig, desc: str) -> None:
    """Masked-LM training on the corpus; dynamic masking (fresh per batch, seeded by config.seed)."""
    generator = torch.Generator().manual_seed(config.seed)

    def batch_loss(idx: Tensor) -> Tensor:
        rows = task.corpus[idx]
        inputs, chosen = mask_tokens(rows, generator)
        return masked_lm_loss(model(inputs, (inputs != PAD).long()), rows, chosen)
    train(model, len(task.corpus), batch_loss, config, desc,
          validation=MetricValidation(model, lambda m: -validation_mlm_loss(m, task)))


def _code_version() -> str:
    digest = hashlib.sha256()
    for path in (HERE / "encoder.py", HERE / "data.py", HERE / "models.py", HERE / "tokens.py",
                 HERE.parent / "train.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def get_encoder_teachers(task: EncoderTask, spec: TransformerSpec, pretrain_config: TrainConfig,
                         finetune_config: TrainConfig, *, use_cache: bool = True) -> tuple[Transformer, Transformer]:
    """(pretrained, fine-tuned) encoders, frozen, from the cache when possible."""
    payload = {"task": task.name, "spec": asdict(spec), "pretrain": asdict(pretrain_config),
               "finetune": asdict(finetune_config), "code": _code_version()}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"{task.name}-{key}.pt"
    pretrained = new_encoder(spec, task, pretrain_config.seed)
    teacher = new_encoder(spec, task, pretrain_config.seed)
    if use_cache and path.exists():
        saved = torch.load(path, weights_only=True)
        pretrained.load_state_dict(saved["pretrained"])
        teacher.load_state_dict(saved["teacher"])
        return freeze(pretrained), freeze(teacher)
    pretrain_mlm(pretrained, task, pretrain_config, f"teacher pre-training (masked LM) {spec.describe()}")
    teacher.load_state_dict(pretrained.state_dict())
    train(teacher, len(task.train), classification_loss(teacher, task.train), finetune_config,
          f"teacher fine-tuning {spec.describe()}", validation=MetricValidation(teacher, lambda m: accuracy(m, task.val)))
    if use_cache:
        tmp = path.with_suffix(".tmp")
        torch.save({"pretrained": pretrained.state_dict(), "teacher": teacher.state_dict()}, tmp)
        tmp.replace(path)  # a killed run never leaves a half-written teacher
    return freeze(pretrained), freeze(teacher)


# ------------------------------------------------------------------ the runner's hooks
@dataclass
class EncoderContext:
    """What an arm of an encoder experiment gets (the counterpart of `bench.Context`)."""
    task: EncoderTask
    teacher: nn.Module  # fine-tuned on the task, frozen
    pretrained: nn.Module  # the same encoder before fine-tuning (masked LM only), frozen
    student_spec: TransformerSpec
    config: TrainConfig
    seed: int
    progress: str = ""
    chosen_epochs: list[int] = field(default_factory=list)
    temperature: float | None = None

    def softening(self, default: float) -> float:
        return default if self.temperature is None else self.temperature

    def new_student(self, spec: TransformerSpec | None = None, *, seed: int | None = None) -> Transformer:
        return new_encoder(spec or self.student_spec, self.task, self.seed if seed is None else seed)

    def fit(self, modules: nn.Module | list[nn.Module], n_samples: int, batch_loss: Callable[[Tensor], Tensor], *,
            desc: str, deployed: nn.Module | None = None, config: TrainConfig | None = None,
            score: Callable[[], float] | None = None) -> list[float]:
        """`train` with the epoch chosen on the validation split: by `score()` (higher is better;
        e.g. minus a distillation loss, for a stage that trains no classifier) or, by default,
        the deployed model's validation accuracy."""
        modules = modules if isinstance(modules, list) else [modules]
        deployed = deployed or modules[0]
        validation = MetricValidation(deployed, (lambda m: score()) if score else (lambda m: accuracy(m, self.task.val)))
        label = f"{self.progress} {desc}" if self.progress else desc
        history = train(modules, n_samples, batch_loss, config or self.config, label, validation=validation)
        self.chosen_epochs.append(validation.best_epoch)
        return history

    def fine_tune(self, student: nn.Module, desc: str) -> nn.Module:
        """Cross-entropy on the task's labels (the baseline, and the last stage of task-agnostic methods)."""
        self.fit(student, len(self.task.train), classification_loss(student, self.task.train), desc=desc)
        return student


def scratch_encoder_student(ctx: EncoderContext) -> nn.Module:
    """The baseline: the same student, randomly initialised, cross-entropy on the labels."""
    return ctx.fine_tune(ctx.new_student(), "student (labels)")


@dataclass
class Prepared:
    task: EncoderTask
    pretrained: nn.Module
    teacher: nn.Module
    teacher_evaluation: Evaluation
    teacher_test_logits: Tensor


def evaluation(model: nn.Module, split: PairSplit, teacher_logits: Tensor | None = None) -> Evaluation:
    logits = predict_class_logits(model, split.tokens)
    predicted, y = logits.argmax(1), split.labels
    return Evaluation(
        accuracy=float(predicted.eq(y).float().mean()),
        per_class_accuracy=[float(predicted[y == c].eq(c).float().mean()) for c in range(N_CLASSES)],
        teacher_agreement=None if teacher_logits is None else float(predicted.eq(teacher_logits.argmax(1)).float().mean()),
        ece=expected_calibration_error(logits.softmax(1), y), n_params=n_params(model), latency_us=None)


@dataclass(frozen=True)
class EncoderExperiment(Experiment):
    """An Experiment on an encoder task; `accuracy` in its results is test classification accuracy."""
    pretrain_config: TrainConfig = TrainConfig(epochs=30)

    @property
    def columns(self) -> str:
        return (f"columns: test accuracy is mean ± sd over seeds on the {len(load_encoder_task(self.dataset).test):,} "
                "test pairs (is the candidate a valid translation of the source?); agree w/ teacher is the share "
                "of test pairs where the student's class is the fine-tuned teacher's; ECE is the expected "
                "calibration error (15 bins); epoch is the one chosen on the validation split by accuracy (the "
                "last stage's, for arms trained in stages).")

    def setup(self) -> Prepared:
        task = load_encoder_task(self.dataset)
        pretrained, teacher = get_encoder_teachers(task, self.teacher, self.pretrain_config, self.teacher_config)
        test_logits = predict_class_logits(teacher, task.test.tokens)
        return Prepared(task, pretrained, teacher, evaluation(teacher, task.test), test_logits)

    def context(self, prepared: Prepared, seed: int, config: TrainConfig,
                temperature: float | None = None) -> EncoderContext:
        return EncoderContext(prepared.task, prepared.teacher, prepared.pretrained, self.student, config, seed,
                              temperature=temperature)

    def evaluate(self, student: nn.Module, prepared: Prepared) -> Evaluation:
        return evaluation(student, prepared.task.test, prepared.teacher_test_logits)

    def validation_score(self, student: nn.Module, prepared: Prepared) -> float:
        return accuracy(student, prepared.task.val)
