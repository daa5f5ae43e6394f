"""Round-to-nearest (RTN) weight quantization on a uniform integer grid, fake-quantized.

The grid is the one of GPTQ's reference quantizer (Frantar et al. 2022), so RTN and GPTQ
differ only in how they round. For a row (or group) ``x`` and ``b`` bits, ``maxq = 2**b - 1``:

* asymmetric (min-max): the range ``[min(x, 0), max(x, 0)]`` is cut into ``maxq`` steps,
  ``scale = (xmax - xmin) / maxq`` and the integer zero point ``zero = round(-xmin / scale)``
  lies in ``[0, maxq]``, so 0 is always exactly representable;
* symmetric: ``xmax = max|x|``, ``xmin = -xmax``, ``zero = 2**(b-1)``. (The reference keeps
  ``xmin = 0`` for rows with no negative value, which then clips them to half the range;
  here the range is always symmetric.)

A value is quantized as ``q = clamp(round(x / scale) + zero, 0, maxq)`` and dequantized as
``scale * (q - zero)``: every result lies on that grid and is within ``scale / 2`` of ``x``.
Grid parameters come from contiguous groups of ``group_size`` input columns (the last group may
be shorter), or from whole rows (per output channel) when ``group_size`` is None. Arithmetic is
in float32; results are cast back to the weight's dtype.
"""

from __future__ import annotations

import torch

#: Weight bit widths the quantizers accept.
BITS_RANGE: tuple[int, int] = (2, 8)


def grid_params(x: torch.Tensor, bits: int, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of each row of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        Shape ``(rows, n)``.
    bits : int
        Bit width.
    symmetric : bool, optional
        Symmetric grid (zero point ``2**(bits-1)``) instead of min-max.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``scale`` and ``zero``, float32 of shape ``(rows, 1)``; ``zero`` holds integers.
    """
    maxq = 2**bits - 1
    x = x.float()
    zeros = torch.zeros(x.shape[0], device=x.device)
    xmin = torch.minimum(x.min(dim=1).values, zeros)
    xmax = torch.maximum(x.max(dim=1).values, zeros)
    if symmetric:
        xmax = torch.maximum(-xmin, xmax)
        xmin = -xmax
    empty = (xmin == 0) & (xmax == 0)  # an all-zero row: any positive scale reproduces it
    xmin = torch.where(empty, -1.0, xmin)
    xmax = torch.where(empty, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if symmetric else torch.round(-xmin / scale)
    return scale.unsqueeze(1), zero.unsqueeze(1)


def quantize_dequantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Round ``x`` onto the grid ``scale * (q - zero)``, ``q`` integer in ``[0, 2**bits - 1]`` (float32)."""
    q = torch.clamp(torch.round(x.float() / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero)


def check_bits(bits: int) -> None:
    """Raise ValueError unless ``bits`` is an integer in :data:`BITS_RANGE`."""
    low, high = BITS_RANGE
    if isinstance(bits, bool) or int(bits) != bits or not low <= bits <= high:
        raise ValueError(f"bits must be an integer in {low}..{high}, got {bits!r}")


def rtn_quantize(
    weight: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = False
) -> torch.Tensor:
    """Fake-quantize a weight matrix with round-to-nearest.

    Parameters
    ----------
    weight : torch.Tensor
        Shape ``(out_features, in_features)``; groups run along ``in_features``.
    bits : int
        Bit width, 2-8.
    group_size : int or None, optional
        Input columns per scale; None for one scale per output channel (row).
    symmetric : bool, optional
        Symmetric grid instead of asymmetric min-max.

    Returns
    -------
    torch.Tensor
        The dequantized weight, same shape, dtype and device as ``weight``.
    """
    check_bits(bits)
    w = weight.detach().float()
    rows, cols = w.shape
    if group_size is None or group_size >= cols:
        scale, zero = grid_params(w, bits, symmetric)
        return quantize_dequantize(w, scale, zero, bits).to(weight.dtype)
    out = torch.empty_like(w)
    full = cols - cols % group_size
    if full:
        # All full groups at once: (rows, cols) -> (rows * groups, group_size).
        g = w[:, :full].reshape(-1, group_size)
        scale, zero = grid_params(g, bits, symmetric)
        out[:, :full] = quantize_dequantize(g, scale, zero, bits).reshape(rows, full)
    if full < cols:
        tail = w[:, full:]
        scale, zero = grid_params(tail, bits, symmetric)
        out[:, full:] = quantize_dequantize(tail, scale, zero, bits)
    return out.to(weight.dtype)


def per_token_quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Dynamic symmetric fake quantization of activations, one scale per token (last axis).

    Parameters
    ----------
    x : torch.Tensor
        Activations ``(..., features)``.
    bits : int, optional
        Bit width (8 for W8A8).

    Returns
    -------
    torch.Tensor
        Same shape and dtype.
    """
    flat = x.reshape(-1, x.shape[-1]).float()
    scale, zero = grid_params(flat, bits, symmetric=True)
    return quantize_dequantize(flat, scale, zero, bits).reshape(x.shape).to(x.dtype)
