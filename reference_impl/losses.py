"""The functional loss of every technique that has one, for your own training loop.

    >>> import torch
    >>> from reference_impl.losses import soft_target_loss
    >>> student_logits = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    >>> teacher_logits, labels = torch.tensor([[3.0, 1.0, -2.0]]), torch.tensor([0])
    >>> loss = soft_target_loss(student_logits, teacher_logits, labels, temperature=4.0, alpha=0.9)
    >>> round(loss.item(), 4)  # 0.1 · CE + 0.9 · 4² · KL(p_t^T ‖ p_s^T) = 0.1 · 0.2413 + 0.9 · 16 · 0.01604
    0.2552
    >>> loss.backward()  # the teacher's logits need no gradient; the student's get one

Every loss takes logits (batch, classes) and, where it has them, features (batch, ...),
checks its input (ValueError naming what is wrong: shapes, NaN, labels out of range,
T <= 0) and averages over the batch, so a loss does not change with the batch size.
Teacher tensors are targets: no gradient flows into them. Each name links to its module,
whose docstring gives the paper, the equation and the conventions (e.g. where a T² is).

| loss | technique (module) | paper |
|---|---|---|
| `soft_target_loss`, `soft_target_kl` | soft targets | arXiv:1503.02531 |
| `logit_matching_loss` | logit matching | arXiv:1312.6184 |
| `dkd_loss` | decoupled KD | arXiv:2203.08679 |
| `multi_teacher_loss`, `multi_teacher_kl` | multi-teacher | doi:10.1145/3097983.3098135 |
| `born_again_loss` | born-again networks | arXiv:1805.04770 |
| `mutual_learning_losses` | deep mutual learning | arXiv:1706.00384 |
| `weighted_soft_target_loss`, `tfkd_reg_loss` | reverse / teacher-free KD | arXiv:1909.11723 |
| `hint_loss`, `fitnets_kd_loss` | FitNets | arXiv:1412.6550 |
| `attention_transfer_loss`, `attention_map` | attention transfer | arXiv:1612.03928 |
| `rkd_loss`, `rkd_distance_loss`, `rkd_angle_loss` | relational KD | arXiv:1904.05068 |
| `sp_loss` | similarity-preserving KD | arXiv:1907.09682 |
| `CRDLoss` (a module: heads and memory bank) | contrastive representation distillation | arXiv:1910.10699 |
| `self_distillation_loss`, `feature_hint_loss` | be your own teacher | arXiv:1905.08094 |

`munge` (Buciluǎ et al. 2006) makes a transfer set rather than a loss; it is here too.

**Language models.** These take logits (batch, length, vocabulary) from any model (a Hugging
Face model's `.logits` included) and a `mask` (batch, length) that is 1 exactly on the response
tokens and the EOS whose next-token distribution the loss may use (shift it like the labels:
position t predicts token t + 1). The mask decides, not the token ids, so a pad token equal
to the EOS is handled. They average over the masked tokens of the batch; with gradient
accumulation pass `normalizer=` the whole batch's token count to every micro-batch.

| loss | technique (module) | paper |
|---|---|---|
| `token_kl` (direction="forward" / "reverse") | token-level (word-level) KD | arXiv:1606.07947 |
| `generalized_jsd` | generalized KD (GKD) | arXiv:2306.13649 |
| `skew_kl` | skew KL (DistiLLM) | arXiv:2402.03898 |
| `minillm_loss` | reverse-KL distillation (MiniLLM) | arXiv:2306.08543 |
| `top_k_kd_loss`, `cache_top_k` | offline top-k logits | arXiv:2503.16870 |
| `triple_loss` (on `TransformerOutput`s) | DistilBERT | arXiv:1910.01108 |
| `attention_mse`, `hidden_mse` | TinyBERT | arXiv:1909.10351 |
| `minilm_loss`, `relation_kl` | MiniLM (self-attention and value relations) | arXiv:2002.10957 |
| `patient_loss` | Patient KD | arXiv:1908.09355 |
| `uld_distance`, `uld_loss` (two vocabularies, two masks) | universal logit distillation (cross-tokenizer) | arXiv:2402.12030 |
"""

from __future__ import annotations

from .techniques.attention_transfer import attention_map, attention_transfer_loss
from .techniques.be_your_own_teacher import feature_hint_loss, self_distillation_loss
from .techniques.born_again import born_again_loss
from .techniques.contrastive_rd import CRDLoss
from .techniques.decoupled_kd import dkd_loss
from .techniques.deep_mutual_learning import mutual_learning_losses
from .techniques.distilbert import triple_loss
from .techniques.fitnets import fitnets_kd_loss, hint_loss
from .techniques.generalized_kd import generalized_jsd
from .techniques.logit_matching import logit_matching_loss
from .techniques.minillm import minillm_loss
from .techniques.minilm import minilm_loss, relation_kl
from .techniques.multi_teacher import multi_teacher_kl, multi_teacher_loss
from .techniques.munge import munge
from .techniques.patient_kd import patient_loss
from .techniques.relational_kd import rkd_angle_loss, rkd_distance_loss, rkd_loss
from .techniques.reverse_distillation import tfkd_reg_loss, weighted_soft_target_loss
from .techniques.similarity_preserving import sp_loss
from .techniques.skew_kl import skew_kl
from .techniques.soft_targets import soft_target_kl, soft_target_loss
from .techniques.tinybert import attention_mse, hidden_mse
from .techniques.token_level_kd import token_kl
from .techniques.top_k_logits import cache_top_k, top_k_kd_loss
from .techniques.universal_logit_kd import uld_distance, uld_loss

__all__ = [
    "CRDLoss", "attention_map", "attention_mse", "attention_transfer_loss", "born_again_loss", "cache_top_k",
    "dkd_loss", "feature_hint_loss", "fitnets_kd_loss", "generalized_jsd", "hidden_mse", "hint_loss",
    "logit_matching_loss", "minillm_loss", "minilm_loss", "multi_teacher_kl", "multi_teacher_loss", "munge",
    "mutual_learning_losses", "patient_loss", "relation_kl", "rkd_angle_loss", "rkd_distance_loss", "rkd_loss",
    "self_distillation_loss", "skew_kl", "soft_target_kl", "soft_target_loss", "sp_loss", "tfkd_reg_loss",
    "token_kl", "top_k_kd_loss", "triple_loss", "uld_distance", "uld_loss", "weighted_soft_target_loss",
]
