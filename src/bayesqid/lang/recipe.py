"""Recipe covariates: how a checkpoint was trained, as shifts of law coefficients.

A spec may let recipe covariates shift law coefficients, e.g. ``beta`` by whether the measured
checkpoint ends a learning-rate decay (Catalan-Tatjer et al. 2025: QiD tracks LR decay, so a
checkpoint sweep's D exponent mixes tokens with annealing). Each covariate is encoded as a few
numeric columns against a baseline, and each (coefficient, column) pair gets one population
shift ``d_<param>_<column>``:

    theta_i = theta + sum over recipe columns c of  d_theta_c * x_c[i]

An unknown value is never dropped or imputed: it is an explicit level with its own shift
(``annealed_unknown``, ``lr_frac_unknown``...), learned from the rows whose recipe is unknown.
A prediction grid without recipe columns therefore asks about a model of unknown recipe.
"""

from __future__ import annotations

#: Recipe covariates and their encoded columns. The baseline of each (all columns zero):
#: annealed false; lr_frac 0 (known); train_precision bf16; lr_schedule cosine; weight decay 0;
#: post_trained false (a base model); dropout 0; no gradient clipping; peak learning rate 1e-3
#: (``log10_peak_lr`` is log10(peak_lr / 1e-3), decades above it); weights not averaged
#: (``averaged``: the mean of 2 or more last checkpoints).
RECIPE_COVARIATES: dict[str, tuple[str, ...]] = {
    "annealed": ("annealed_true", "annealed_unknown"),
    "lr_frac": ("lr_frac", "lr_frac_unknown"),
    "train_precision": ("precision_fp32", "precision_fp16", "precision_fp8", "precision_unknown"),
    "lr_schedule": ("schedule_linear", "schedule_wsd", "schedule_constant", "schedule_unknown"),
    "weight_decay": ("weight_decay", "weight_decay_unknown"),
    "post_trained": ("post_trained_true", "post_trained_unknown"),
    "dropout": ("dropout", "dropout_unknown"),
    "grad_clip": ("grad_clipped", "grad_clip_unknown"),
    "peak_lr": ("log10_peak_lr", "peak_lr_unknown"),
    "average_last": ("averaged", "average_last_unknown"),
}

#: Peak learning rate of the baseline (``log10_peak_lr`` = 0).
PEAK_LR_BASELINE = 1e-3

#: Every encoded column, in registry order.
RECIPE_FEATURES: tuple[str, ...] = tuple(c for cols in RECIPE_COVARIATES.values() for c in cols)


def shift_name(param: str, column: str) -> str:
    """Variable name of the shift of ``param`` per unit of the encoded recipe ``column``."""
    return f"d_{param}_{column}"
