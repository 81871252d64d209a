"""The encoder family (DistilBERT, TinyBERT, MiniLM, Patient KD): the pair task and BERT masking,
each loss against an independent NumPy computation, masking, T², frozen teachers, layer maps,
DistilBERT's initialisation, bad input, and every arm on a tiny task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reference_impl.harness.lm import data, encoder
from reference_impl.harness.lm.models import Transformer, TransformerOutput, TransformerSpec
from reference_impl.harness.train import TrainConfig
from reference_impl.techniques import distilbert, minilm, patient_kd, tinybert

torch.set_num_threads(1)


def rand(seed, *shape, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def encoder_model(seed=0, n_layer=2, d_model=16, n_head=2):
    torch.manual_seed(seed)
    return Transformer(TransformerSpec(causal=False, n_layer=n_layer, n_head=n_head, d_model=d_model, n_classes=2),
                       encoder.VOCAB_SIZE, 24)


MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # (B, L): two rows with padding


# ------------------------------------------------------------------ task and masking
def test_pair_task_is_balanced_valid_and_corrupted_as_labelled():
    task = encoder.load_encoder_task("dialect-pairs")
    assert (len(task.train), len(task.val), len(task.test)) == (4000, 500, 5000)
    for split in (task.train, task.val, task.test):
        assert int(split.labels.sum()) == len(split) // 2
    for i in range(300):
        s, c, y = task.train.sources[i], task.train.candidates[i], int(task.train.labels[i])
        assert (c in data.translations(s)) == bool(y) and len(c) == len(s)
        row = task.train.tokens[i][task.train.attention_mask[i].bool()].tolist()
        assert row == [data.BOS, *data.DIALECTS_VOCAB.encode(s), data.SEP, *data.DIALECTS_VOCAB.encode(c), data.EOS]
    negatives = [(s, c) for s, c, y in zip(task.test.sources, task.test.candidates, task.test.labels) if not y]
    mixes = sum(all(any(t[ch] == sym for t in data.TABLES) for ch, sym in zip(s, c)) for s, c in negatives)
    assert 0.3 < mixes / len(negatives) < 0.7  # about half the corruptions are dialect mixes
    again = encoder._pair_split("val")
    assert again.candidates == task.val.candidates and torch.equal(again.labels, task.val.labels)
    with pytest.raises(ValueError, match="unknown encoder task"):
        encoder.load_encoder_task("nope")


def test_bert_masking_chooses_symbols_only_and_splits_80_10_10():
    rows = encoder.load_encoder_task("dialect-pairs").corpus
    inputs, chosen = encoder.mask_tokens(rows, torch.Generator().manual_seed(0))
    c = chosen.bool()
    assert (rows[c] >= encoder.FIRST_SYMBOL).all() and torch.equal(inputs[~c], rows[~c])
    assert abs(c.sum() / (rows >= encoder.FIRST_SYMBOL).sum() - 0.15) < 0.01
    masked = (inputs[c] == encoder.MASK).float().mean()
    kept = (inputs[c] == rows[c]).float().mean()  # the 10% kept plus random draws that hit the same symbol
    assert abs(masked - 0.8) < 0.02 and abs(kept - (0.1 + 0.1 / 20)) < 0.02
    assert ((inputs[c] >= encoder.FIRST_SYMBOL) & (inputs[c] <= encoder.MASK)).all()
    with pytest.raises(ValueError, match="rate"):
        encoder.mask_tokens(rows, torch.Generator(), rate=0)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# ------------------------------------------------------------------ DistilBERT
def test_every_other_layer_and_the_initialisation_copies_exactly_those_teacher_weights():
    assert distilbert.every_other_layer(4) == [0, 2] and distilbert.every_other_layer(12) == [0, 2, 4, 6, 8, 10]
    with pytest.raises(ValueError, match="n_teacher_layers"):
        distilbert.every_other_layer(3)
    teacher, student = encoder_model(1, n_layer=4), encoder_model(2, n_layer=2)
    fresh_classifier = {k: v.clone() for k, v in student.classifier.state_dict().items()}
    distilbert.initialise_from_teacher(student, teacher)
    t, s = teacher.state_dict(), student.state_dict()
    for j, i in enumerate([0, 2]):
        for name, value in teacher.blocks[i].state_dict().items():
            assert torch.equal(s[f"blocks.{j}.{name}"], value)
    assert not torch.equal(s["blocks.1.attn.qkv.weight"], t["blocks.1.attn.qkv.weight"])  # not block 1
    for name in ("token_embedding.weight", "position_embedding.weight", "ln_f.weight", "ln_f.bias", "lm_head.weight"):
        assert torch.equal(s[name], t[name])
    assert all(torch.equal(student.classifier.state_dict()[k], v) for k, v in fresh_classifier.items())
    with pytest.raises(ValueError, match="layers names 3"):
        distilbert.initialise_from_teacher(encoder_model(2, n_layer=2), teacher, layers=[0, 1, 2])
    with pytest.raises(ValueError, match="d_model"):
        distilbert.initialise_from_teacher(encoder_model(2, n_layer=2, d_model=8), teacher)
    other_vocabulary = Transformer(TransformerSpec(causal=False, n_layer=2, n_head=2, d_model=16, n_classes=2), 30, 24)
    with pytest.raises(ValueError, match="token_embedding"):
        distilbert.initialise_from_teacher(other_vocabulary, teacher)


def _outputs(seed, *, V=7, D=5, B=2, L=4):
    return TransformerOutput(logits=rand(seed, B, L, V, scale=2), hidden_states=[rand(seed + 1, B, L, D)])


def test_triple_loss_matches_an_independent_computation_with_t_squared():
    s, t = _outputs(0), _outputs(10)
    tokens = torch.tensor([[1, 4, 5, 0], [2, 6, 0, 0]])
    chosen = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]], dtype=torch.float)
    T, real = 2.0, MASK.numpy().astype(bool)
    loss = distilbert.triple_loss(s, t, tokens, chosen, MASK, temperature=T)
    sl, tl = s.logits.double().numpy(), t.logits.double().numpy()
    p, q = _softmax(tl / T), _softmax(sl / T)
    kl = (p * (np.log(p) - np.log(q))).sum(-1)
    l_ce = T * T * kl[real].mean()
    logq1 = np.log(_softmax(sl))
    picked = np.take_along_axis(logq1, tokens.numpy()[..., None], -1)[..., 0]
    l_mlm = -picked[chosen.numpy().astype(bool)].mean()
    hs, ht = s.hidden_states[-1].double().numpy(), t.hidden_states[-1].double().numpy()
    cos = (hs * ht).sum(-1) / np.linalg.norm(hs, axis=-1) / np.linalg.norm(ht, axis=-1)
    l_cos = (1 - cos)[real].mean()
    assert float(loss) == pytest.approx(5 * l_ce + 2 * l_mlm + 1 * l_cos, rel=1e-5)
    only_ce = distilbert.triple_loss(s, t, tokens, chosen, MASK, temperature=T, alpha_mlm=0, alpha_cos=0)
    assert float(only_ce) == pytest.approx(5 * l_ce, rel=1e-5)  # T² = 4 is in there


def test_cosine_loss_is_zero_at_identity_ignores_scale_and_padding_and_leaves_the_teacher_alone():
    h = rand(3, 2, 4, 5)
    assert float(distilbert.cosine_loss(h, 3 * h, MASK)) == pytest.approx(0.0, abs=1e-6)
    s, t = rand(4, 2, 4, 5).requires_grad_(True), rand(5, 2, 4, 5).requires_grad_(True)
    s2 = s.detach().clone()
    s2[MASK == 0] = 100 * rand(6, int((MASK == 0).sum()), 5)
    assert float(distilbert.cosine_loss(s, t, MASK).detach()) == pytest.approx(float(distilbert.cosine_loss(s2, t, MASK)))
    distilbert.cosine_loss(s, t, MASK).backward()
    assert t.grad is None and (s.grad[MASK == 0] == 0).all() and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="student_hidden"):
        distilbert.cosine_loss(s, rand(7, 2, 4, 6), MASK)


def test_distilbert_teacher_gets_no_gradient_and_bad_temperature_is_refused():
    s, t = _outputs(0), _outputs(10)
    s.logits.requires_grad_(True)
    t.logits.requires_grad_(True), t.hidden_states[-1].requires_grad_(True)
    tokens, chosen = torch.tensor([[1, 4, 5, 0], [2, 6, 0, 0]]), torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]]).float()
    distilbert.triple_loss(s, t, tokens, chosen, MASK).backward()
    assert t.logits.grad is None and t.hidden_states[-1].grad is None and s.logits.grad is not None
    with pytest.raises(ValueError, match="temperature"):
        distilbert.triple_loss(s, t, tokens, chosen, MASK, temperature=0)


# ------------------------------------------------------------------ TinyBERT
def test_uniform_layer_map():
    assert tinybert.uniform_layer_map(2, 4) == [2, 4] and tinybert.uniform_layer_map(4, 12) == [3, 6, 9, 12]
    for bad in ((3, 4), (0, 4), (5, 4)):
        with pytest.raises(ValueError, match="n_student"):
            tinybert.uniform_layer_map(*bad)


def test_attention_mse_matches_numpy_over_real_pairs_only():
    s, t = rand(0, 2, 3, 4, 4), rand(1, 2, 3, 4, 4)
    loss = tinybert.attention_mse(s, t, MASK)
    m = MASK.numpy()
    total = sum(((s[b, h] - t[b, h]).numpy()[np.ix_(m[b] == 1, m[b] == 1)] ** 2).sum() for b in range(2) for h in range(3))
    pairs = sum(int(m[b].sum()) ** 2 for b in range(2))
    assert float(loss) == pytest.approx(total / (3 * pairs), rel=1e-5)  # (1/h) Σ_i MSE_i
    s2 = s.clone()
    s2[1, :, 2:, :] = 50.0
    s2[1, :, :, 3] = -50.0  # padding queries and keys
    assert float(tinybert.attention_mse(s2, t, MASK)) == pytest.approx(float(loss), rel=1e-6)
    assert float(tinybert.attention_mse(t.clone(), t, MASK)) == 0.0
    with pytest.raises(ValueError, match="student_scores"):
        tinybert.attention_mse(s[:, :2], t, MASK)
    with pytest.raises(ValueError, match="mask"):
        tinybert.attention_mse(s, t, MASK[:, :3])


def test_hidden_mse_projects_the_student_and_the_prediction_loss_is_a_soft_cross_entropy():
    projection = torch.nn.Linear(3, 5, bias=False)
    hs, ht = rand(0, 2, 4, 3), rand(1, 2, 4, 5)
    W = projection.weight.detach().numpy().T  # (3, 5): H^S W
    diff = hs.numpy() @ W - ht.numpy()
    expected = (diff ** 2).mean(-1)[MASK.numpy() == 1].mean()
    assert tinybert.hidden_mse(hs, ht, projection, MASK).item() == pytest.approx(expected, rel=1e-5)
    assert tinybert.hidden_mse(hs, projection(hs).detach(), projection, MASK).item() == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="projection"):
        tinybert.hidden_mse(hs, rand(1, 2, 4, 6), projection, MASK)
    zs, zt = rand(2, 3, 4, scale=3), rand(3, 3, 4, scale=3)
    for t in (1.0, 3.0):
        p = _softmax(zt.double().numpy() / t)
        expected = -(p * np.log(_softmax(zs.double().numpy() / t))).sum(1).mean()
        assert float(tinybert.prediction_loss(zs, zt, t)) == pytest.approx(expected, rel=1e-5)  # no t² factor
    entropy = -(p * np.log(p)).sum(1).mean()
    assert float(tinybert.prediction_loss(zt.clone(), zt, 3.0)) == pytest.approx(entropy, rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        tinybert.prediction_loss(zs, zt, -1.0)


def test_intermediate_loss_sums_embedding_then_mapped_layers():
    teacher, student = encoder_model(1, n_layer=4, d_model=16), encoder_model(2, n_layer=2, d_model=8)
    tokens = torch.tensor([[1, 4, 5, 2, 12, 3], [1, 6, 2, 13, 3, 0]])
    mask = tokens != data.PAD
    with torch.no_grad():
        t = encoder.states(teacher, tokens)
    s = encoder.states(student, tokens)
    proj = tinybert.Projections(8, 16)
    loss = tinybert.intermediate_loss(s, t, mask, proj, [2, 4])
    expected = (tinybert.hidden_mse(s.hidden_states[0], t.hidden_states[0], proj.w_e, mask)
                + tinybert.attention_mse(s.attention_scores[0], t.attention_scores[1], mask)
                + tinybert.hidden_mse(s.hidden_states[1], t.hidden_states[2], proj.w_h, mask)
                + tinybert.attention_mse(s.attention_scores[1], t.attention_scores[3], mask)
                + tinybert.hidden_mse(s.hidden_states[2], t.hidden_states[4], proj.w_h, mask))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters()) and proj.w_h.weight.grad is not None
    with pytest.raises(ValueError, match="layer_map has 3"):
        tinybert.intermediate_loss(s, t, mask, proj, [1, 2, 3])
    with pytest.raises(ValueError, match="layer_map must name"):
        tinybert.intermediate_loss(s, t, mask, proj, [2, 5])


# ------------------------------------------------------------------ MiniLM
def _relation_kl_numpy(s, t, mask):
    """mean over sequences of 1/(H |x|) Σ_heads Σ_real queries KL over the real keys."""
    out = []
    for b in range(s.shape[0]):
        keep = mask[b] == 1
        total = 0.0
        for h in range(s.shape[1]):
            for i in np.flatnonzero(keep):
                p, q = _softmax(t[b, h, i, keep]), _softmax(s[b, h, i, keep])
                total += (p * (np.log(p) - np.log(q))).sum()
        out.append(total / (s.shape[1] * keep.sum()))
    return float(np.mean(out))


def test_relation_kl_matches_numpy_is_zero_at_identity_and_ignores_padding():
    s, t = rand(0, 2, 3, 4, 4, scale=2), rand(1, 2, 3, 4, 4, scale=2)
    expected = _relation_kl_numpy(s.double().numpy(), t.double().numpy(), MASK.numpy())
    assert float(minilm.relation_kl(s, t, MASK)) == pytest.approx(expected, rel=1e-5)
    assert float(minilm.relation_kl(t.clone(), t, MASK)) == pytest.approx(0.0, abs=1e-6)
    s2 = s.clone().requires_grad_(True)
    with torch.no_grad():
        s2[1, :, 2:, :] = 30.0
        s2[1, :, :, 2:] = -30.0
        s2[0, :, :, 3] = 9.0
    loss = minilm.relation_kl(s2, t, MASK)
    assert float(loss.detach()) == pytest.approx(float(minilm.relation_kl(s, t, MASK)), rel=1e-6)
    loss.backward()
    assert s2.grad[1, :, :, 2:].abs().sum() == 0 and s2.grad[1, :, 2:, :].abs().sum() == 0
    assert s2.grad[0, :, :, 3].abs().sum() == 0
    with pytest.raises(ValueError, match="student_logits"):
        minilm.relation_kl(s[:, :2], t, MASK)  # different numbers of heads


def test_value_relation_and_attention_relation_from_a_real_model_pair_of_different_widths():
    v = rand(0, 2, 3, 4, 5)
    vn = v.numpy()
    expected = np.einsum("bhid,bhjd->bhij", vn, vn) / math.sqrt(5)
    assert np.allclose(minilm.value_relation_logits(v).numpy(), expected, atol=1e-5)
    teacher, student = encoder_model(1, n_layer=3, d_model=16, n_head=2), encoder_model(2, n_layer=2, d_model=8, n_head=2)
    tokens = torch.tensor([[1, 4, 5, 2, 12, 3], [1, 6, 2, 13, 3, 0]])
    mask = tokens != data.PAD
    t, s = encoder.states(teacher, tokens), encoder.states(student, tokens)
    # on real queries the masked softmax of the scores is the model's own attention distribution
    p, q = t.attention_probs[-1], s.attention_probs[-1]
    direct = []
    for b in range(2):
        keep = mask[b]
        kl = (p[b][:, keep][:, :, keep] * (p[b][:, keep][:, :, keep].log() - q[b][:, keep][:, :, keep].log())).sum(-1)
        direct.append(kl.mean())
    at = minilm.relation_kl(s.attention_scores[-1], t.attention_scores[-1], mask)
    assert at.item() == pytest.approx(torch.stack(direct).mean().item(), rel=1e-4)
    both = minilm.minilm_loss(s, t, mask)
    vr = minilm.relation_kl(minilm.value_relation_logits(s.values[-1]), minilm.value_relation_logits(t.values[-1]), mask)
    assert both.item() == pytest.approx((at + vr).item(), rel=1e-6)
    assert minilm.minilm_loss(s, t, mask, value_relation=False).item() == pytest.approx(at.item(), rel=1e-6)
    both.backward()
    assert all(p.grad is None for p in teacher.parameters()) and student.blocks[-1].attn.qkv.weight.grad is not None


# ------------------------------------------------------------------ Patient KD
def test_pkd_layer_choices():
    assert patient_kd.pkd_layers(6, 12, "skip") == [2, 4, 6, 8, 10]
    assert patient_kd.pkd_layers(6, 12, "last") == [7, 8, 9, 10, 11]
    assert patient_kd.pkd_layers(3, 12, "skip") == [4, 8] and patient_kd.pkd_layers(3, 12, "last") == [10, 11]
    assert patient_kd.pkd_layers(2, 4, "skip") == [2] and patient_kd.pkd_layers(2, 4, "last") == [3]
    with pytest.raises(ValueError, match="strategy"):
        patient_kd.pkd_layers(2, 4, "first")
    with pytest.raises(ValueError, match="n_student"):
        patient_kd.pkd_layers(1, 4, "last")
    with pytest.raises(ValueError, match="divisible"):
        patient_kd.pkd_layers(3, 4, "skip")


def test_patient_loss_matches_numpy_and_is_zero_for_the_same_directions():
    s, t = rand(0, 3, 2, 5).requires_grad_(True), rand(1, 3, 2, 5).requires_grad_(True)
    sn, tn = s.detach().numpy(), t.detach().numpy()
    diff = sn / np.linalg.norm(sn, axis=-1, keepdims=True) - tn / np.linalg.norm(tn, axis=-1, keepdims=True)
    expected = (diff ** 2).sum((1, 2)).mean()
    loss = patient_kd.patient_loss(s, t)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert t.grad is None and s.grad is not None
    assert float(patient_kd.patient_loss(2.5 * t.detach(), t.detach())) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="student_cls"):
        patient_kd.patient_loss(rand(0, 3, 2, 4), rand(1, 3, 2, 5))


def test_kd_loss_matches_numpy_with_t_squared_and_refuses_bad_settings():
    zs, zt, y = rand(0, 4, 2, scale=3), rand(1, 4, 2, scale=3), torch.tensor([0, 1, 1, 0])
    T, a = 5.0, 0.3
    p = _softmax(zt.double().numpy() / T)
    l_ds = -(p * np.log(_softmax(zs.double().numpy() / T))).sum(1).mean()
    l_ce = -np.log(_softmax(zs.double().numpy()))[np.arange(4), y.numpy()].mean()
    assert float(patient_kd.kd_loss(zs, zt, y, temperature=T, alpha=a)) == pytest.approx(
        (1 - a) * l_ce + a * T * T * l_ds, rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        patient_kd.kd_loss(zs, zt, y, temperature=0, alpha=a)
    with pytest.raises(ValueError, match="alpha"):
        patient_kd.kd_loss(zs, zt, y, temperature=T, alpha=1.5)
    with pytest.raises(ValueError, match="labels"):
        patient_kd.kd_loss(zs, zt, torch.tensor([0, 1, 2, 0]), temperature=T, alpha=a)


# ------------------------------------------------------------------ the modules' arms on a tiny task
@pytest.fixture(scope="module")
def tiny_context():
    full = encoder.load_encoder_task("dialect-pairs")
    cut = lambda s, n: encoder.PairSplit(s.name, s.sources[:n], s.candidates[:n], s.labels[:n], s.tokens[:n])  # noqa: E731
    task = encoder.EncoderTask("tiny", cut(full.train, 64), cut(full.val, 32), cut(full.test, 32),
                               full.corpus[:64], full.corpus_val[:32])
    spec = TransformerSpec(causal=False, n_layer=4, n_head=2, d_model=16, n_classes=2)
    pretrained, teacher = encoder.get_encoder_teachers(task, spec, TrainConfig(epochs=1), TrainConfig(epochs=1),
                                                       use_cache=False)
    return task, pretrained, teacher


@pytest.mark.parametrize("module", [distilbert, tinybert, minilm, patient_kd])
def test_every_arm_runs_on_a_tiny_task_and_leaves_the_teachers_frozen(module, tiny_context):
    task, pretrained, teacher = tiny_context
    before = [p.clone() for p in teacher.parameters()] + [p.clone() for p in pretrained.parameters()]
    experiment = module.EXPERIMENTS[0]
    assert experiment.arms[0].key == "baseline" and module.FAMILY == "language model"
    d = 16 if module.STUDENT.d_model == experiment.teacher.d_model else 8
    spec = TransformerSpec(causal=False, n_layer=2, n_head=2, d_model=d, n_classes=2)
    for arm in experiment.arms:
        ctx = encoder.EncoderContext(task, teacher, pretrained, spec, TrainConfig(epochs=1, batch_size=32), 0)
        student = arm.train(ctx)
        assert 0 <= encoder.accuracy(student, task.test) <= 1 and ctx.chosen_epochs and set(ctx.chosen_epochs) == {1}
    after = [p for p in teacher.parameters()] + [p for p in pretrained.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
