"""Small transformers, trained here from scratch: a decoder-only language model (nanoGPT-style)
and a BERT-style encoder. One class serves both; `causal` is the difference.

Shapes: B batch, L sequence length, D d_model, H heads, Dh = D / H, V vocabulary.

Padding is handled here once: `attention_mask` (B, L) is 1 on real tokens and 0 on padding.
Keys that are padding are never attended to, and positions count real tokens only
(position = number of real tokens before it), so a left-padded prompt and the same prompt
unpadded give the same outputs. A padding query attends to itself only, so its row stays
finite; its output is never used by a loss (the masks exclude it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class TransformerSpec:
    causal: bool = True  # decoder-only LM (True) or bidirectional encoder (False)
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int = 0  # 0: 4 * d_model
    n_classes: int = 0  # encoder: a sequence-classification head on the first token ([CLS]); 0: none
    dropout: float = 0.0

    def describe(self) -> str:
        kind = "decoder" if self.causal else "encoder"
        return f"transformer {kind} {self.n_layer} layers x {self.d_model} ({self.n_head} heads)"


@dataclass
class TransformerOutput:
    logits: Tensor  # (B, L, V): next-token logits (decoder) or masked-token logits (encoder)
    hidden_states: list[Tensor] = field(default_factory=list)  # n_layer + 1 of (B, L, D); [0] = embeddings
    attention_scores: list[Tensor] = field(default_factory=list)  # n_layer of (B, H, L, L), before softmax
    attention_probs: list[Tensor] = field(default_factory=list)  # n_layer of (B, H, L, L)
    values: list[Tensor] = field(default_factory=list)  # n_layer of (B, H, L, Dh)
    class_logits: Tensor | None = None  # (B, n_classes) when the encoder has a classification head


class SelfAttention(nn.Module):
    def __init__(self, spec: TransformerSpec):
        super().__init__()
        self.n_head, self.d_head = spec.n_head, spec.d_model // spec.n_head
        self.qkv = nn.Linear(spec.d_model, 3 * spec.d_model)
        self.proj = nn.Linear(spec.d_model, spec.d_model)
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        B, L, D = x.shape
        # (B, L, 3D) -> three (B, H, L, Dh)
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)
        # scores = q k^T / sqrt(Dh): (B, H, L, L)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        probs = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
        y = self.dropout(probs) @ v  # (B, H, L, Dh)
        return self.proj(y.transpose(1, 2).reshape(B, L, D)), scores, probs, v


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, spec: TransformerSpec):
        super().__init__()
        d_ff = spec.d_ff or 4 * spec.d_model
        self.ln1, self.ln2 = nn.LayerNorm(spec.d_model), nn.LayerNorm(spec.d_model)
        self.attn = SelfAttention(spec)
        self.mlp = nn.Sequential(nn.Linear(spec.d_model, d_ff), nn.GELU(), nn.Linear(d_ff, spec.d_model),
                                 nn.Dropout(spec.dropout))

    def forward(self, x: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a, scores, probs, v = self.attn(self.ln1(x), allowed)
        x = x + a
        return x + self.mlp(self.ln2(x)), scores, probs, v


class Transformer(nn.Module):
    """`model(tokens, attention_mask)` -> logits (B, L, V); with `output_states=True`, a
    `TransformerOutput` with every layer's hidden states, attention scores/probabilities and
    values (what TinyBERT, MiniLM and Patient KD distil)."""

    def __init__(self, spec: TransformerSpec, vocab_size: int, max_len: int):
        super().__init__()
        if spec.d_model % spec.n_head:
            raise ValueError(f"d_model ({spec.d_model}) must be divisible by n_head ({spec.n_head})")
        self.spec, self.vocab_size, self.max_len = spec, vocab_size, max_len
        self.token_embedding = nn.Embedding(vocab_size, spec.d_model)
        self.position_embedding = nn.Embedding(max_len, spec.d_model)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.n_layer))
        self.ln_f = nn.LayerNorm(spec.d_model)
        self.lm_head = nn.Linear(spec.d_model, vocab_size, bias=False)
        self.classifier = nn.Linear(spec.d_model, spec.n_classes) if spec.n_classes else None

    def forward(self, tokens: Tensor, attention_mask: Tensor | None = None, *,
                output_states: bool = False) -> Tensor | TransformerOutput:
        B, L = tokens.shape
        if L > self.max_len:
            raise ValueError(f"sequence length {L} exceeds the model's max_len {self.max_len}")
        real = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        # position = number of real tokens before this one, so left padding does not shift positions
        positions = (real.long().cumsum(1) - 1).clamp(min=0)  # (B, L)
        # allowed[b, i, j]: query i may attend to key j (real key, and j <= i when causal); i -> i always
        allowed = real[:, None, :].expand(B, L, L)
        if self.spec.causal:
            allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()
        allowed = allowed | torch.eye(L, dtype=torch.bool, device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)  # (B, L, D)
        out = TransformerOutput(logits=torch.empty(0))
        out.hidden_states.append(x)
        for block in self.blocks:
            x, scores, probs, v = block(x, allowed)
            if output_states:
                out.hidden_states.append(x)
                out.attention_scores.append(scores)
                out.attention_probs.append(probs)
                out.values.append(v)
        h = self.ln_f(x)
        out.logits = self.lm_head(h)  # (B, L, V)
        if not output_states:
            return out.logits
        if self.classifier is not None:
            out.class_logits = self.classifier(h[:, 0])  # (B, n_classes), from the first token
        return out


def build_transformer(spec: TransformerSpec, vocab_size: int, max_len: int) -> Transformer:
    return Transformer(spec, vocab_size, max_len)
