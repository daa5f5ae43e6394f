"""Mean token cross-entropy of a causal LM on fixed windows of tokens.

Token ids are cut into non-overlapping windows of ``seq_len`` tokens; each window predicts its
tokens 2..seq_len from the ones before, as ``model(input_ids, labels=input_ids)`` does. All
windows have the same length (a shorter remainder is dropped), so the mean over tokens equals
the mean of per-window losses.
"""

from __future__ import annotations

import numpy as np
import torch

#: Logits (windows x seq_len x vocab) per forward pass are capped at this many floats (~1 GB).
LOGITS_BUDGET = 1 << 28
#: Windows per forward pass at most.
MAX_BATCH = 64


def make_windows(tokens: np.ndarray, seq_len: int, max_tokens: int | None = None) -> torch.Tensor:
    """Cut token ids into non-overlapping windows of ``seq_len``.

    Parameters
    ----------
    tokens : numpy.ndarray
        1-D token ids.
    seq_len : int
        Window length. A text shorter than one window gives a single shorter window.
    max_tokens : int or None, optional
        Use at most this many tokens (whole windows).

    Returns
    -------
    torch.Tensor
        int64 of shape ``(n_windows, seq_len)``; empty if fewer than 2 tokens.
    """
    n = len(tokens) if max_tokens is None else min(len(tokens), max_tokens)
    if n < seq_len:
        return torch.as_tensor(tokens[:n]).reshape(1, -1) if n >= 2 else torch.empty(0, 2, dtype=torch.long)
    count = n // seq_len
    return torch.as_tensor(np.ascontiguousarray(tokens[: count * seq_len])).reshape(count, seq_len)


def batch_size_for(seq_len: int, vocab_size: int) -> int:
    """Windows per forward pass that keep the float32 logits within :data:`LOGITS_BUDGET`."""
    return int(max(1, min(MAX_BATCH, LOGITS_BUDGET // (seq_len * vocab_size))))


@torch.inference_mode()
def mean_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token cross-entropy (nats) over all predicted tokens of the windows.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM returning ``.logits``.
    windows : torch.Tensor
        Token ids ``(n_windows, seq_len)`` on the model's device.
    batch_size : int
        Windows per forward pass.

    Returns
    -------
    float
    """
    total = torch.zeros((), dtype=torch.float64, device=windows.device)
    for start in range(0, windows.shape[0], batch_size):
        batch = windows[start:start + batch_size]
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
        ).double()
    return float(total) / (windows.shape[0] * (windows.shape[1] - 1))
