"""The quantization methods ``bayesqid measure`` runs: one small object each.

A method turns a layer's 16-bit weight into its fake-quantized weight at a bit width and
group size; W8A8 also quantizes the layers' inputs while it is evaluated. Option names and row
labels are :data:`bayesqid.measure.plan.METHOD_LABELS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from bayesqid.measure.gptq import Prepared, gptq_quantize
from bayesqid.measure.plan import METHOD_LABELS
from bayesqid.measure.rtn import rtn_quantize

#: ``quantize(weight, bits, group_size, prepared)``: the dequantized weight.
Quantize = Callable[[torch.Tensor, int, "int | None", "Prepared | None"], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """A weight quantizer, and what it needs.

    Parameters
    ----------
    name : str
        Option name (``--method``).
    label : str
        Name in rows (``method`` column).
    quantize : callable
        ``quantize(weight, bits, group_size, prepared) -> weight``; ``prepared`` is the layer's
        GPTQ factorisation when ``needs_hessian``, else None.
    needs_hessian : bool
        Whether calibration must collect Hessians.
    activation_bits : int or None
        Per-token dynamic quantization of linear-layer inputs during evaluation.
    """

    name: str
    label: str
    quantize: Quantize
    needs_hessian: bool = False
    activation_bits: int | None = None


def _rtn(symmetric: bool, weight: torch.Tensor, bits: int, group_size: int | None,
         _: Prepared | None) -> torch.Tensor:
    return rtn_quantize(weight, bits, group_size, symmetric=symmetric)


def _gptq(symmetric: bool, weight: torch.Tensor, bits: int, group_size: int | None,
          prepared: Prepared | None) -> torch.Tensor:
    return gptq_quantize(weight, prepared, bits, group_size, symmetric=symmetric)


#: Every method, by option name. W8A8 (Ahmadian et al. 2023): symmetric 8-bit per-channel
#: weights and symmetric per-token dynamic 8-bit activations at every quantized layer's input.
METHODS: dict[str, Method] = {
    "rtn": Method("rtn", METHOD_LABELS["rtn"], partial(_rtn, False)),
    "rtn-sym": Method("rtn-sym", METHOD_LABELS["rtn-sym"], partial(_rtn, True)),
    "gptq": Method("gptq", METHOD_LABELS["gptq"], partial(_gptq, False), needs_hessian=True),
    "gptq-sym": Method("gptq-sym", METHOD_LABELS["gptq-sym"], partial(_gptq, True), needs_hessian=True),
    "w8a8": Method("w8a8", METHOD_LABELS["w8a8"], partial(_rtn, True), activation_bits=8),
}
