"""Decoding for the decoder-only models: greedy, sampling with a temperature, beam search.

Every function takes left-padded prompts (B, P) with their attention mask (as
`SequenceSplit.prompts()` gives them) and returns the continuations (B, T): the generated
tokens, EOS included, then PAD. Generation stops when every row has produced EOS or after
`max_new_tokens`. Padding and masks are handled here once, so techniques never do it again.

`join(prompts, mask, continuations)` gives the full rows (B, P + T) with their attention
mask and the mask of the generated tokens (the positions a token-level loss may use).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .data import EOS, PAD


def _check(prompts: Tensor, mask: Tensor, max_new_tokens: int) -> None:
    if prompts.dim() != 2 or prompts.shape != mask.shape:
        raise ValueError(f"prompts and mask must be (batch, length) of one shape, got {tuple(prompts.shape)} "
                         f"and {tuple(mask.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")


def _next_logits(model: nn.Module, tokens: Tensor, mask: Tensor) -> Tensor:
    return model(tokens, mask)[:, -1]  # (B, V): the distribution of the next token


@torch.no_grad()
def decode(next_token: Callable[[Tensor, Tensor], Tensor], prompts: Tensor, mask: Tensor, *,
           max_new_tokens: int, stop_token: int = EOS) -> Tensor:
    """The decoding loop every sampler shares: `next_token(tokens, mask)` gives each row's next
    token (B,); a row that has produced `stop_token` only pads afterwards, and the appended
    tokens' mask is 1 up to and including the stop token."""
    _check(prompts, mask, max_new_tokens)
    tokens = prompts
    done = torch.zeros(len(prompts), dtype=torch.bool, device=prompts.device)
    out = []
    for _ in range(max_new_tokens):
        nxt = next_token(tokens, mask)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)  # finished rows only pad
        out.append(nxt)
        done = done | (nxt == stop_token)
        tokens = torch.cat([tokens, nxt[:, None]], 1)
        mask = torch.cat([mask, (~done | (nxt == stop_token)).long()[:, None]], 1)
        if done.all():
            break
    return torch.stack(out, 1)


@torch.no_grad()
def generate(model: nn.Module, prompts: Tensor, mask: Tensor, *, max_new_tokens: int,
             temperature: float = 0.0, generator: torch.Generator | None = None, stop_token: int = EOS) -> Tensor:
    """Greedy decoding (temperature 0) or ancestral sampling from softmax(logits / temperature),
    each row ending at `stop_token` (EOS; SEP to generate a prompt instead of an answer)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")

    def next_token(tokens: Tensor, mask: Tensor) -> Tensor:
        logits = _next_logits(model, tokens, mask)
        if temperature == 0:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1)
    was_training = model.training
    model.eval()
    try:
        return decode(next_token, prompts, mask, max_new_tokens=max_new_tokens, stop_token=stop_token)
    finally:
        model.train(was_training)


@torch.no_grad()
def beam_search(model: nn.Module, prompts: Tensor, mask: Tensor, *, max_new_tokens: int,
                beam_size: int = 5) -> Tensor:
    """The highest-scoring continuation under the sum of token log-probabilities found with a
    beam of `beam_size` (Kim & Rush 2016 use 5). A finished hypothesis keeps its score."""
    _check(prompts, mask, max_new_tokens)
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    was_training = model.training
    model.eval()
    B, K = len(prompts), beam_size
    tokens = prompts.repeat_interleave(K, 0)  # (B*K, P)
    masks = mask.repeat_interleave(K, 0)
    scores = torch.full((B, K), float("-inf"), device=prompts.device)
    scores[:, 0] = 0.0  # all beams start as the same prompt: keep one
    done = torch.zeros(B * K, dtype=torch.bool, device=prompts.device)
    out = torch.empty(B * K, 0, dtype=torch.long, device=prompts.device)
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(_next_logits(model, tokens, masks), -1)  # (B*K, V)
        V = logp.shape[1]
        # a finished beam can only extend with PAD at no cost
        finished = torch.full_like(logp, float("-inf"))
        finished[:, PAD] = 0.0
        logp = torch.where(done[:, None], finished, logp)
        total = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)
        scores, flat = total.topk(K, dim=1)  # (B, K)
        beam = flat // V + torch.arange(B, device=prompts.device)[:, None] * K
        token = (flat % V).reshape(-1)
        beam = beam.reshape(-1)
        out = torch.cat([out[beam], token[:, None]], 1)
        was_done = done[beam]
        done = was_done | (token == EOS)
        tokens = torch.cat([tokens[beam], token[:, None]], 1)
        masks = torch.cat([masks[beam], (~was_done).long()[:, None]], 1)
        if done.all():
            break
    model.train(was_training)
    best = scores.argmax(1) + torch.arange(B, device=prompts.device) * K
    return out[best]


def join(prompts: Tensor, mask: Tensor, continuations: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Full rows (B, P + T), their attention mask, and the mask of generated tokens up to and
    including each row's EOS (what a token-level loss on generated text sums over)."""
    generated = torch.ones_like(continuations, dtype=torch.bool)
    after_eos = (continuations == EOS).long().cumsum(1) - (continuations == EOS).long()
    generated &= after_eos == 0
    rows = torch.cat([prompts, continuations], 1)
    attention = torch.cat([mask.bool(), generated], 1).long()
    return rows, attention, torch.cat([torch.zeros_like(mask, dtype=torch.bool), generated], 1).float()
