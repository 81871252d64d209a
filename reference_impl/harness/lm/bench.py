"""Language-model experiments in the one benchmark method (`harness/bench.py`).

A `SequenceExperiment` is an `Experiment` whose dataset is a sequence task, whose models
are `TransformerSpec`s, and whose score (`metric`, in [0, 1]) is a decoding metric from
`metrics.py` instead of accuracy. It supplies the three hooks the runner calls (`prepare`,
`context`, `evaluate`), so planning, pairing, validation-chosen epochs, Holm and the RDF
results are the same code as for the classifiers.

Teachers come from `teachers.py` (trained once, cached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

from torch import Tensor, nn

from ..bench import Arm, Experiment
from ..evaluate import Evaluation
from ..models import n_params
from ..train import TrainConfig, predict_logits, train
from . import metrics
from .data import SequenceTask, load_sequences
from .models import Transformer, TransformerSpec
from .teachers import MetricValidation, get_sequence_teacher, new_model, next_token_loss
from .text import load_docstrings

# The sequence tasks an experiment's `dataset` may name.
TASKS: dict[str, Callable[[], SequenceTask]] = {
    "dialects": lambda: load_sequences("dialects"),
    "docstrings-char": lambda: load_docstrings("char"),
    "docstrings-bpe": lambda: load_docstrings("bpe"),
}


def load_task(name: str) -> SequenceTask:
    if name not in TASKS:
        raise ValueError(f"unknown sequence task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]()

@dataclass
class SequenceContext:
    """What an arm of a language-model experiment gets (the counterpart of `bench.Context`)."""
    task: SequenceTask
    teacher: nn.Module
    student_spec: TransformerSpec
    config: TrainConfig
    seed: int
    metric: str = "greedy_validity"  # the score the epoch is chosen on (validation split)
    progress: str = ""
    chosen_epochs: list[int] = field(default_factory=list)
    temperature: float | None = None
    teacher_task: SequenceTask | None = None  # the teacher's tokenization of the same rows, when it differs

    @property
    def teacher_rows(self) -> SequenceTask:
        """The task in the teacher's tokenizer (the student's own unless a cross-tokenizer experiment)."""
        return self.teacher_task or self.task

    def softening(self, default: float) -> float:
        return default if self.temperature is None else self.temperature

    @cached_property
    def teacher_train_logits(self) -> Tensor:
        """The frozen teacher's logits (N, L-1, V) on every training row, row i = sample i (in the
        teacher's tokenizer: row i is the same text as the student's row i)."""
        return predict_logits(self.teacher, self.teacher_rows.train.inputs)

    def new_student(self, spec: TransformerSpec | None = None, *, seed: int | None = None) -> Transformer:
        return new_model(spec or self.student_spec, self.task, self.seed if seed is None else seed)

    def fit(self, modules: nn.Module | list[nn.Module], n_samples: int, batch_loss: Callable[[Tensor], Tensor], *,
            desc: str, deployed: nn.Module | None = None, config: TrainConfig | None = None) -> list[float]:
        """`train` with the epoch chosen on the validation split by the experiment's metric."""
        modules = modules if isinstance(modules, list) else [modules]
        score = metrics.METRICS[self.metric]
        validation = MetricValidation(deployed or modules[0], lambda m: score(m, self.task.val))
        label = f"{self.progress} {desc}" if self.progress else desc
        history = train(modules, n_samples, batch_loss, config or self.config, label, validation=validation)
        self.chosen_epochs.append(validation.best_epoch)
        return history


def scratch_sequence_student(ctx: SequenceContext) -> nn.Module:
    """The baseline: the same student, cross-entropy on the data's targets, same budget."""
    student = ctx.new_student()
    ctx.fit(student, len(ctx.task.train), next_token_loss(student, ctx.task.train), desc="student (data)")
    return student


@dataclass
class Prepared:
    task: SequenceTask
    teacher: nn.Module
    teacher_evaluation: Evaluation
    teacher_outputs: list[str]  # the teacher's greedy outputs on the test prompts ([] if not `decodes`)
    teacher_task: SequenceTask | None = None  # set when the teacher has its own tokenizer


