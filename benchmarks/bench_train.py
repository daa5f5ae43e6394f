"""Training throughput of the lab's train step against a bare PyTorch loop on the same model.

Both loops train the same freshly initialised model (same size, batch, sequence length and
device) on the same fixed batches for the same number of steps, after the same warm-up; the
bare loop is model -> cross-entropy -> AdamW, nothing else. The lab's step adds per-step
learning-rate setting, gradient clipping, the (disabled in fp32) loss scaler and its data
sampler. Goal: the lab within 10% of the bare loop.

Usage::

    python benchmarks/bench_train.py [--size 0.1M] [--steps 60] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from bayesqid.lab.config import Recipe, Size
from bayesqid.lab.train import VOCAB, TrainStep, batch_at, build_model, load_train_text

#: Sizes of stack.md's measured throughputs (4 layers, byte-level) plus the lab's small ones.
SIZES = {
    "0.03M": Size("0.03M", 2, 48, 4, 192),
    "0.1M": Size("0.1M", 4, 48, 4, 192),
    "0.3M": Size("0.3M", 4, 80, 4, 320),
    "0.8M": Size("0.8M", 4, 128, 4, 512),
}


def bare(model: torch.nn.Module, batches: list, device: torch.device) -> float:
    """Tokens/s of the plainest loop: forward, cross-entropy, backward, AdamW."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in batches:
        logits = model(input_ids=x.to(device)).logits
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.to(device).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    float(loss.detach())  # wait for the device
    return sum(x.numel() for x, _ in batches) / (time.perf_counter() - start)


def lab(model: torch.nn.Module, train: np.ndarray, steps: int, batch: int, seq_len: int,
        device: torch.device, first: int) -> float:
    """Tokens/s of the lab's step, including its per-step batch sampling."""
    recipe = Recipe("bench", "cosine", 1e-3, 0, 0.1, 0.2, (), 0.1, 0.0, 1.0, "fp32")
    step = TrainStep(model, recipe, device)
    start = time.perf_counter()
    for k in range(first, first + steps):
        x, y = batch_at(train, 0, k, batch, seq_len)
        loss = step(x.to(device), y.to(device), 0.5)
    float(loss.detach())
    return steps * batch * seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="0.1M")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    train, _ = load_train_text("stdlib", 2_000_000)
    size = SIZES[args.size]
    batches = [batch_at(train, 1, k, args.batch, args.seq_len) for k in range(1, args.steps + 1)]
    best = {"bare": 0.0, "lab": 0.0}
    for r in range(args.rounds):  # alternate, so that load from other work hits both alike
        for name in ("bare", "lab"):
            model = build_model("gpt_neox", size, seq_len=args.seq_len, dropout=0.0, seed=0)
            model.to(device).train()
            if name == "bare":
                bare(model, batches[:3], device)  # warm-up (allocator, kernels)
                rate = bare(model, batches, device)
            else:
                lab(model, train, 3, args.batch, args.seq_len, device, 10_000)
                rate = lab(model, train, args.steps, args.batch, args.seq_len, device, 1)
            best[name] = max(best[name], rate)
            print(f"round {r + 1}: {name:4s} {rate:10,.0f} tokens/s")
    from bayesqid.measure.checkpoint import non_embedding_params

    n = non_embedding_params(build_model("gpt_neox", size, seq_len=args.seq_len, dropout=0.0, seed=0))
    print(f"size {args.size} ({n:,} non-embedding params), batch {args.batch} x seq {args.seq_len}, "
          f"{args.threads} thread(s), {device}")
    print(f"bare loop: {best['bare']:,.0f} tokens/s; lab step: {best['lab']:,.0f} tokens/s "
          f"({best['lab'] / best['bare']:.1%} of bare)")


if __name__ == "__main__":
    main()
