"""Natural text (the standard library's docstrings), its two tokenizers, the next-token metric,
cross-tokenizer experiments, and the universal logit distillation loss (ULD)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness.lm import metrics, text
from reference_impl.harness.lm.bench import DIALECTS, SequenceExperiment, load_task
from reference_impl.harness.lm.data import EOS, PAD, SPECIALS, load_sequences
from reference_impl.techniques import universal_logit_kd as uld
from reference_impl.techniques.token_level_kd import token_kl

SOURCE = '''"""Module summary line.

Second   paragraph of the
module docstring, long enough to keep."""


class Widget:
    """A widget that does things for the caller."""

    def run(self):
        """Short."""


async def fetch():
    """Fetch the thing asynchronously from far away.

    Caf\u00e9 paragraphs with non-ASCII text are dropped entirely."""
'''


def test_docstring_paragraphs_collects_every_kind_of_docstring(tmp_path):
    good, broken = tmp_path / "good.py", tmp_path / "broken.py"
    good.write_text(SOURCE)
    broken.write_text("def (:\n")  # a file this Python cannot parse is skipped, not fatal
    paragraphs = text.docstring_paragraphs([good, broken])
    assert paragraphs == sorted([
        "Module summary line.",  # 20 characters: the minimum kept
        "Second paragraph of the module docstring, long enough to keep.",  # whitespace collapsed
        "A widget that does things for the caller.",
        "Fetch the thing asynchronously from far away.",
    ])


def test_windows_split_by_paragraph_with_prompt_and_target_lengths():
    paragraphs = [" ".join(f"<{i}.{k}>" for k in range(i % 20 + 3)) for i in range(3000)]  # every window unique
    parts = text.split_windows(paragraphs)
    assert parts == text.split_windows(list(reversed(paragraphs)))  # order-independent (hash order)
    where = {}
    for part, rows in parts.items():
        assert len(rows) <= text.SIZES[part]
        for prompt, target in rows:
            assert len(prompt) == text.PROMPT_CHARS
            assert text.MIN_WINDOW - text.PROMPT_CHARS <= len(target) <= text.WINDOW_CHARS - text.PROMPT_CHARS
            owner = (prompt + target).split("<")[1].split(".")[0] if "<" in prompt + target else prompt
            assert where.setdefault(owner, part) == part  # one paragraph, one split
    with pytest.raises(ValueError, match="only 0 train windows"):
        text.split_windows([])


def test_docstrings_task_in_two_tokenizers_row_for_row():
    char, bpe = text.load_docstrings("char"), text.load_docstrings("bpe")
    assert char.vocab.size == len(SPECIALS) + 95 and bpe.vocab.size == text.BPE_VOCAB_SIZE
    assert char.name.startswith("docstrings-char-") and bpe.name.startswith("docstrings-bpe-")
    assert char.name.rsplit("-", 1)[1] == bpe.name.rsplit("-", 1)[1]  # the same corpus digest
    for a, b in ((char.train, bpe.train), (char.val, bpe.val), (char.test, bpe.test)):
        assert a.sources == b.sources and a.targets == b.targets and len(a) > 100
    assert len(char.train) == text.SIZES["train"] and len(char.val) == text.SIZES["val"]
    # the BPE vocabulary: specials at 0-3, an exact round trip, fewer tokens than characters
    tokenizer = bpe.vocab._tokenizer
    assert [tokenizer.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3]
    assert all(bpe.vocab.decode(bpe.vocab.encode(t) + [EOS, 7]) == t for t in bpe.test.targets)
    assert bpe.train.loss_mask.sum() < 0.75 * char.train.loss_mask.sum()
    # the mask: every target token and the EOS, in both
    for task, vocab in ((char, char.vocab), (bpe, bpe.vocab)):
        expected = torch.tensor([len(vocab.encode(t)) + 1 for t in task.test.targets], dtype=torch.float)
        assert torch.equal(task.test.loss_mask.sum(1), expected)
    with pytest.raises(ValueError, match="tokenizer must be one of char, bpe, got 'words'"):
        text.load_docstrings("words")


def test_cached_paragraphs_round_trip(tmp_path, monkeypatch):
    source = tmp_path / "mod.py"
    source.write_text(SOURCE)
    monkeypatch.setattr(text, "stdlib_files", lambda: [source])
    monkeypatch.setenv("KD_DATASET_CACHE_DIR", str(tmp_path / "cache"))
    first = text.cached_paragraphs()
    assert first == text.docstring_paragraphs([source]) and len(list((tmp_path / "cache").iterdir())) == 1
    monkeypatch.setattr(text, "docstring_paragraphs", lambda files=None: pytest.fail("parsed again"))
    assert text.cached_paragraphs() == first


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: len(x)]


def test_next_token_accuracy_counts_masked_positions_only():
    split = load_sequences("dialects").val
    logits = torch.randn(*split.labels.shape, split.vocab.size, generator=torch.Generator().manual_seed(0))
    mask = split.loss_mask.bool()
    # independent: a loop over rows and positions
    right = total = 0
    for i in range(split.labels.shape[0]):
        for t in range(split.labels.shape[1]):
            if mask[i, t]:
                total += 1
                right += int(int(logits[i, t].argmax()) == int(split.labels[i, t]))
    assert metrics.next_token_accuracy(FixedLogits(logits), split) == pytest.approx(right / total, abs=1e-7)
    perfect = F.one_hot(split.labels, split.vocab.size).float() * 10
    perfect[~mask] = 0  # the prompt and padding positions are all wrong (ties): they must not count
    assert metrics.next_token_accuracy(FixedLogits(perfect), split) == 1.0


def test_max_new_tokens_follows_the_targets():
    assert metrics.max_new_tokens(load_sequences("dialects").test) == metrics.MAX_NEW_TOKENS
    char = text.load_docstrings("char").test
    assert metrics.max_new_tokens(char) == max(len(t) for t in char.targets) + 2


def test_sequence_experiments_check_their_tasks_and_metrics():
    base = uld.EXPERIMENTS[0]
    with pytest.raises(ValueError, match="dataset must be one of dialects, docstrings-char, docstrings-bpe"):
        replace(base, dataset="wikitext")
    with pytest.raises(ValueError, match="teacher_dataset must be one of"):
        replace(base, teacher_dataset="wikitext")
    with pytest.raises(ValueError, match="no known true distribution; its metric must be one of next_token_accuracy"):
        replace(base, metric="greedy_validity")
    with pytest.raises(ValueError, match="unknown sequence task 'x'"):
        load_task("x")
    # the dialects keep every metric
    SequenceExperiment(key="k", title="t", claim=base.claim, **DIALECTS, arms=base.arms, metric="next_token_accuracy")


# ---- ULD ----

def _uld_by_loops(student, teacher, s_mask, t_mask):
    """Σ over aligned pairs of Σ_i |sorted q − sorted p|, / number of pairs, with Python loops."""
    total, pairs = 0.0, 0
    for b in range(student.shape[0]):
        s_pos = [t for t in range(student.shape[1]) if s_mask[b, t] == 1]
        t_pos = [t for t in range(teacher.shape[1]) if t_mask[b, t] == 1]
        for i, j in zip(s_pos, t_pos):
            q = sorted(torch.softmax(student[b, i].double(), 0).tolist(), reverse=True)
            p = sorted(torch.softmax(teacher[b, j].double(), 0).tolist(), reverse=True)
            width = max(len(q), len(p))
            q, p = q + [0.0] * (width - len(q)), p + [0.0] * (width - len(p))
            total += sum(abs(a - c) for a, c in zip(q, p))
            pairs += 1
    return total / pairs


def test_uld_matches_an_independent_computation_across_vocabularies():
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(3, 6, 7, generator=g) * 2, torch.randn(3, 9, 5, generator=g) * 2
    s_mask = torch.tensor([[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0]], dtype=torch.float)
    t_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]],
                          dtype=torch.float)
    # aligned pairs: row 0 min(3, 5) = 3, row 1 min(6, 2) = 2, row 2 min(2, 9) = 2
    got = uld.uld_distance(student, teacher, s_mask, t_mask)
    assert float(got) == pytest.approx(_uld_by_loops(student, teacher, s_mask, t_mask), rel=1e-5)
    # positions outside the masks (and past the shorter count) do not matter
    noisy_s, noisy_t = student.clone(), teacher.clone()
    noisy_s[0, 0] += 5
    noisy_s[1, 5] += 5  # row 1: the 6th student position has no teacher partner
    noisy_t[2, 8] -= 5  # row 2: the 9th teacher position has no student partner
    assert torch.allclose(uld.uld_distance(noisy_s, noisy_t, s_mask, t_mask), got)


def test_uld_is_zero_for_the_same_shape_of_distribution_and_bounded_by_two():
    logits = torch.tensor([[[3.0, 1.0, 0.0, -1.0]]])
    mask = torch.ones(1, 1)
    permuted = logits[..., [2, 0, 3, 1]]  # other tokens, same probabilities
    assert float(uld.uld_distance(permuted, logits, mask, mask)) == pytest.approx(0.0, abs=1e-7)
    wider = torch.cat([permuted, torch.full((1, 1, 3), -1e4)], -1)  # three more tokens of probability 0
    assert float(uld.uld_distance(wider, logits, mask, mask)) == pytest.approx(0.0, abs=1e-7)
    sure, flat = torch.tensor([[[1e4, 0.0, 0.0, 0.0]]]), torch.zeros(1, 1, 200)
    assert float(uld.uld_distance(sure, flat, mask, mask)) == pytest.approx(2 - 2 / 200, abs=1e-5)


def test_uld_gradient_reaches_the_student_only_and_accumulates_exactly():
    g = torch.Generator().manual_seed(2)
    student = torch.randn(4, 5, 6, generator=g, requires_grad=True)
    teacher = torch.randn(4, 7, 9, generator=g, requires_grad=True)
    s_mask = (torch.rand(4, 5, generator=g) > 0.3).float()
    t_mask = (torch.rand(4, 7, generator=g) > 0.3).float()
    whole = uld.uld_distance(student, teacher, s_mask, t_mask)
    whole.backward()
    assert teacher.grad is None and student.grad is not None and float(student.grad.abs().sum()) > 0
    pairs = float(torch.minimum(s_mask.sum(1), t_mask.sum(1)).sum())
    parts = sum(uld.uld_distance(student[i:j], teacher[i:j], s_mask[i:j], t_mask[i:j], normalizer=pairs)
                for i, j in ((0, 1), (1, 4)))
    assert torch.allclose(parts, whole)


def test_uld_loss_is_cross_entropy_plus_weighted_distance():
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(2, 4, 6, generator=g), torch.randn(2, 5, 3, generator=g)
    labels = torch.randint(0, 6, (2, 4), generator=g)
    s_mask, t_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]]).float(), torch.ones(2, 5)
    ce = F.cross_entropy(student[s_mask.bool()], labels[s_mask.bool()])
    distance = uld.uld_distance(student, teacher, s_mask, t_mask)
    got = uld.uld_loss(student, labels, s_mask, teacher, t_mask, weight=0.5)
    assert float(got) == pytest.approx(float(ce + 0.5 * distance), rel=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda s, t, m, n: uld.uld_distance(s[:1], t, m[:1], n), "batches differ \\(1 vs 2 rows\\)"),
    (lambda s, t, m, n: uld.uld_distance(s, t, m[:, :2], n), "student_mask must be \\(batch, length\\) = \\(2, 3\\)"),
    (lambda s, t, m, n: uld.uld_distance(s, t, m, n * 2), "teacher_mask must hold only 0 and 1"),
    (lambda s, t, m, n: uld.uld_distance(s[0], t, m, n), "student_logits must be a 3-D tensor"),
    (lambda s, t, m, n: uld.uld_distance(s, t * math.nan, m, n), "teacher_logits"),
    (lambda s, t, m, n: uld.uld_loss(s, torch.zeros(2, 3, dtype=torch.long), m, t, n, weight=0.0), "weight"),
    (lambda s, t, m, n: uld.uld_loss(s, torch.zeros(2, 2, dtype=torch.long), m, t, n), "labels must be"),
])
def test_uld_bad_input_names_the_argument(call, message):
    s, t = torch.randn(2, 3, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match=message):
        call(s, t, torch.ones(2, 3), torch.ones(2, 5))


def test_token_level_kd_refuses_two_tokenizers():
    char, bpe = text.load_docstrings("char"), text.load_docstrings("bpe")
    student, teacher = torch.zeros(1, 3, bpe.vocab.size), torch.zeros(1, 3, char.vocab.size)
    with pytest.raises(ValueError, match="vocabularies differ .* use a cross-tokenizer method"):
        token_kl(student, teacher, torch.ones(1, 3))


def test_uld_experiment_teacher_and_student_see_the_same_rows_in_their_tokenizers():
    experiment = uld.EXPERIMENTS[0]
    char, bpe = load_task(experiment.teacher_dataset), load_task(experiment.dataset)
    assert char.vocab.size != bpe.vocab.size and char.train.targets == bpe.train.targets
    assert PAD == 0  # padding id shared; the masks, not the ids, decide what counts


def test_natural_text_is_scored_without_decoding():
    from reference_impl.techniques import token_level_kd
    text_experiment, dialects_experiment = uld.EXPERIMENTS[0], token_level_kd.EXPERIMENTS[0]
    assert not text_experiment.decodes and dialects_experiment.decodes
    assert "agree w/ teacher is not measured on natural text" in text_experiment.columns
    assert "greedy output equals the teacher's" in dialects_experiment.columns


def test_uld_takes_two_hugging_face_models_with_different_vocabularies():
    transformers = pytest.importorskip("transformers")
    char, bpe = text.load_docstrings("char"), text.load_docstrings("bpe")
    torch.manual_seed(0)
    models = {}
    for name, task in (("teacher", char), ("student", bpe)):
        config = transformers.GPT2Config(vocab_size=task.vocab.size, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                         bos_token_id=1, eos_token_id=EOS, pad_token_id=EOS)  # pad = EOS
        models[name] = transformers.GPT2LMHeadModel(config)
    rows_t, rows_s = char.train.tokens[:3], bpe.train.tokens[:3]  # the same three windows, two tokenizations
    with torch.no_grad():
        teacher_logits = models["teacher"].eval()(rows_t, attention_mask=(rows_t != PAD).long()).logits[:, :-1]
    student_logits = models["student"](rows_s, attention_mask=(rows_s != PAD).long()).logits[:, :-1]
    loss = uld.uld_loss(student_logits, rows_s[:, 1:], bpe.train.loss_mask[:3], teacher_logits, char.train.loss_mask[:3])
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    assert all(p.grad is not None for p in models["student"].parameters() if p.requires_grad)


def test_uld_without_aligned_positions_is_zero_not_nan():
    student = torch.randn(2, 3, 4, requires_grad=True)
    loss = uld.uld_distance(student, torch.randn(2, 5, 6), torch.zeros(2, 3), torch.ones(2, 5))
    loss.backward()
    assert float(loss.detach()) == 0.0 and bool((student.grad == 0).all())


def test_a_cross_tokenizer_result_says_its_metric_and_that_the_teacher_is_another_unit(tmp_path):
    from reference_impl.harness import stats
    from reference_impl.harness.bench import ArmResult, ExperimentResult
    from reference_impl.harness.evaluate import Evaluation
    from reference_impl.harness.results import plot_results, result_triples

    def ev(score):
        return Evaluation(accuracy=score, per_class_accuracy=[], teacher_agreement=None, ece=0.01, n_params=10,
                          latency_us=None)
    experiment = uld.EXPERIMENTS[0]
    arms = [ArmResult("baseline", "b", [ev(0.30), ev(0.31), ev(0.32)], 1.0, [[5], [6], [7]]),
            ArmResult("uld", "u", [ev(0.31), ev(0.33), ev(0.32)], 1.0, [[5], [6], [7]])]
    test = stats.paired_test(arms[1].accuracies, arms[0].accuracies, sesoi=experiment.sesoi)
    result = ExperimentResult(experiment, [0, 1, 2], ev(0.45), arms, test, 0.0, 1.0)
    values = {(t.predicate.value.rsplit("#", 1)[-1], t.object.value)
              for t in result_triples("universal_logit_kd", uld.CONCEPT, result, plot="x.png", commit="c",
                                      torch_version="t")}
    assert ("metric", "next token accuracy") in values and ("teacherComparable", "false") in values
    assert any(p == "epochSelection" and "best validation next token accuracy" in o for p, o in values)
    assert not any(p == "meanTeacherAgreement" for p, _ in values)  # not measured on natural text
    plot_results([result], tmp_path / "p.png", "universal_logit_kd: a title")  # no teacher line, no error
    assert (tmp_path / "p.png").stat().st_size > 1000
