"""Which layers are quantized, their weights, and what their inputs look like on calibration text.

One forward pass of the 16-bit model over the calibration windows collects, for every
quantized linear layer, the GPTQ Hessian ``H = 2 X X^T / n`` of its inputs and the statistics
of their magnitudes (largest ``|x|`` and median ``|x|``). These Hessians are "one-shot": all
layers see the inputs of the unquantized model, rather than of a model whose earlier layers
are already quantized (the sequential variant of the GPTQ paper). That is what lets one
Hessian per layer, computed once per checkpoint, serve every bit width and group size.

Memory: one float32 ``in x in`` matrix per quantized layer, held together.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers.pytorch_utils import Conv1D

from bayesqid.measure.rtn import per_token_quantize

#: At most this many activation magnitudes per batch enter the median (a strided subsample).
MEDIAN_SAMPLE = 1 << 22


def quantizable_linears(model: torch.nn.Module, quantize_head: bool = False) -> dict[str, torch.nn.Module]:
    """The linear layers whose weights are quantized, by module name.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers causal LM.
    quantize_head : bool, optional
        Include the output head. A head tied to the input embedding is untied first (a copy
        of the shared tensor), so that quantizing it leaves the embedding in 16 bits.

    Returns
    -------
    dict of str to torch.nn.Module
        ``nn.Linear`` and GPT-2 style ``Conv1D`` modules, in model order.
    """
    head = model.get_output_embeddings()
    if quantize_head and head is not None:
        inputs = model.get_input_embeddings()
        if inputs is not None and head.weight is inputs.weight:
            head.weight = torch.nn.Parameter(head.weight.detach().clone())
    return {
        name: module for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear | Conv1D) and (quantize_head or module is not head)
    }


def get_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight as ``(out_features, in_features)`` (Conv1D stores it transposed)."""
    return module.weight.data.t() if isinstance(module, Conv1D) else module.weight.data


def set_weight(module: torch.nn.Module, weight: torch.Tensor) -> None:
    """Copy an ``(out_features, in_features)`` weight into the module, in place."""
    get_weight(module).copy_(weight)


@dataclass
class Calibration:
    """Per-layer statistics of the 16-bit model's linear-layer inputs on calibration text.

    Parameters
    ----------
    hessians : dict of str to torch.Tensor
        ``2 X X^T / n`` per layer (empty unless asked for).
    act_max : dict of str to float
        Largest input magnitude per layer.
    act_median : dict of str to float
        Median input magnitude per layer (the median of per-batch medians).
    tokens : int
        Calibration tokens seen.
    """

    hessians: dict[str, torch.Tensor] = field(default_factory=dict)
    act_max: dict[str, float] = field(default_factory=dict)
    act_median: dict[str, float] = field(default_factory=dict)
    tokens: int = 0


@torch.inference_mode()
def calibrate(
    model: torch.nn.Module,
    linears: dict[str, torch.nn.Module],
    windows: torch.Tensor,
    *,
    batch_size: int,
    hessians: bool,
) -> Calibration:
    """Run the model over calibration windows and collect its layers' input statistics.

    Parameters
    ----------
    model : torch.nn.Module
        The unquantized model.
    linears : dict of str to torch.nn.Module
        Layers to watch (:func:`quantizable_linears`).
    windows : torch.Tensor
        Token ids ``(n_windows, seq_len)`` on the model's device.
    batch_size : int
        Windows per forward pass.
    hessians : bool
        Also accumulate Hessians (only GPTQ needs them; they cost ``in^2`` per token).

    Returns
    -------
    Calibration
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    maxima: dict[str, float] = {}
    medians: dict[str, list[float]] = {}

    def hook(name: str):  # type: ignore[no-untyped-def]
        def record(module: torch.nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            magnitude = x.abs().flatten()
            maxima[name] = max(maxima.get(name, 0.0), float(magnitude.max()))
            step = max(1, magnitude.numel() // MEDIAN_SAMPLE)
            medians.setdefault(name, []).append(float(magnitude[::step].median()))
            if hessians:
                if name not in sums:
                    sums[name] = torch.zeros(x.shape[1], x.shape[1], device=x.device)
                    counts[name] = 0
                sums[name].addmm_(x.t(), x)
                counts[name] += x.shape[0]
        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in linears.items()]
    try:
        for start in range(0, windows.shape[0], batch_size):
            model(input_ids=windows[start:start + batch_size], use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return Calibration(
        hessians={name: 2 * total / counts[name] for name, total in sums.items()},
        act_max=maxima,
        act_median={name: float(torch.tensor(values).median()) for name, values in medians.items()},
        tokens=int(windows.numel()),
    )


@contextlib.contextmanager
def quantized_inputs(linears: dict[str, torch.nn.Module], bits: int = 8) -> Iterator[None]:
    """Within the block, the inputs of these layers are fake-quantized per token (the A8 of W8A8).

    Parameters
    ----------
    linears : dict of str to torch.nn.Module
        Layers whose inputs are quantized.
    bits : int, optional
        Activation bit width.
    """
    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        return (per_token_quantize(args[0], bits), *args[1:])

    handles = [module.register_forward_pre_hook(hook) for module in linears.values()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
