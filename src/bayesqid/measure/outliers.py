"""Per-checkpoint outlier statistics: activation outliers and heavy-tailed weights.

Large activation outliers (Dettmers et al. 2022; Ahmadian et al. 2023) and heavy-tailed
weights are what make low-bit quantization hard, so every measured row carries them:

* ``act_outlier_max``: over layers, the largest ``max|x| / median|x|`` of a linear layer's
  inputs on the calibration text; ``act_outlier_mean``: the mean of that ratio over layers;
* ``weight_kurtosis_max`` and ``weight_kurtosis_mean``: Pearson kurtosis
  ``E[(w - mean)^4] / var^2`` (3 for a Gaussian) of each quantized layer's weights.
"""

from __future__ import annotations

import math

import torch

from bayesqid.measure.activations import Calibration

#: Columns added to every row, in order.
OUTLIER_COLUMNS: tuple[str, ...] = (
    "act_outlier_max", "act_outlier_mean", "weight_kurtosis_max", "weight_kurtosis_mean",
)  # fmt: skip


def kurtosis(weight: torch.Tensor) -> float:
    """Pearson kurtosis of all entries of a tensor (NaN for a constant tensor)."""
    w = weight.detach().double().flatten()
    centred = w - w.mean()
    var = centred.pow(2).mean()
    return float(centred.pow(4).mean() / var**2) if var > 0 else math.nan


def outlier_stats(calibration: Calibration, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """Summarise a checkpoint's activation outliers and weight tails.

    Parameters
    ----------
    calibration : Calibration
        Input statistics of the quantized layers.
    weights : dict of str to torch.Tensor
        The quantized layers' 16-bit weights.

    Returns
    -------
    dict of str to float
        The :data:`OUTLIER_COLUMNS`; a ratio whose median is 0 is left out of the summary.
    """
    ratios = [
        calibration.act_max[name] / median
        for name, median in calibration.act_median.items() if median > 0
    ]
    kurt = [k for k in (kurtosis(w) for w in weights.values()) if math.isfinite(k)]
    return {
        "act_outlier_max": max(ratios, default=math.nan),
        "act_outlier_mean": sum(ratios) / len(ratios) if ratios else math.nan,
        "weight_kurtosis_max": max(kurt, default=math.nan),
        "weight_kurtosis_mean": sum(kurt) / len(kurt) if kurt else math.nan,
    }