@dataclass(frozen=True)
class SequenceExperiment(Experiment):
    """An Experiment on a sequence task; `accuracy` in its results is `metric` on the test split."""
    metric: str = "greedy_validity"
    teacher_objective: str = "response"  # "text": the teacher also models the prompts (it writes instructions)
    # The same rows in the teacher's tokenizer, for cross-tokenizer distillation (None: the student's
    # `dataset`). The teacher's own score is then on its tokens, so it is not comparable with the students'.
    teacher_dataset: str | None = None
    # Score on the first `test_rows` test prompts only (None: all of them): a quick check's setting
    # (the end-to-end tests), never a benchmark's. The teacher still trains on the full task.
    test_rows: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.test_rows is not None and self.test_rows < 1:
            raise ValueError(f"{self.key}: test_rows must be None or at least 1, got {self.test_rows!r}")
        if self.metric not in metrics.METRICS:
            raise ValueError(f"{self.key}: metric must be one of {', '.join(metrics.METRICS)}, got {self.metric!r}")
        for role, name in (("dataset", self.dataset), ("teacher_dataset", self.teacher_dataset or self.dataset)):
            if name not in TASKS:
                raise ValueError(f"{self.key}: {role} must be one of {', '.join(TASKS)}, got {name!r}")
        if self.dataset != "dialects" and self.metric not in metrics.TEXT_METRICS:
            raise ValueError(f"{self.key}: {self.dataset} has no known true distribution; its metric must be one "
                             f"of {', '.join(metrics.TEXT_METRICS)}, got {self.metric!r}")

    @property
    def metric_label(self) -> str:
        return self.metric.replace("_", " ")

    @property
    def teacher_comparable(self) -> bool:
        """False across tokenizers: the teacher's score counts its own tokens."""
        return self.teacher_dataset in (None, self.dataset)

    @property
    def decodes(self) -> bool:
        """Whether evaluation decodes the test prompts greedily: on the dialects (validity, and the
        agreement with the teacher's outputs). On natural text a continuation of 36 characters
        almost never equals the teacher's, so agreement would say nothing, at the cost of about
        three training epochs of forward passes; it is not measured there."""
        return self.dataset == "dialects"

    @property
    def columns(self) -> str:
        agreement = ("agree w/ teacher is the share of test prompts where the student's greedy output equals the "
                     "teacher's" if self.decodes else "agree w/ teacher is not measured on natural text")
        return (f"columns: test {self.metric_label} is mean ± sd over seeds on the {len(load_task(self.dataset).test):,} "
                f"test prompts ({metrics.DESCRIPTIONS[self.metric]}); {agreement}; ECE is the expected calibration "
                "error of the next-token distribution on the test targets (15 bins); epoch is the one chosen on the "
                f"validation split by {self.metric_label}.")

    def _evaluation(self, model: nn.Module, task: SequenceTask,
                    teacher_outputs: list[str] | None) -> tuple[Evaluation, list[str]]:
        """The model's evaluation on the test split, and its greedy outputs (decoded once: the
        score when it is greedy validity, and the agreement; none when `decodes` is False)."""
        greedy = metrics.outputs(model, task.test) if self.decodes else []
        score = (metrics.validity(task.test, greedy) if self.metric == "greedy_validity"
                 else metrics.METRICS[self.metric](model, task.test))
        agree = None if teacher_outputs is None or not self.decodes else metrics.agreement(greedy, teacher_outputs)
        evaluation = Evaluation(accuracy=score, per_class_accuracy=[], teacher_agreement=agree,
                                ece=metrics.token_ece(model, task.test), n_params=n_params(model), latency_us=None)
        return evaluation, greedy

    def setup(self) -> Prepared:
        task = load_task(self.dataset)
        teacher_task = None if self.teacher_dataset in (None, self.dataset) else load_task(self.teacher_dataset)
        rows = teacher_task or task
        teacher = get_sequence_teacher(rows, self.teacher, self.teacher_config, objective=self.teacher_objective)
        if self.test_rows is not None:  # after the teacher, whose cache key covers the whole task
            task = _first_test_rows(task, self.test_rows)
            teacher_task = teacher_task and _first_test_rows(teacher_task, self.test_rows)
            rows = teacher_task or task
        evaluation, outputs = self._evaluation(teacher, rows, None)
        return Prepared(task, teacher, evaluation, outputs, teacher_task)

    def context(self, prepared: Prepared, seed: int, config: TrainConfig,
                temperature: float | None = None) -> SequenceContext:
        return SequenceContext(prepared.task, prepared.teacher, self.student, config, seed, metric=self.metric,
                               temperature=temperature, teacher_task=prepared.teacher_task)

    def evaluate(self, student: nn.Module, prepared: Prepared) -> Evaluation:
        return self._evaluation(student, prepared.task, prepared.teacher_outputs)[0]

    def validation_score(self, student: nn.Module, prepared: Prepared) -> float:
        return metrics.METRICS[self.metric](student, prepared.task.val)


def _first_test_rows(task: SequenceTask, n: int) -> SequenceTask:
    test = task.test
    first = replace(test, sources=test.sources[:n], targets=test.targets[:n], tokens=test.tokens[:n])
    return replace(task, test=first)


# The setting every decoder experiment of the family shares: the dialects task, a 2-layer
# teacher (104k parameters) and a 1-layer student (15k), their budgets, the baseline arm.
DECODER_TEACHER = TransformerSpec(n_layer=2, n_head=4, d_model=64)
DECODER_STUDENT = TransformerSpec(n_layer=1, n_head=2, d_model=32)
DIALECTS = dict(dataset="dialects", teacher=DECODER_TEACHER, student=DECODER_STUDENT,
                teacher_config=TrainConfig(epochs=30), student_config=TrainConfig(epochs=40))
DATA_BASELINE = Arm("baseline", "student trained on the data's targets (cross-entropy)", scratch_sequence_student)
