"""Sequence-level knowledge distillation (Kim & Rush 2016, arXiv:1606.07947, section 3.2).

Word-level KD matches the teacher's next-token distribution at each position; sequence-
level KD matches its distribution over whole sequences. That distribution is approximated
by its mode, found with beam search, and the student is trained by maximum likelihood on
the teacher's outputs instead of the data's targets:

    L_SEQ-KD = - Σ_{t ∈ T} q(t | s) log p(t | s)  ≈  - log p(ŷ | s),   ŷ = beam search of q(· | s)   (Eqs. 5-6)

(q the teacher, p the student, s the source). Training on one consistent output per source
removes the teacher's (and the data's) multimodality the student would otherwise have to
model, so the student can then decode greedily: Kim & Rush report that greedy decoding of
a sequence-level student comes close to beam search of the teacher, and beats greedy
decoding of a word-level student.

Here the teacher decodes the training prompts once with a beam of 5 (its outputs are
computed per run and indexed by row, so they stay aligned with the shuffled samples); the
loss is the ordinary next-token cross-entropy on the generated tokens and EOS, with the
prompt and padding masked out.

Claim tested (EXPERIMENTS): a sequence-level student decoding greedily beats a word-level
student decoding greedily.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

import torch
from torch import Tensor, nn

from reference_impl.harness import Arm, Claim, run_cli
from reference_impl.harness.lm.bench import DATA_BASELINE, DIALECTS, SequenceContext, SequenceExperiment
from reference_impl.harness.lm.generate import beam_search, join
from reference_impl.harness.lm.metrics import EVAL_BATCH, MAX_NEW_TOKENS
from reference_impl.harness.lm.tokens import per_token_cross_entropy, shift_for_next_token, token_mean
from reference_impl.techniques.token_level_kd import WORD_KD

CONCEPT = "SequenceLevelDistillation"
FAMILY = "language model"

_BEAM_CACHE: WeakKeyDictionary = WeakKeyDictionary()  # teacher -> {(task, beam): rows}


def teacher_beam_rows(ctx: SequenceContext, *, beam_size: int = 5) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The training prompts completed by the teacher's beam search, shifted for next-token
    training: inputs, attention mask, labels and loss mask, each (N, P + T - 1), row i =
    training prompt i. Computed once per teacher and run (every seed and arm shares it)."""
    cache = _BEAM_CACHE.setdefault(ctx.teacher, {})
    key = (ctx.task.name, beam_size)
    if key not in cache:
        prompts, mask = ctx.task.train.prompts()
        continuations = [beam_search(ctx.teacher, prompts[i:i + EVAL_BATCH], mask[i:i + EVAL_BATCH],
                                     max_new_tokens=MAX_NEW_TOKENS, beam_size=beam_size)
                         for i in range(0, len(prompts), EVAL_BATCH)]
        width = max(c.shape[1] for c in continuations)
        padded = [nn.functional.pad(c, (0, width - c.shape[1])) for c in continuations]  # PAD = 0
        rows, attention, generated = join(prompts, mask, torch.cat(padded))
        cache[key] = shift_for_next_token(rows, attention, generated)
    return cache[key]


def sequence_kd_student(ctx: SequenceContext, *, beam_size: int = 5) -> nn.Module:
    """A student trained by cross-entropy on the teacher's beam-search outputs (Eq. 6)."""
    student = ctx.new_student()
    inputs, attention, labels, mask = teacher_beam_rows(ctx, beam_size=beam_size)

    def batch_loss(idx: Tensor) -> Tensor:
        # -log p(ŷ | s): the generated tokens and EOS only (mask), never the prompt or padding
        return token_mean(per_token_cross_entropy(student(inputs[idx], attention[idx]), labels[idx]), mask[idx])
    ctx.fit(student, len(inputs), batch_loss, desc="student (teacher's beam outputs)")
    return student


EXPERIMENTS = [
    SequenceExperiment(
        key="seq-kd-vs-word-kd",
        title="Sequence-level KD vs word-level KD, both students decoding greedily (dialects)",
        claim=Claim("A student trained with sequence-level knowledge distillation and decoded greedily "
                    "outperforms a student trained with word-level knowledge distillation and decoded greedily.",
                    "arXiv:1606.07947, section 5, Table 1 (Seq-KD vs Word-KD, greedy decoding, beam = 1)",
                    treatment="seq_kd", reference="word_kd"),
        **DIALECTS, temperature=1.0,
        metric="greedy_validity",
        # CPU budget: about 1.3 CPU-minutes a seed; 20 seeds is about what scripts/decisive_cost.py asked for an
        # 80% chance of a decisive verdict at the first run's sd's upper limit (19)
        max_seeds=20,
        first_seed=100,
        rerun_reason="The first run (seeds 0-7, 2026-11) measured +14.9 points (interval +6.5 to +23.3, sd 10.1) "
                     "but was inconclusive after Holm's adjustment over the family (p 0.10) at its cap of 8 seeds. "
                     "This run supersedes it with fresh seeds and a cap of 20, planned from the larger of its "
                     "pilot's sd and that run's.",
        prior_sd=0.1005, prior_seeds=8,
        arms=(DATA_BASELINE,
              WORD_KD,
              Arm("seq_kd", "cross-entropy on the teacher's beam-search outputs (beam 5)", sequence_kd_student)),
        notes="Score: the share of the 5,000 test prompts whose greedy output is a valid translation (one of "
              "the three dialects'). The data's targets mix three dialects (probabilities 0.5, 0.3, 0.2) that "
              "agree on some letters; the teacher's beam output is almost always the most likely dialect.",
    ),
]


if __name__ == "__main__":
    run_cli(__import__(__name__))
