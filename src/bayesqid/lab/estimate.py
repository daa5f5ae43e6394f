"""What a lab config will cost, from the config alone: parameters, memory and wall time.

Nothing here builds a model or imports torch, so a size that cannot fit is refused (one line
naming it) before any tensor is allocated or any output folder is made.

- **Parameters** are counted from the architecture's shapes (GPT-NeoX: biases and two layer
  norms per block; Llama: gated MLP, RMS norms, no biases), embeddings and untied head included.
- **Training memory** is an upper estimate: fp32 weights, gradients and AdamW's two moments
  (16 bytes per parameter) plus the activations autograd keeps for one batch (per layer and
  token about ``16 d + 2 ffn + 3 heads seq`` floats, as in Korthikanti et al. 2022 for fp32,
  and the logits three times over).
- **Measurement memory**: the weights twice (the 16-bit copy is kept to restore them), one
  ``in x in`` float32 GPTQ Hessian per quantized layer, and one batch of evaluation logits.
- **Wall time** on CPU comes from a throughput model fitted to timings of the lab's own train
  step on one thread of the 2-core machines this package is developed on (GPT-NeoX, batch 32 x
  seq 128, fp32: 7k non-embedding parameters 159k tokens/s, 25k 70k tokens/s, 113k 26k tokens/s;
  bf16 autocast 1.8x and fp16 autocast with its scaler 4.3x slower than fp32 there; the same
  step ran ~2x slower again while four other jobs shared the cores, so the estimates are for
  cores the sweep has to itself). A GPU estimate uses a nominal rate and is rougher still.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bayesqid.errors import SpecError
from bayesqid.lab.config import LabConfig, Recipe, Size
from bayesqid.lab.schedules import cooldown_end

__all__ = ["Cost", "check_memory", "check_plan_memory", "cost_of", "device_memory", "run_seconds",
           "run_tokens", "seconds_per_token", "sweep_seconds"]

#: Byte-level vocabulary of the lab's models.
VOCAB = 256
#: CPU time per token: a fixed part (data, optimizer, Python) plus FLOPs at a per-thread rate.
CPU_SECONDS_PER_TOKEN = 4.5e-6
CPU_FLOPS_PER_SECOND = 2.6e10
#: A GPU's rate is not measured here (no GPU was at hand): fp32 matmuls at ~20 TFLOP/s effective
#: for these small widths, and autocast precisions 2.5x faster. Treat GPU times as rough.
GPU_SECONDS_PER_TOKEN = 2e-8
GPU_FLOPS_PER_SECOND = 2e13
#: Slowdown of autocast precisions against fp32 (measured on CPU; on a GPU they are faster).
CPU_PRECISION_FACTOR = {"fp32": 1.0, "bf16": 1.8, "fp16": 4.3}
GPU_PRECISION_FACTOR = {"fp32": 1.0, "bf16": 0.4, "fp16": 0.4}
#: Seconds per measured checkpoint outside the evaluations: load, hash, calibrate, save rows.
CHECKPOINT_OVERHEAD_S = 3.0
#: Whole sweeps on CPU took longer than the per-step model: the lab's ``default`` sweep used 72
#: CPU-minutes (benchmarks/README.md) where the model gives 38 (checkpoint writes, model loads,
#: Dask and two workers sharing two cores); CPU sweep estimates are scaled by this factor.
CPU_SWEEP_FACTOR = 1.9
#: Memory of the largest single accelerator a plan is refused against (192 GB, a B200).
LARGEST_DEVICE_BYTES = 192 * 10**9
#: Logits of one evaluation batch are capped at this many floats (``measure.evaluate``).
LOGITS_BUDGET = 1 << 28


@dataclass(frozen=True)
class Cost:
    """Parameters and memory of one size under a config.

    Parameters
    ----------
    params : int
        Every parameter (embeddings and head included).
    non_embedding : int
        ``N`` of the scaling laws.
    train_bytes : int
        Peak memory of one training run (upper estimate).
    measure_bytes : int
        Peak memory of measuring one checkpoint.
    """

    params: int
    non_embedding: int
    train_bytes: int
    measure_bytes: int


def _params(architecture: str, size: Size) -> tuple[int, int, list[int]]:
    """(all parameters, non-embedding parameters, input widths of the quantized linears)."""
    d, f, layers = size.d_model, size.ffn, size.layers
    if architecture == "llama":
        block = 4 * d * d + 3 * d * f + 2 * d
        final = d
        inputs = [d, d, d, d, d, d, f]  # q, k, v, o, gate, up, down
    else:
        block = 4 * d * d + 2 * d * f + 9 * d + f
        final = 2 * d
        inputs = [d, d, d, f]  # qkv, dense, h_to_4h, 4h_to_h
    non_embedding = layers * block + final
    return non_embedding + 2 * VOCAB * d, non_embedding, inputs * layers


def cost_of(config: LabConfig, size: Size) -> Cost:
    """Parameters and memory of training and measuring one size of a config."""
    params, non_embedding, inputs = _params(config.architecture, size)
    tokens = config.batch * config.seq_len
    per_token_layer = 16 * size.d_model + 2 * size.ffn + 3 * size.heads * config.seq_len
    activations = 4 * tokens * (size.layers * per_token_layer + 3 * VOCAB)
    train = 16 * params + activations
    hessians = 4 * sum(i * i for i in inputs) if {"gptq", "gptq-sym"} & set(config.measure.methods) else 0
    logits = 4 * min(LOGITS_BUDGET, 64 * config.seq_len * VOCAB)
    measure = 8 * params + hessians + logits
    return Cost(params, non_embedding, train, measure)


def device_memory(device: str) -> int | None:
    """Bytes of memory a run may use on a device: CPU memory available now, or a GPU's total.

    None when it cannot be told (then nothing is refused for memory).
    """
    if device.startswith("cuda"):
        try:
            import torch

            return int(torch.cuda.mem_get_info(torch.device(device))[1])
        except Exception:  # no torch, no CUDA: run_lab reports the device itself
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(config: LabConfig, device: str, concurrent: int = 1, available: int | None = None,
                 where: str | None = None) -> None:
    """Refuse a config whose largest run cannot fit the device's memory.

    Parameters
    ----------
    config : LabConfig
        The checked config.
    device : str
        ``"cpu"`` or ``"cuda[:N]"`` (the memory asked for, unless ``available`` is given).
    concurrent : int, optional
        Runs that share the device at once (Dask workers on one machine).
    available : int, optional
        Bytes available; default :func:`device_memory`.
    where : str, optional
        What the memory is, in the message (default: the device).

    Raises
    ------
    SpecError
        ``"<config>: sizes.NAME: ..."``, naming the size, its parameters and both memories.
    """
    limit = device_memory(device) if available is None else available
    if limit is None:
        return
    for size in config.sizes:
        cost = cost_of(config, size)
        need = max(cost.train_bytes, cost.measure_bytes) * max(1, concurrent)
        if need > limit:
            runs = f" x {concurrent} concurrent runs" if concurrent > 1 else ""
            raise SpecError(
                f"{config.origin}: sizes.{size.name}: needs about {_gb(need)} of memory{runs} "
                f"({cost.params:,} parameters with gradients and AdamW state, activations of batch "
                f"{config.batch} x seq {config.seq_len}), more than the {_gb(limit)} of {where or device}")


def check_plan_memory(config: LabConfig) -> list[str]:
    """``lab check``'s memory test: refuse what no single device holds, note what this one cannot.

    A plan may be checked on another machine than the one that runs it (a GPU config on a
    laptop), so only sizes beyond both this machine and :data:`LARGEST_DEVICE_BYTES` are refused;
    ``lab run`` checks the device it runs on.

    Returns
    -------
    list of str
        Notes for the plan, one per size that does not fit this machine's memory.
    """
    local = device_memory("cpu") or 0
    largest = max(local, LARGEST_DEVICE_BYTES)
    where = f"any one device (this machine: {_gb(local)}; the largest GPU: {_gb(LARGEST_DEVICE_BYTES)})"
    check_memory(config, "cpu", available=largest, where=where)
    notes = []
    for size in config.sizes:
        cost = cost_of(config, size)
        need = max(cost.train_bytes, cost.measure_bytes)
        if need > local:
            notes.append(f"  note: size {size.name} needs about {_gb(need)}, more than this machine's "
                         f"{_gb(local)}: run it on a larger device")
    return notes


def run_tokens(config: LabConfig, recipe: Recipe) -> int:
    """Tokens one run of a recipe trains: the main run and its cooldown branches."""
    per = config.tokens_per_step
    branches = (cooldown_end(t // per, recipe.decay_frac) * per - t for t in recipe.cooldown_from)
    return config.tokens + sum(branches)


def seconds_per_token(config: LabConfig, size: Size, precision: str, gpu: bool = False) -> float:
    """Estimated seconds per trained token of one size at a precision (one CPU thread, or a GPU)."""
    _, non_embedding, _ = _params(config.architecture, size)
    flops = 6 * (non_embedding + VOCAB * size.d_model) + 6 * size.layers * config.seq_len * size.d_model
    if gpu:
        return (GPU_SECONDS_PER_TOKEN + flops / GPU_FLOPS_PER_SECOND) * GPU_PRECISION_FACTOR[precision]
    return (CPU_SECONDS_PER_TOKEN + flops / CPU_FLOPS_PER_SECOND) * CPU_PRECISION_FACTOR[precision]


def _checkpoints(config: LabConfig, recipe: Recipe) -> int:
    return len(set(config.checkpoints) | set(recipe.cooldown_from)) + len(recipe.cooldown_from) + (
        1 if recipe.average_last else 0)


def _evaluations(config: LabConfig) -> int:
    """Evaluation passes per measured checkpoint: the 16-bit one and one per quantized setting."""
    m = config.measure
    return 1 + sum(1 if method == "w8a8" else len(m.bits) * len(m.group_sizes) for method in m.methods)


def run_seconds(config: LabConfig, size: Size, recipe: Recipe, gpu: bool = False) -> float:
    """Estimated seconds of one run (training and measuring), on one CPU thread or one GPU."""
    train = run_tokens(config, recipe) * seconds_per_token(config, size, recipe.precision, gpu)
    # Evaluation is a forward pass (about a third of a training step's work) in fp32.
    forward = seconds_per_token(config, size, "fp32", gpu) / 3
    per_checkpoint = CHECKPOINT_OVERHEAD_S + forward * (
        config.measure.eval_tokens * _evaluations(config) + config.measure.calib_tokens)
    return train + _checkpoints(config, recipe) * per_checkpoint


def sweep_seconds(config: LabConfig, workers: int = 2, gpu: bool = False) -> float:
    """Estimated wall seconds of a sweep: runs spread over ``workers`` (longest runs first)."""
    runs = sorted((run_seconds(config, size, recipe, gpu) for size in config.sizes
                   for recipe in config.recipes for _seed in config.seeds), reverse=True)
    loads = [0.0] * max(1, workers)
    for seconds in runs:
        loads[loads.index(min(loads))] += seconds
    return max(loads) * (1.0 if gpu else CPU_SWEEP_FACTOR)
