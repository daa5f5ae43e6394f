"""The lab's wall-time estimate against the lab's own train step, timed here.

``bayesqid lab check`` estimates a sweep's time from a per-token model
(:mod:`bayesqid.lab.estimate`) fitted to timings of the lab's train step on one CPU thread. This
script times that step for the sizes and precisions of the shipped configs and prints measured
and estimated tokens/s side by side, so the constants can be checked (or refitted) on a machine.

Usage::

    python benchmarks/bench_lab_estimate.py [--steps 12] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from bayesqid.lab.config import Recipe, Size, load_config
from bayesqid.lab.estimate import seconds_per_token
from bayesqid.lab.train import TrainStep, batch_at, build_model, load_train_text

SIZES = (Size("n7k", 1, 24, 3, 96), Size("n25k", 2, 32, 4, 128), Size("n113k", 4, 48, 6, 192))
CASES = [(s, "fp32") for s in SIZES] + [(SIZES[1], "bf16"), (SIZES[1], "fp16"), (SIZES[2], "bf16")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = load_config("default")  # batch 32 x seq 128, as the estimate's timings
    train, _ = load_train_text("stdlib", 2_000_000)
    print(f"{'size':>6} {'precision':>9} {'measured tok/s':>15} {'estimated tok/s':>16}")
    for size, precision in CASES:
        recipe = Recipe("bench", "cosine", 2e-3, 0, 0.1, 0.2, (), 0.1, 0.0, 1.0, precision)
        model = build_model("gpt_neox", size, seq_len=config.seq_len, dropout=0.0, seed=0).to(device)
        step = TrainStep(model, recipe, device)
        for k in range(1, 4):  # warm-up
            x, y = batch_at(train, 0, k, config.batch, config.seq_len)
            step(x.to(device), y.to(device), 1.0)
        start = time.perf_counter()
        for k in range(args.steps):
            x, y = batch_at(train, 0, 10 + k, config.batch, config.seq_len)
            float(step(x.to(device), y.to(device), 1.0))
        measured = args.steps * config.tokens_per_step / (time.perf_counter() - start)
        estimated = 1 / seconds_per_token(config, size, precision, gpu=device.type == "cuda")
        print(f"{size.name:>6} {precision:>9} {measured:>15,.0f} {estimated:>16,.0f}")


if __name__ == "__main__":
    main()
