"""Tiny causal LMs built and trained here (no downloads), saved as safetensors checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import transformers

#: Context of the tiny models (also the evaluation window).
SEQ_LEN = 64


def stdlib_bytes(limit: int = 400_000) -> np.ndarray:
    """Byte-level training tokens from the standard library's source (sorted top-level files)."""
    root = Path(os.path.dirname(os.__file__))
    chunks, size = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        size += len(data)
        if size >= limit:
            break
    return np.frombuffer(b"\n\n".join(chunks)[:limit], dtype=np.uint8).astype(np.int64)


def tiny_config(kind: str = "neox") -> transformers.PretrainedConfig:
    """A 2-layer, 64-wide byte-level model (~100k non-embedding parameters)."""
    if kind == "neox":
        return transformers.GPTNeoXConfig(
            vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=256, max_position_embeddings=SEQ_LEN, rotary_pct=0.25,
            tie_word_embeddings=False,
        )
    return transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=160, max_position_embeddings=SEQ_LEN,
        tie_word_embeddings=True,
    )


def build(path: Path, kind: str = "neox", steps: int = 60, seed: int = 0, batch: int = 8,
          lr: float = 1e-2) -> Path:
    """Build a tiny model, train it ``steps`` AdamW steps on stdlib bytes, save it to ``path``."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(kind))
    data = torch.as_tensor(stdlib_bytes())
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - SEQ_LEN, (batch,), generator=generator)
        window = torch.stack([data[s:s + SEQ_LEN] for s in starts])
        loss = model(input_ids=window, labels=window).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return path
