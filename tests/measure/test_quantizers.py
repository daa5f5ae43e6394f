"""RTN and GPTQ against their definitions, and RTN against hqq's min-max quantizer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from bayesqid.measure.gptq import gptq_quantize, prepare, reconstruction_error  # noqa: E402
from bayesqid.measure.outliers import kurtosis  # noqa: E402
from bayesqid.measure.rtn import grid_params, per_token_quantize, rtn_quantize  # noqa: E402


def _weights(rows: int = 24, cols: int = 100, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[:, 7] *= 8  # an outlier column, as trained weights have
    return w


def _groups(cols: int, group_size: int | None):
    size = cols if group_size is None else group_size
    return [slice(i, min(i + size, cols)) for i in range(0, cols, size)]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group_size", [None, 32])  # 100 columns: three groups of 32 and one of 4
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_rtn_lies_on_its_grid_within_half_a_step(bits, group_size, symmetric):
    w = _weights()
    q = rtn_quantize(w, bits, group_size, symmetric=symmetric)
    assert q.shape == w.shape and q.dtype == w.dtype
    for cols in _groups(w.shape[1], group_size):
        scale, zero = grid_params(w[:, cols], bits, symmetric)
        codes = q[:, cols] / scale + zero
        assert torch.allclose(codes, codes.round(), atol=1e-3)  # on the grid scale * (q - zero)
        assert codes.round().min() >= 0 and codes.round().max() <= 2**bits - 1
        assert torch.all(zero == zero.round()) and torch.all((zero >= 0) & (zero <= 2**bits - 1))
        # Half a step, up to float32 rounding of values near 2**bits steps from zero.
        assert torch.all((q[:, cols] - w[:, cols]).abs() <= scale / 2 + 1e-6 * w.abs().max())


def test_rtn_keeps_zero_and_the_dtype():
    w = _weights().to(torch.bfloat16)
    w[3] = 0
    q = rtn_quantize(w, 3, 32)
    assert q.dtype == torch.bfloat16 and torch.all(q[3] == 0)


def test_rtn_matches_hqq_min_max_quantizer():
    hqq = pytest.importorskip("hqq.core.quantize")
    w = _weights(cols=128)
    w[:, ::32] = w[:, ::32].abs() + 0.01  # every group holds both signs: hqq's range then
    w[:, 1::32] = -w[:, 1::32].abs() - 0.01  # includes 0 like GPTQ's grid
    for bits in (2, 3, 4, 8):
        codes, meta = hqq.Quantizer.quantize(w, nbits=bits, channel_wise=True, group_size=32, optimize=False,
                                             round_zero=True, axis=1, bitpack=False, device="cpu")
        meta["compute_dtype"] = torch.float32
        theirs = hqq.Quantizer.dequantize(codes, meta)
        ours = rtn_quantize(w, bits, 32)
        step = (w.reshape(-1, 32).amax(1) - w.reshape(-1, 32).amin(1)).max() / (2**bits - 1)
        differ = (theirs - ours).abs() > 1e-5
        # hqq multiplies by 1/scale where we divide by scale: a value on a rounding boundary may
        # land one step apart, nothing more.
        assert differ.float().mean() < 1e-3
        assert torch.all((theirs - ours).abs() <= step * 1.001)


@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_with_a_diagonal_hessian_is_rtn(group_size, act_order):
    w = _weights()
    hessian = torch.diag(torch.linspace(0.5, 2.0, w.shape[1]))
    prepared = prepare(hessian, act_order=act_order)
    for bits in (2, 3, 4):
        expected = rtn_quantize(w, bits, group_size)
        assert torch.allclose(gptq_quantize(w, prepared, bits, group_size, blocksize=16), expected, atol=1e-6)


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("group_size", [None, 32])
def test_gptq_reconstructs_correlated_inputs_better_than_rtn(act_order, group_size):
    g = torch.Generator().manual_seed(1)
    mixing = torch.randn(64, 64, generator=g)
    x = torch.randn(2048, 64, generator=g) @ mixing  # correlated features
    hessian = 2 * x.T @ x / x.shape[0]
    w = _weights(rows=32, cols=64)
    prepared = prepare(hessian, act_order=act_order)
    for bits in (3, 4):
        gptq = reconstruction_error(w, gptq_quantize(w, prepared, bits, group_size), hessian)
        rtn = reconstruction_error(w, rtn_quantize(w, bits, group_size), hessian)
        assert gptq < 0.8 * rtn
        # The Hessian form equals the direct ||W X - W_hat X||^2 / n.
        direct = ((x @ (w - rtn_quantize(w, bits, group_size)).T) ** 2).sum() / x.shape[0]
        assert rtn == pytest.approx(float(direct), rel=1e-4)


def test_gptq_zeroes_dead_inputs_and_survives_a_singular_hessian():
    w = _weights(cols=16)
    x = torch.randn(4, 16)  # rank 4 < 16
    x[:, 5] = 0
    hessian = 2 * x.T @ x / 4
    q = gptq_quantize(w, prepare(hessian), 4)
    assert torch.all(q[:, 5] == 0) and torch.isfinite(q).all()


def test_per_token_activations_have_one_scale_per_token():
    x = torch.randn(3, 5, 48)
    x[0, 0] *= 100  # an outlier token must not coarsen the others
    q = per_token_quantize(x, 8)
    assert q.shape == x.shape
    amax = x.abs().amax(-1, keepdim=True)
    assert torch.all((q - x).abs() <= amax / 127.5 / 2 * 1.0001 + 1e-7)


def test_kurtosis_of_a_gaussian_is_three():
    sample = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    assert kurtosis(sample) == pytest.approx(3, abs=0.05)
