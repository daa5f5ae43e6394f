"""Where a band's width comes from: the predictive variance of log QiD, split by source.

A new measurement's log QiD is ``log_mu(theta) + sigma * eps`` with ``theta`` the population
coefficients plus the row's family, size, quantizer and evaluation-set offsets. Over posterior
draws,
``log_mu`` is the sum of the contributions of, in order,

1. the population **coefficients** (population values and recipe shifts),
2. the **family** (a new family's draw from the population, or a known family's posterior;
   with its lineage's offset where the spec has one),
3. the **size** (the model's own offset within its family, where the spec has one: a size the
   fit has not seen draws it from the family's spread of sizes),
4. the **quantizer**, 5. the **evaluation set**

(contribution k = ``log_mu`` with the sources up to k added minus ``log_mu`` with those up to
k - 1, the later sources' offsets at zero). The variance of ``log_mu`` is split by conditioning
on them step by step: source k's share is how much the variance explained by the best linear
predictor of ``log_mu`` from contributions 1..k grows over that from 1..k-1 (a sequential
Gram-Schmidt projection over draws; every share is >= 0 and the five add up to the variance of
``log_mu``). A known family's offset is correlated with the population coefficients in the
posterior (together they are better known than either): the part they share cancels, and what
is left of the law's variance goes to the step that first explains it, usually the family. The
residual **noise** adds the mean over draws of ``sigma^2`` times the variance of the Normal
whose central ``prob`` interval equals the standardised residual's (a Student-t with
``nu <= 2`` has no variance; its band has a width).
Shares are these six parts over their sum, so they sum to 1.

The shares tell a user which measurement would narrow a band: a large ``share_family`` for a new
family says that measuring one's own model (making the family known) would.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
from scipy import stats

from bayesqid.constants import CI_PROB, EVAL_SET, FAMILY, LINEAGE, QUANTIZER, SIZE
from bayesqid.data.design import Design
from bayesqid.lang.effects import compose
from bayesqid.lang.spec import ModelSpec
from bayesqid.sampling.draws import chunks, row_offsets, row_sigma
from bayesqid.sampling.run import Run

#: Columns added by :func:`variance_shares`, in conditioning order but ``share_family`` first.
SHARE_COLUMNS: tuple[str, ...] = ("share_family", "share_coefficients", "share_size",
                                  "share_quantizer", "share_eval_set", "share_noise")

# Rows per chunk: each step holds a few (draws x rows) arrays per coefficient and group.
CHUNK = 200

#: Conditioning order: (column, the effect groups added at that step).
_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("share_coefficients", ()),
    ("share_family", (LINEAGE, FAMILY)),  # a family is its lineage's offset plus its own
    ("share_size", (SIZE,)),
    ("share_quantizer", (QUANTIZER,)),
    ("share_eval_set", (EVAL_SET,)),
)


def noise_variance_factor(spec: ModelSpec, prob: float = CI_PROB) -> float:
    """Variance of the Normal whose central ``prob`` interval equals the standardised residual's."""
    lik = spec.likelihood
    if lik.kind != "student_t":
        return 1.0
    q = (1 + prob) / 2
    return float((stats.t.ppf(q, lik.nu) / stats.norm.ppf(q)) ** 2)


def variance_shares(run: Run, design: Design, *, seed: int, prob: float = CI_PROB) -> pd.DataFrame:
    """Shares of the predictive variance of log QiD of every row of ``design`` (see module doc).

    Parameters
    ----------
    run : Run
        A fitted run.
    design : Design
        Rows coded with the run's levels (unseen levels drawn as :func:`predict` draws them).
    seed : int
        Seed of new-level draws (the seed :func:`bayesqid.questions.predict.predict` uses).
    prob : float
        Mass of the interval that defines the residual's Normal-equivalent variance.

    Returns
    -------
    DataFrame
        :data:`SHARE_COLUMNS`, one row per design row; each row sums to 1.
    """
    parts = [_shares(run, design.subset(np.arange(design.n_rows)[rows]), seed=seed, prob=prob)
             for rows in chunks(design.n_rows, CHUNK)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(SHARE_COLUMNS))


def _shares(run: Run, design: Design, *, seed: int, prob: float) -> pd.DataFrame:
    spec = run.spec
    values, offsets = row_offsets(run.idata, spec, design, seed=seed)
    law = spec.law_obj
    n = design.n_rows
    included = {k: v for k, v in offsets.items() if k[0].startswith("recipe:")}
    partial = [np.zeros((1, n))]
    for _column, groups in _STEPS:
        included.update({k: v for k, v in offsets.items() if k[0] in groups})
        theta = compose(spec, values, included)
        partial.append(np.asarray(law.log_mu(design.x, theta), dtype=float) * np.ones((1, n)))
    # Contributions of each step, centred over draws: (steps, draws, rows).
    contrib = np.stack([b - a for a, b in pairwise(partial)])
    contrib = contrib - contrib.mean(axis=1, keepdims=True)
    y = contrib.sum(axis=0)
    explained = _sequential_projections(contrib, y)
    steps = {column: explained[k] / contrib.shape[1] for k, (column, _g) in enumerate(_STEPS)}
    sigma = row_sigma(run.idata, spec, design, seed=seed) * np.ones((1, n))
    steps["share_noise"] = (sigma**2).mean(axis=0) * noise_variance_factor(spec, prob)
    total = sum(steps.values())
    return pd.DataFrame({c: steps[c] / total for c in SHARE_COLUMNS})


def _sequential_projections(columns: np.ndarray, y: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Sum of squares of ``y`` explained by each column beyond the ones before it, per row.

    ``columns`` is (k, draws, rows) and ``y`` (draws, rows), both centred over draws. Gram-Schmidt
    over draws, row by row in parallel: column k's part orthogonal to columns 1..k-1, and the
    squared projection of ``y`` on it. A column with (almost) nothing left explains nothing.
    """
    basis: list[np.ndarray] = []
    out = np.zeros((len(columns), y.shape[1]))
    for k, col in enumerate(columns):
        r = col.copy()
        for q in basis:
            r -= q * np.einsum("dr,dr->r", q, r)[None, :]
        norm = np.sqrt(np.einsum("dr,dr->r", r, r))
        scale = np.sqrt(np.einsum("dr,dr->r", col, col))
        ok = norm > tol * np.maximum(scale, 1e-300)
        q = np.where(ok[None, :], r / np.where(ok, norm, 1.0)[None, :], 0.0)
        basis.append(q)
        out[k] = np.einsum("dr,dr->r", q, y) ** 2
    return out
