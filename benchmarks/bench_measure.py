"""Time ``bayesqid measure`` on one ~10M-parameter checkpoint: 4 bit widths x RTN and GPTQ.

Builds a byte-level Llama (hidden 384, 6 layers, SwiGLU 1024: 10.6M non-embedding parameters)
from its config with random weights, saves it as safetensors in a temporary directory, and
measures it on the CPU with the default corpus. Prints one line per step (from the progress
callback, with the seconds since the previous one) and a summary table: the shared work
(hashing, loading, tokenizing and the 16-bit evaluation; the calibration pass with GPTQ's Hessians and
factorisations) and each method's quantization + evaluation over the 4 bit widths.

Usage: python benchmarks/bench_measure.py [--threads 2] [--eval-tokens 16384]
       [--calib-tokens 4096] [--seq-len 256] [--group-size 128]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path


def build(path: Path) -> int:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
        num_key_value_heads=6, intermediate_size=1024, max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path, safe_serialization=True)
    embeddings = 2 * config.vocab_size * config.hidden_size
    return sum(p.numel() for p in model.parameters()) - embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--calib-tokens", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--group-size", default="128")
    args = parser.parse_args()

    import torch

    from bayesqid.measure.qid import measure

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "llama-10m"
        params = build(ckpt)
        steps: list[tuple[float, str]] = []
        last = [time.perf_counter()]

        def progress(line: str) -> None:
            now = time.perf_counter()
            steps.append((now - last[0], line))
            print(f"{now - last[0]:7.2f} s  {line}", flush=True)
            last[0] = now

        start = time.perf_counter()
        rows = measure(ckpt, methods=("rtn", "gptq"), bits=(2, 3, 4, 8), group_sizes=(args.group_size,),
                       tokens=1e9, device="cpu", max_eval_tokens=args.eval_tokens,
                       calib_tokens=args.calib_tokens, seq_len=args.seq_len, threads=args.threads,
                       progress=progress, out=Path(tmp) / "rows.csv")
        total = time.perf_counter() - start

    def seconds(pattern: str) -> float:
        return sum(s for s, line in steps if re.search(pattern, line))

    print()
    first = rows.iloc[0]
    print(f"model: byte-level Llama, {params / 1e6:.1f}M non-embedding params; "
          f"torch {torch.__version__}, {args.threads} thread(s); eval {first['eval_tokens']} tokens "
          f"in windows of {args.seq_len}, calibration {first['calib_tokens']} tokens, "
          f"group size {args.group_size}")
    print(f"{'step':<44}{'seconds':>9}")
    table = [
        ("load + tokenize + 16-bit evaluation", seconds(r"16-bit loss")),
        ("calibration (activations, Hessians, Cholesky)", seconds(r"calibration on")),
        ("RTN: quantize + evaluate, 4 bit widths", seconds(r": RTN \d")),
        ("GPTQ: quantize + evaluate, 4 bit widths", seconds(r": GPTQ \d")),
        ("total (measure call)", total),
    ]
    for name, value in table:
        print(f"{name:<44}{value:>9.1f}")
    print(rows[["method", "bits", "group_size", "qid", "fp16_loss"]].to_string(index=False))


if __name__ == "__main__":
    main()
