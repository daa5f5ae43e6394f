"""GPTQ (Frantar et al. 2022, arXiv 2210.17323): weight rounding that compensates its errors.

For a linear layer with weight ``W`` (out x in) and calibration inputs ``X`` (in x n), GPTQ
quantizes the columns of ``W`` one at a time and spreads each column's rounding error over the
columns not yet quantized, weighted by the inverse Hessian of ``||W X - W_hat X||^2``,
``H = 2 X X^T / n``. As in the reference implementation:

* dead inputs (``H_ii = 0``) get ``H_ii = 1`` and zero weights;
* damping adds ``percdamp * mean(diag H)`` to the diagonal;
* the updates use the upper Cholesky factor of ``H^-1`` and are applied lazily in blocks of
  ``blocksize`` columns;
* with ``act_order`` columns go in order of decreasing ``H_ii``; grid parameters are then
  taken from the original weights of each natural group ("static groups"), so every group
  keeps one scale in the usual memory layout;
* without ``act_order`` a group's grid is fixed when its first column is reached, from the
  weights as updated so far (the reference reads the values its current block started with,
  which differ only when groups are smaller than blocks); per-channel grids come from the
  original rows.

The grid is :mod:`bayesqid.measure.rtn`'s, so with a diagonal ``H`` and no act-order GPTQ returns
exactly RTN. :func:`prepare` does the ``O(in^3)`` factorisation once per layer; the result is
reused for every bit width and group size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bayesqid.measure.rtn import check_bits, grid_params, quantize_dequantize

#: Damping as a fraction of the mean Hessian diagonal (the reference default).
PERCDAMP = 0.01
#: Columns per lazy batch update (the reference default).
BLOCKSIZE = 128


@dataclass(frozen=True)
class Prepared:
    """A layer's Hessian, ready for quantization at any bit width.

    Parameters
    ----------
    hinv : torch.Tensor
        Upper Cholesky factor of the damped inverse Hessian, in quantization order (float32).
    perm : torch.Tensor or None
        Column order (act-order), or None for the natural order.
    dead : torch.Tensor
        Boolean mask of inputs that were never active (their weights are set to 0).
    """

    hinv: torch.Tensor
    perm: torch.Tensor | None
    dead: torch.Tensor


def prepare(hessian: torch.Tensor, *, percdamp: float = PERCDAMP, act_order: bool = False) -> Prepared:
    """Damp, invert and factor a layer's Hessian once.

    Parameters
    ----------
    hessian : torch.Tensor
        ``2 X X^T / n``, shape ``(in, in)``.
    percdamp : float, optional
        Damping fraction of the mean diagonal. Multiplied by 10 (up to 4 times) if the damped
        matrix is still not positive definite, as happens with rank-deficient tiny data.
    act_order : bool, optional
        Quantize columns in order of decreasing Hessian diagonal.

    Returns
    -------
    Prepared
    """
    H = hessian.detach().float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    perm = None
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        H = H[perm][:, perm]
    eye = torch.eye(H.shape[0], device=H.device)
    mean_diag = torch.mean(torch.diag(H))
    for attempt in range(5):
        damped = H + (percdamp * 10**attempt) * mean_diag * eye
        L, info = torch.linalg.cholesky_ex(damped)
        if info == 0:
            break
    else:
        raise ValueError("GPTQ: the damped Hessian is not positive definite")
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    return Prepared(hinv, perm, dead)


def gptq_quantize(
    weight: torch.Tensor,
    prepared: Prepared,
    bits: int,
    group_size: int | None = None,
    *,
    symmetric: bool = False,
    blocksize: int = BLOCKSIZE,
) -> torch.Tensor:
    """Fake-quantize a weight matrix with GPTQ.

    Parameters
    ----------
    weight : torch.Tensor
        Shape ``(out_features, in_features)``.
    prepared : Prepared
        From :func:`prepare` on this layer's Hessian.
    bits : int
        Bit width, 2-8.
    group_size : int or None, optional
        Input columns per scale; None for per output channel.
    symmetric : bool, optional
        Symmetric grid instead of min-max.
    blocksize : int, optional
        Columns per lazy batch update.

    Returns
    -------
    torch.Tensor
        The dequantized weight, same shape, dtype and device as ``weight``.
    """
    check_bits(bits)
    W = weight.detach().float().clone()
    cols = W.shape[1]
    W[:, prepared.dead] = 0
    if group_size is not None and group_size >= cols:
        group_size = None
    static: list[tuple[torch.Tensor, torch.Tensor]] = []
    if group_size is None:
        scale, zero = grid_params(W, bits, symmetric)
    elif prepared.perm is not None:
        # Static groups: one grid per natural group of the original weights.
        static = [grid_params(W[:, i:i + group_size], bits, symmetric) for i in range(0, cols, group_size)]
    perm = prepared.perm
    if perm is not None:
        W = W[:, perm]
    hinv = prepared.hinv
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            w = W1[:, i]
            d = Hinv1[i, i]
            if group_size is not None:
                if perm is not None:
                    scale, zero = static[int(perm[col]) // group_size]
                elif col % group_size == 0:
                    # The group's grid from its weights as updated so far (reference GPTQ).
                    group = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :group_size]
                    scale, zero = grid_params(group, bits, symmetric)
            q = quantize_dequantize(w.unsqueeze(1), scale, zero, bits).flatten()
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(hinv[i1:i2, i2:])
    if perm is not None:
        Q = Q[:, torch.argsort(perm)]
    return Q.to(weight.dtype)


def reconstruction_error(weight: torch.Tensor, quantized: torch.Tensor, hessian: torch.Tensor) -> float:
    """Layer-wise error ``||W X - W_hat X||^2 / n = tr(D H D^T) / 2``, with ``D = W - W_hat``.

    Parameters
    ----------
    weight, quantized : torch.Tensor
        Original and quantized weights ``(out, in)``.
    hessian : torch.Tensor
        ``2 X X^T / n`` of the layer's calibration inputs.

    Returns
    -------
    float
        Mean over calibration tokens of the squared output error.
    """
    delta = (weight.float() - quantized.float()).double()
    return float(torch.einsum("ij,jk,ik->", delta, hessian.double(), delta) / 2)
