"""The language-model family: data with a known distribution, the transformer's padding,
decoding, and the token-level losses' traps (masking, normalisation, direction, T², frozen
teacher), each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from reference_impl.harness.lm import data, generate, metrics
from reference_impl.harness.lm.models import Transformer, TransformerSpec
from reference_impl.harness.lm.tokens import check_token_logits, shift_for_next_token, token_mean
from reference_impl.techniques import sequence_level_kd, token_level_kd
from reference_impl.techniques.token_level_kd import token_kl

SPEC = TransformerSpec(n_layer=1, n_head=2, d_model=16)


def model(seed=0, causal=True):
    torch.manual_seed(seed)
    return Transformer(TransformerSpec(causal=causal, n_layer=1, n_head=2, d_model=16), data.DIALECTS_VOCAB.size, 24)


# ------------------------------------------------------------------ data
def test_the_true_distribution_sums_to_one_and_dialects_disagree_somewhere():
    for source in ("a", "abcdefgh", "hhh", "cafe"):
        assert math.isclose(sum(data.translations(source).values()), 1.0)
    outputs = [data.translations(c) for c in data.SOURCE_LETTERS]
    assert any(len(o) == 3 for o in outputs) and any(len(o) < 3 for o in outputs)  # some letters agree, some not
    assert len(data.translations("abcdefgh")) == 3  # over a full sentence the three dialects differ
    assert data.true_log_prob("cafe", "zzzz") == float("-inf")
    best = max(data.translations("abcd").items(), key=lambda kv: kv[1])
    assert data.true_log_prob("abcd", best[0]) == pytest.approx(math.log(best[1]))


def test_target_mask_covers_target_and_eos_never_prompt_or_padding():
    tokens = torch.tensor([[1, 4, 5, 2, 12, 13, 3, 0, 0], [1, 4, 2, 12, 3, 0, 0, 0, 0]])
    assert data.target_mask(tokens).tolist() == [[0, 0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0, 0, 0, 0]]


def test_target_mask_keeps_eos_when_pad_is_the_eos_token():
    # many tokenizers pad with EOS: the first EOS after the response counts, the padding after it does not
    tokens = torch.tensor([[1, 4, 2, 12, 13, 3, 3, 3]])
    assert data.target_mask(tokens).tolist() == [[0, 0, 0, 1, 1, 1, 0, 0]]


def test_split_rows_are_shifted_and_masked_and_the_test_set_is_large():
    task = data.load_sequences("dialects")
    assert len(task.test) == 5000 and len(task.train) == 4000
    split = task.train
    assert torch.equal(split.inputs[:, 1:], split.labels[:, :-1])
    row = 0
    text = split.sources[row] + split.targets[row]
    labels = split.labels[row][split.loss_mask[row].bool()].tolist()
    assert labels[-1] == data.EOS and data.DIALECTS_VOCAB.decode(labels) == split.targets[row]
    assert split.targets[row] in data.translations(split.sources[row]) and text
    with pytest.raises(ValueError, match="unknown sequence task"):
        data.load_sequences("nope")


def test_targets_follow_the_dialect_probabilities():
    task = data.load_sequences("dialects")
    tables = data.TABLES
    counts = np.zeros(3)
    for s, t in zip(task.train.sources, task.train.targets):
        matches = [d for d in range(3) if "".join(tables[d][c] for c in s) == t]
        if len(matches) == 1:
            counts[matches[0]] += 1
    share = counts / counts.sum()
    assert np.allclose(share, data.DIALECT_PROBS, atol=0.03)


# ------------------------------------------------------------------ model
def test_left_padding_changes_nothing():
    m = model().eval()
    prompt = torch.tensor([[1, 4, 5, 6, 2]])
    padded = torch.tensor([[0, 0, 1, 4, 5, 6, 2]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        assert torch.allclose(m(prompt)[0, -1], m(padded, mask)[0, -1], atol=1e-5)


def test_decoder_is_causal_and_encoder_is_not():
    a, b = torch.tensor([[1, 4, 5, 6, 2]]), torch.tensor([[1, 4, 5, 7, 2]])
    dec, enc = model().eval(), model(causal=False).eval()
    with torch.no_grad():
        assert torch.equal(dec(a)[0, :3], dec(b)[0, :3]) and not torch.allclose(dec(a)[0, 3], dec(b)[0, 3])
        assert not torch.allclose(enc(a)[0, 0], enc(b)[0, 0])
    out = enc(a, output_states=True)
    assert len(out.hidden_states) == 2 and out.attention_probs[0].shape == (1, 2, 5, 5)
    assert torch.allclose(out.attention_probs[0].sum(-1), torch.ones(1, 2, 5))


def test_too_long_input_is_a_clear_error():
    with pytest.raises(ValueError, match="max_len"):
        model()(torch.zeros(1, 30, dtype=torch.long))


# ------------------------------------------------------------------ decoding
def test_greedy_matches_a_step_by_step_argmax_and_pads_after_eos():
    m = model(3)
    prompts, mask = data.encode_prompts(data.DIALECTS_VOCAB, ["abc", "a"])
    out = generate.generate(m, prompts, mask, max_new_tokens=6)
    for i in range(2):
        row = prompts[i][mask[i].bool()][None]
        expected = []
        with torch.no_grad():
            for _ in range(out.shape[1]):
                nxt = int(m(row)[0, -1].argmax())
                expected.append(nxt)
                row = torch.cat([row, torch.tensor([[nxt]])], 1)
                if nxt == data.EOS:
                    break
        assert out[i, :len(expected)].tolist() == expected
        assert (out[i, len(expected):] == data.PAD).all()


def test_beam_of_one_is_greedy_and_a_wider_beam_never_scores_lower():
    m = model(4)
    prompts, mask = data.encode_prompts(data.DIALECTS_VOCAB, ["abc", "hgfe", "d"])

    def score(cont):
        rows, attention, gen = generate.join(prompts, mask, cont)
        inputs, att, labels, lmask = shift_for_next_token(rows, attention, gen)
        with torch.no_grad():
            logp = torch.log_softmax(m(inputs, att), -1).gather(-1, labels[..., None])[..., 0]
        return (logp * lmask).sum(1)
    greedy = generate.generate(m, prompts, mask, max_new_tokens=5)
    assert torch.equal(generate.beam_search(m, prompts, mask, max_new_tokens=5, beam_size=1), greedy)
    wide = generate.beam_search(m, prompts, mask, max_new_tokens=5, beam_size=4)
    assert (score(wide) >= score(greedy) - 1e-5).all()


def test_sampling_is_reproducible_and_temperature_is_checked():
    m = model(5)
    prompts, mask = data.encode_prompts(data.DIALECTS_VOCAB, ["abc"] * 4)
    a = generate.generate(m, prompts, mask, max_new_tokens=5, temperature=1.0, generator=torch.Generator().manual_seed(1))
    b = generate.generate(m, prompts, mask, max_new_tokens=5, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="temperature"):
        generate.generate(m, prompts, mask, max_new_tokens=5, temperature=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate.generate(m, prompts, mask, max_new_tokens=0)


def test_validity_and_coverage_score_against_the_truth():
    split = data.load_sequences("dialects").test
    n = 50
    sub = data.SequenceSplit("t", split.vocab, split.sources[:n], split.targets[:n], split.tokens[:n])
    best = [max(data.translations(s).items(), key=lambda kv: kv[1])[0] for s in sub.sources]
    assert metrics.validity(sub, best) == 1.0
    assert metrics.validity(sub, ["x"] * n) == 0.0
    assert metrics.agreement(best, best) == 1.0


# ------------------------------------------------------------------ token-level losses
def _logits(seed, shape=(2, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 2


def _kl_numpy(p_logits, q_logits, mask, T):
    """sum over masked tokens of KL(softmax(p/T) || softmax(q/T)), divided by the mask count, times T²."""
    p = np.exp(p_logits / T) / np.exp(p_logits / T).sum(-1, keepdims=True)
    q = np.exp(q_logits / T) / np.exp(q_logits / T).sum(-1, keepdims=True)
    kl = (p * (np.log(p) - np.log(q))).sum(-1)
    return T * T * (kl * mask).sum() / mask.sum()


@pytest.mark.parametrize("T", [1.0, 2.5])
def test_forward_and_reverse_kl_match_an_independent_computation(T):
    s, t = _logits(0), _logits(1)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.float)
    m = mask.numpy()
    fwd = token_kl(s, t, mask, direction="forward", temperature=T)
    rev = token_kl(s, t, mask, direction="reverse", temperature=T)
    assert float(fwd) == pytest.approx(_kl_numpy(t.double().numpy(), s.double().numpy(), m, T), rel=1e-5)
    assert float(rev) == pytest.approx(_kl_numpy(s.double().numpy(), t.double().numpy(), m, T), rel=1e-5)
    assert abs(float(fwd) - float(rev)) > 1e-3  # the directions differ here


def test_kl_is_zero_at_identity_and_non_negative():
    t = _logits(2)
    mask = torch.ones(2, 4)
    for direction in ("forward", "reverse"):
        assert float(token_kl(t.clone(), t, mask, direction=direction)) == pytest.approx(0.0, abs=1e-6)
        assert float(token_kl(_logits(3), t, mask, direction=direction)) > 0


def test_masked_positions_contribute_nothing():
    s, t = _logits(4), _logits(5)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float)
    s2 = s.clone()
    s2[mask == 0] = 100 * torch.randn_like(s2[mask == 0])  # prompt / padding logits anything at all
    assert float(token_kl(s, t, mask)) == pytest.approx(float(token_kl(s2, t, mask)), rel=1e-6)
    s2.requires_grad_(True)
    token_kl(s2, t, mask).backward()
    assert (s2.grad[mask == 0] == 0).all()


def test_accumulated_micro_batches_of_different_lengths_give_the_whole_batch_loss():
    s, t = _logits(6, (4, 6, 5)), _logits(7, (4, 6, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]],
                        dtype=torch.float)
    whole = token_kl(s, t, mask)
    total = float(mask.sum())
    parts = token_kl(s[:1], t[:1], mask[:1], normalizer=total) + token_kl(s[1:], t[1:], mask[1:], normalizer=total)
    assert float(parts) == pytest.approx(float(whole), rel=1e-6)
    naive = (token_kl(s[:1], t[:1], mask[:1]) + token_kl(s[1:], t[1:], mask[1:])) / 2
    assert abs(float(naive) - float(whole)) > 1e-3  # the per-micro-batch mean is not the batch's loss


def test_t_squared_factor_and_teacher_gets_no_gradient():
    s, t = _logits(8).requires_grad_(True), _logits(9).requires_grad_(True)
    mask = torch.ones(2, 4)
    loss = token_kl(s, t, mask, temperature=3.0)
    log_p, log_q = F.log_softmax(t / 3, -1), F.log_softmax(s / 3, -1)
    expected = 9 * (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    assert t.grad is None and s.grad is not None


def test_bad_input_names_what_is_wrong():
    s, t, mask = _logits(0), _logits(1), torch.ones(2, 4)
    with pytest.raises(ValueError, match="vocabularies differ"):
        token_kl(s, _logits(1, (2, 4, 6)), mask)
    with pytest.raises(ValueError, match="temperature"):
        token_kl(s, t, mask, temperature=0)
    with pytest.raises(ValueError, match="direction"):
        token_kl(s, t, mask, direction="both")
    with pytest.raises(ValueError, match="mask must be"):
        token_kl(s, t, torch.ones(2, 3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        token_kl(s, t, torch.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="3-D"):
        token_kl(s[0], t[0], mask[0])
    with pytest.raises(ValueError, match="NaN"):
        token_kl(s, t.masked_fill(t > 0, float("nan")), mask)
    with pytest.raises(ValueError, match="normalizer"):
        token_mean(torch.ones(2, 4), mask, normalizer=0)
    check_token_logits(s, None, mask)  # a loss without a teacher (cross-entropy) checks the rest


def test_an_empty_mask_gives_zero_not_nan():
    s, t = _logits(0).requires_grad_(True), _logits(1)
    loss = token_kl(s, t, torch.zeros(2, 4))
    loss.backward()
    assert float(loss) == 0.0 and (s.grad == 0).all()


def test_losses_take_logits_and_masks_from_a_hugging_face_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=data.DIALECTS_VOCAB.size, n_positions=32, n_embd=16, n_layer=1,
                                     n_head=2, bos_token_id=data.BOS, eos_token_id=data.EOS, pad_token_id=data.EOS)
    torch.manual_seed(0)
    student, teacher = transformers.GPT2LMHeadModel(config), transformers.GPT2LMHeadModel(config).eval()
    rows = data.load_sequences("dialects").train.tokens[:4]
    attention = (rows != data.PAD).long()
    mask = data.target_mask(rows)[:, 1:]
    with torch.no_grad():
        teacher_logits = teacher(rows, attention_mask=attention).logits[:, :-1]
    student_logits = student(rows, attention_mask=attention).logits[:, :-1]
    loss = token_kl(student_logits, teacher_logits, mask)
    loss.backward()
    assert torch.isfinite(loss) and float(loss) > 0
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)


# ------------------------------------------------------------------ the modules' arms
def test_sequence_kd_trains_on_the_teachers_beam_output_row_by_row():
    task = data.load_sequences("dialects")
    teacher = model(7).eval()
    from reference_impl.harness.lm.bench import SequenceContext
    from reference_impl.harness.train import TrainConfig
    small = data.SequenceSplit("dialects-train", task.vocab, task.train.sources[:30], task.train.targets[:30],
                               task.train.tokens[:30])
    sub = data.SequenceTask("tiny", small, task.val, task.test)
    ctx = SequenceContext(sub, teacher, SPEC, TrainConfig(epochs=1), 0)
    inputs, attention, labels, mask = sequence_level_kd.teacher_beam_rows(ctx, beam_size=3)
    prompts, pmask = small.prompts()
    beams = generate.beam_search(teacher, prompts, pmask, max_new_tokens=10, beam_size=3)
    for i in (0, 7, 29):
        generated = labels[i][mask[i].bool()].tolist()
        assert generated == beams[i][:len(generated)].tolist()  # row i is prompt i's beam output, EOS included
        assert torch.equal(inputs[i, :prompts.shape[1]], prompts[i])  # and it starts with prompt i
    assert sequence_level_kd.teacher_beam_rows(ctx, beam_size=3)[0] is inputs  # computed once


def test_the_modules_are_language_model_techniques_distill_refuses_clearly():
    from reference_impl import api, registry
    assert token_level_kd.FAMILY == sequence_level_kd.FAMILY == "language model"
    assert {"token_level_kd", "sequence_level_kd"} <= set(registry.technique_names(family="language model"))
    assert "token_level_kd" not in api.techniques()
    with pytest.raises(ValueError, match="language-model technique"):
        api.procedure("token_level_kd")


# ------------------------------------------------------------------ GKD and skew KL
from reference_impl.techniques import generalized_kd, skew_kl  # noqa: E402


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):
    return (p * (np.log(p) - np.log(q))).sum(-1)


def test_generalized_jsd_matches_an_independent_computation_and_is_symmetric_at_one_half():
    s, t = _logits(10), _logits(11)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.float)
    p, q = _softmax(t.double().numpy()), _softmax(s.double().numpy())
    for beta in (0.1, 0.5, 0.9):
        m = beta * p + (1 - beta) * q
        jsd = (beta * _kl(p, m) + (1 - beta) * _kl(q, m)) / (beta * (1 - beta))
        expected = (jsd * mask.numpy()).sum() / mask.sum().item()
        assert float(generalized_kd.generalized_jsd(s, t, mask, beta=beta)) == pytest.approx(expected, rel=1e-5)
    assert float(generalized_kd.generalized_jsd(s, t, mask, beta=0.5)) == pytest.approx(
        float(generalized_kd.generalized_jsd(t, s, mask, beta=0.5)), rel=1e-5)


def test_generalized_jsd_is_continuous_at_both_ends_which_are_the_two_kls():
    s, t, mask = _logits(12), _logits(13), torch.ones(2, 4)
    forward, reverse = token_kl(s, t, mask, direction="forward"), token_kl(s, t, mask, direction="reverse")
    jsd = lambda b: float(generalized_kd.generalized_jsd(s, t, mask, beta=b))  # noqa: E731
    assert jsd(0.0) == pytest.approx(float(forward), rel=1e-6) and jsd(1.0) == pytest.approx(float(reverse), rel=1e-6)
    assert jsd(1e-4) == pytest.approx(jsd(0.0), rel=1e-3) and jsd(1 - 1e-4) == pytest.approx(jsd(1.0), rel=1e-3)
    assert abs(float(forward) - float(reverse)) > 1e-2
    assert float(generalized_kd.generalized_jsd(t.clone(), t, mask)) == pytest.approx(0.0, abs=1e-6)  # 0 at identity
    with pytest.raises(ValueError, match="beta"):
        generalized_kd.generalized_jsd(s, t, mask, beta=1.5)


def test_skew_kl_reduces_to_kl_at_alpha_zero_matches_numpy_and_is_bounded():
    s, t = _logits(14), _logits(15)
    mask = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.float)
    for direction in ("forward", "reverse"):
        assert float(skew_kl.skew_kl(s, t, mask, alpha=0.0, direction=direction)) == pytest.approx(
            float(token_kl(s, t, mask, direction=direction)), rel=1e-6)
    p, q, m = _softmax(t.double().numpy()), _softmax(s.double().numpy()), mask.numpy()
    skl = _kl(p, 0.1 * p + 0.9 * q)
    srkl = _kl(q, 0.9 * p + 0.1 * q)
    assert float(skew_kl.skew_kl(s, t, mask, alpha=0.1)) == pytest.approx((skl * m).sum() / m.sum(), rel=1e-5)
    assert float(skew_kl.skew_kl(s, t, mask, alpha=0.1, direction="reverse")) == pytest.approx(
        (srkl * m).sum() / m.sum(), rel=1e-5)
    # a student that gives the teacher's token almost nothing: KL explodes, the skew KL stays below log(1/α)
    teacher = torch.full((1, 1, 5), -30.0)
    teacher[..., 0] = 30.0
    student = -teacher
    one = torch.ones(1, 1)
    assert float(token_kl(student, teacher, one)) > 50
    assert float(skew_kl.skew_kl(student, teacher, one, alpha=0.1)) <= math.log(10) + 1e-6
    with pytest.raises(ValueError, match="alpha"):
        skew_kl.skew_kl(s, t, mask, alpha=1.0)
    with pytest.raises(ValueError, match="direction"):
        skew_kl.skew_kl(s, t, mask, direction="sideways")


def _tiny_context(n=30):
    from reference_impl.harness.lm.bench import SequenceContext
    from reference_impl.harness.train import TrainConfig
    task = data.load_sequences("dialects")
    small = data.SequenceSplit("dialects-train", task.vocab, task.train.sources[:n], task.train.targets[:n],
                               task.train.tokens[:n])
    val = data.SequenceSplit("dialects-val", task.vocab, task.val.sources[:20], task.val.targets[:20],
                             task.val.tokens[:20])
    teacher = model(8).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return SequenceContext(data.SequenceTask("tiny", small, val, task.test), teacher, SPEC,
                           TrainConfig(epochs=1, batch_size=10), 0)


@pytest.mark.parametrize("fraction, expected_calls", [(0.0, 0), (1.0, 3)])
def test_gkd_samples_from_the_student_exactly_on_on_policy_batches(monkeypatch, fraction, expected_calls):
    calls = []
    real = generalized_kd.generate

    def spy(model, prompts, mask, **kw):
        out = real(model, prompts, mask, **kw)
        calls.append((model, len(prompts), out.requires_grad))
        return out
    monkeypatch.setattr(generalized_kd, "generate", spy)
    ctx = _tiny_context()
    student = generalized_kd.gkd_student(ctx, on_policy_fraction=fraction)
    assert len(calls) == expected_calls  # 30 rows in batches of 10, one epoch
    assert all(m is student and n == 10 and not grad for m, n, grad in calls)  # the student's own, detached
    assert all(not p.requires_grad for p in ctx.teacher.parameters()) and not ctx.teacher.training
    with pytest.raises(ValueError, match="on_policy_fraction"):
        generalized_kd.gkd_student(ctx, on_policy_fraction=2)


# ------------------------------------------------------------------ MiniLLM
from reference_impl.techniques import minillm  # noqa: E402


def test_minillm_surrogate_is_the_papers_gradient_terms_on_a_worked_example():
    torch.manual_seed(0)
    s = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(1, 3, 4, dtype=torch.float64)
    labels = torch.tensor([[2, 0, 3]])
    mask = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)  # two generated tokens, then padding
    loss = minillm.minillm_loss(s, t, labels, mask, alpha=0.2)
    # independent: r_t, w_t, KL_t per position, R^Norm_1 = r_1 (one later token), R^Norm_2 = 0
    lq, lp = torch.log_softmax(s, -1)[0], torch.log_softmax(t, -1)[0]
    q_y = [lq[i, labels[0, i]] for i in range(2)]
    p_y = [lp[i, labels[0, i]] for i in range(2)]
    r1 = float(p_y[1] - q_y[1])
    w = [float(q_y[i].exp() / (0.2 * p_y[i].exp() + 0.8 * q_y[i].exp())) for i in range(2)]
    kl = [(lq[i].exp() * (lq[i] - lp[i])).sum() for i in range(2)]
    expected = (w[0] * (kl[0] - r1 * q_y[0]) + w[1] * kl[1]) / 2
    assert float(loss) == pytest.approx(float(expected), rel=1e-10)
    g_loss, = torch.autograd.grad(loss, s)
    g_expected, = torch.autograd.grad(expected, s)
    assert torch.allclose(g_loss, g_expected)  # rewards and weights are constants, as in the paper
    assert (g_loss[0, 2] == 0).all()  # a padded position gets no gradient


def test_minillm_without_mixing_and_long_term_part_is_the_token_reverse_kl():
    s, t = _logits(20, (2, 1, 5)), _logits(21, (2, 1, 5))
    labels, mask = torch.tensor([[1], [3]]), torch.ones(2, 1)
    assert float(minillm.minillm_loss(s, t, labels, mask, alpha=0.0)) == pytest.approx(
        float(token_kl(s, t, mask, direction="reverse")), rel=1e-5)
    with pytest.raises(ValueError, match="must be"):
        minillm.minillm_loss(s, t[:, :, :4], labels, mask)


def test_teacher_mixed_sampling_at_alpha_zero_is_the_students_own_sampling():
    student, teacher = model(9), model(10)
    prompts, mask = data.encode_prompts(data.DIALECTS_VOCAB, ["abc", "defg", "h"])
    mixed = minillm.sample_mixed(student, teacher, prompts, mask, alpha=0.0, generator=torch.Generator().manual_seed(3))
    own = generate.generate(student, prompts, mask, max_new_tokens=metrics.MAX_NEW_TOKENS, temperature=1.0,
                            generator=torch.Generator().manual_seed(3))
    assert torch.equal(mixed, own)
    with pytest.raises(ValueError, match="alpha"):
        minillm.sample_mixed(student, teacher, prompts, mask, alpha=1.0, generator=torch.Generator())


# ------------------------------------------------------------------ top-k logits
from reference_impl.techniques import top_k_logits  # noqa: E402


def test_top_k_cache_holds_the_top_tokens_their_log_probs_and_the_tail():
    t = _logits(30, (3, 4, 7))
    cache = top_k_logits.cache_top_k(t, 3)
    p = torch.softmax(t, -1)
    top, idx = p.topk(3, -1)
    assert torch.equal(cache.indices, idx) and torch.allclose(cache.log_probs.exp(), top)
    assert torch.allclose(cache.tail_mass, 1 - top.sum(-1), atol=1e-6)
    rows = torch.tensor([2, 0])
    assert torch.equal(cache[rows].indices, idx[rows])  # indexed by row, like every cached teacher output
    with pytest.raises(ValueError, match="k must be"):
        top_k_logits.cache_top_k(t, 8)


def test_top_k_losses_with_the_whole_vocabulary_are_word_level_kd():
    s, t = _logits(31, (2, 4, 6)), _logits(32, (2, 4, 6))
    mask = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=torch.float)
    full = float(token_kl(s, t, mask))
    cache = top_k_logits.cache_top_k(t, 6)
    for tail in ("renormalise", "bucket"):
        assert float(top_k_logits.top_k_kd_loss(s, cache, mask, tail=tail)) == pytest.approx(full, rel=1e-4)


def test_top_k_losses_and_bias_match_independent_computations():
    s, t = _logits(33, (2, 3, 6)), _logits(34, (2, 3, 6))
    mask = torch.ones(2, 3)
    k = 2
    p, q = _softmax(t.double().numpy()), _softmax(s.double().numpy())
    order = np.argsort(-p, -1)[..., :k]
    pk, qk = np.take_along_axis(p, order, -1), np.take_along_axis(q, order, -1)
    tau, q_tail = 1 - pk.sum(-1), 1 - qk.sum(-1)
    p_hat = pk / pk.sum(-1, keepdims=True)
    renorm = (p_hat * (np.log(p_hat) - np.log(qk))).sum(-1).mean()
    bucket = ((pk * (np.log(pk) - np.log(qk))).sum(-1) + tau * (np.log(tau) - np.log(q_tail))).mean()
    cache = top_k_logits.cache_top_k(t, k)
    assert float(top_k_logits.top_k_kd_loss(s, cache, mask)) == pytest.approx(renorm, rel=1e-4)
    assert float(top_k_logits.top_k_kd_loss(s, cache, mask, tail="bucket")) == pytest.approx(bucket, rel=1e-4)
    # KL(p̂ ‖ p) over the support of p̂ is -log(1 - τ)
    kl_hat = (p_hat * (np.log(p_hat) - np.log(pk))).sum(-1).mean()
    assert top_k_logits.renormalisation_bias(t, mask, k) == pytest.approx(kl_hat, rel=1e-4)
    biases = [top_k_logits.renormalisation_bias(t, mask, kk) for kk in range(1, 7)]
    assert all(a >= b for a, b in zip(biases, biases[1:])) and biases[-1] == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="tail"):
        top_k_logits.top_k_kd_loss(s, cache, mask, tail="drop")
    with pytest.raises(ValueError, match="cache covers"):
        top_k_logits.top_k_kd_loss(s[:, :2], cache, mask[:, :2])


def test_a_sequence_teacher_is_frozen_and_cached(tmp_path, monkeypatch):
    from reference_impl.harness.lm.teachers import get_sequence_teacher, next_token_loss
    from reference_impl.harness.train import TrainConfig
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path))
    task = data.load_sequences("dialects")
    teacher = get_sequence_teacher(task, SPEC, TrainConfig(epochs=1, batch_size=256))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    again = get_sequence_teacher(task, SPEC, TrainConfig(epochs=1, batch_size=256))  # from the cache
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), again.state_dict().values()))
    assert len(list(tmp_path.glob("dialects-*.pt"))) == 1
    get_sequence_teacher(task, SPEC, TrainConfig(epochs=1, batch_size=256), objective="text")
    assert len(list(tmp_path.glob("dialects-*.pt"))) == 2  # another objective is another teacher
    with pytest.raises(ValueError, match="objective"):
        next_token_loss(teacher, task.train, objective="prompt")


def test_the_text_objective_also_scores_the_prompt_but_never_padding():
    from reference_impl.harness.lm.teachers import next_token_loss
    split = data.load_sequences("dialects").train
    m = model(11)
    idx = torch.arange(8)
    logits = m(split.inputs[idx])
    per_token = F.cross_entropy(logits.flatten(0, 1), split.labels[idx].flatten(), reduction="none").view(8, -1)
    response = split.loss_mask[idx]
    text = (split.labels[idx] != data.PAD).float()
    assert (text >= response).all() and (text.sum() > response.sum())
    assert float(next_token_loss(m, split)(idx)) == pytest.approx(float((per_token * response).sum() / response.sum()), rel=1e-5)
    assert float(next_token_loss(m, split, objective="text")(idx)) == pytest.approx(
        float((per_token * text).sum() / text.sum()), rel=1e-5)


# ------------------------------------------------------------------ instruction distillation
from reference_impl.techniques import instruction_distillation as instruct  # noqa: E402


def test_the_teachers_instructions_are_filtered_and_answered_by_the_teacher():
    experiment = instruct.EXPERIMENTS[0]
    prepared = experiment.setup()
    ctx = experiment.context(prepared, 0, experiment.student_config)
    demos = instruct.teacher_demonstrations(ctx, n=300)
    held_out = set(ctx.task.val.sources) | set(ctx.task.test.sources)
    assert 250 <= len(demos) <= 300 and len(set(demos.sources)) == len(demos)  # de-duplicated
    assert all(instruct.well_formed(s) and s not in held_out for s in demos.sources)  # no evaluation prompt
    assert list(demos.targets) == metrics.outputs(ctx.teacher, demos)  # the teacher's own greedy answers
    assert instruct.teacher_demonstrations(ctx, n=300) is demos  # written once per teacher
    a, b = instruct.seed_set(ctx), instruct.seed_set(experiment.context(prepared, 1, experiment.student_config))
    assert len(a) == len(b) == instruct.SEED_TASKS and a.sources != b.sources  # drawn per seed
    assert set(a.sources) <= set(ctx.task.train.sources)


def test_an_instruction_writer_that_writes_nothing_usable_is_a_clear_error():
    experiment = instruct.EXPERIMENTS[0]
    from reference_impl.harness.lm.bench import SequenceContext
    class OnlySep(torch.nn.Module):  # a "teacher" that ends every prompt at once
        def forward(self, tokens, mask=None):
            logits = torch.zeros(*tokens.shape, data.DIALECTS_VOCAB.size)
            logits[..., data.SEP] = 10.0
            return logits
    ctx = SequenceContext(data.load_sequences("dialects"), OnlySep().eval(), SPEC, experiment.student_config, 0)
    with pytest.raises(ValueError, match="no well-formed instruction"):
        instruct.teacher_demonstrations(ctx, n=50)
    assert instruct.well_formed("abc") and not instruct.well_formed("ab") and not instruct.well_formed("abz")


def test_a_small_set_gets_as_many_steps_per_epoch_by_cycling():
    ctx = _tiny_context(30)
    seen = []
    real = instruct.next_token_loss

    def spy(student, split):
        loss = real(student, split)
        return lambda idx: (seen.append(idx.clone()), loss(idx))[1]
    import unittest.mock as mock
    with mock.patch.object(instruct, "next_token_loss", spy):
        instruct.fine_tune(ctx, ctx.task.train, epoch_size=95, desc="t")
    indices = torch.cat(seen)
    assert len(indices) == 95 and int(indices.max()) < 30  # 95 rows an epoch, drawn from the 30 by cycling


def test_minillm_starts_from_the_sft_student(monkeypatch):
    # Algorithm 1's first step: fine-tune on the data, then the policy gradient from there
    from reference_impl.harness.lm.bench import SequenceContext
    from reference_impl.harness.train import TrainConfig
    task = data.load_sequences("dialects")
    small = data.SequenceSplit("dialects-train", task.vocab, task.train.sources[:16], task.train.targets[:16],
                               task.train.tokens[:16])
    val = data.SequenceSplit("dialects-val", task.vocab, task.val.sources[:16], task.val.targets[:16],
                             task.val.tokens[:16])
    ctx = SequenceContext(data.SequenceTask("tiny", small, val, val), model(7).eval(), SPEC, TrainConfig(epochs=1), 0)
    sft = []
    original = minillm.scratch_sequence_student
    monkeypatch.setattr(minillm, "scratch_sequence_student", lambda c: sft.append(original(c)) or sft[-1])
    student = minillm.minillm_student(ctx)
    assert len(sft) == 1 and student is sft[0]  # the SFT student is the one the policy gradient trains
    assert len(ctx.chosen_epochs) == 2  # two stages, each with its epoch chosen on validation


def test_a_quick_check_scores_the_first_test_rows_and_the_teacher_sees_the_whole_task():
    from dataclasses import replace

    from reference_impl.harness.lm.bench import load_task
    experiment = token_level_kd.EXPERIMENTS[0]
    with pytest.raises(ValueError, match="test_rows must be None or at least 1, got 0"):
        replace(experiment, test_rows=0)
    quick, task = replace(experiment, test_rows=7).setup(), load_task("dialects")
    assert len(quick.task.test) == 7 and len(quick.teacher_outputs) == 7
    assert quick.task.test.sources == task.test.sources[:7] and torch.equal(quick.task.test.tokens, task.test.tokens[:7])
    assert quick.task.train is task.train and quick.task.val is task.val
    assert len(load_task("dialects").test) == 5000  # the task itself is untouched: a benchmark scores all of it
