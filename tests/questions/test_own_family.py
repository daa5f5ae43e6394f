"""Joining one's own family: predictions at 10x its largest D, as a known family, checked for
coverage on data simulated from a known law.

The simulated world: Ouyang's law with family effects on every coefficient, quantizer and
evaluation-set intercept offsets and Student-t residuals, on a small design subsampled from the
reference data plus one user family measured at two checkpoints and three sizes. The user
family's rows at 10x its largest D are held out; the fit (reference-like rows + the user's
rows) predicts them as a known family. Slow: several real fits.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesqid as bq
from bayesqid.constants import FAMILY
from bayesqid.data.dataset import Dataset
from bayesqid.data.design import build_design
from bayesqid.errors import ConvergenceWarning
from bayesqid.lang.laws import OUYANG, published_ouyang

pytestmark = pytest.mark.slow

FAMILY_SD = {"log_k": 0.5, "alpha": 0.05, "beta": 0.1, "gamma": 0.3}
SIGMA = 0.15
SAMPLER = bq.SamplerConfig(sampler="nutpie", chains=2, tune=400, draws=300, seed=11)
SIZES, CHECKPOINTS, BITS = (1.6e8, 4e8, 1.6e9), (1e11, 3e11), (3, 4)


def world(reference: Dataset, seed: int) -> tuple[Dataset, pd.DataFrame]:
    """(fitted data, held-out rows of the user family at 10x D with their true law mean)."""
    rng = np.random.default_rng(seed)
    base = bq.tiny_design(reference, families=4, quantizers=2, max_rows=80).frame
    user = bq.grid(family="mine", params=SIZES, tokens=CHECKPOINTS, bits=BITS)
    held = bq.grid(family="mine", params=SIZES, tokens=10 * max(CHECKPOINTS), bits=BITS)
    rows = pd.concat([base, user, held], ignore_index=True)
    for col in ("model", "source"):
        rows[col] = rows[col].fillna("")
    rows["group_size"] = rows["group_size"].astype("Int64")
    design = build_design(rows)
    truth = published_ouyang()
    theta = {p: np.full(len(rows), truth[p]) for p in OUYANG.param_names}
    for p, sd in FAMILY_SD.items():
        theta[p] = theta[p] + rng.normal(0.0, sd, len(design.levels[FAMILY]))[design.codes[FAMILY]]
    log_mu = OUYANG.log_mu(design.x, theta)
    qid = np.exp(log_mu + SIGMA * rng.standard_t(4, len(rows)))
    rows["qid"] = qid
    n_fit = len(base) + len(user)
    fitted = bq.validate(rows.iloc[:n_fit])
    held_out = rows.iloc[n_fit:].assign(true_mean=np.exp(log_mu[n_fit:])).reset_index(drop=True)
    return Dataset(fitted, f"<simulated world {seed}>", ()), held_out


def test_known_family_bands_cover_the_truth_at_ten_times_its_tokens(reference):
    """Four simulated worlds. In each, the six held-out cells share one family: they are missed
    together or not at all, so the unit of coverage is the world. A calibrated 90% band misses
    a world with probability ~0.1, three or four of four with probability < 0.004."""
    missed_mean, missed_pred = 0, 0
    for seed in (1, 2, 3, 4):
        data, held = world(reference, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            run = bq.fit(bq.load_spec("ouyang"), data, SAMPLER)
        assert run.diagnostics.divergences == 0
        grid = held[["family", "params", "tokens", "bits", "method", "group_size", "eval_set"]]
        known = bq.predict(run, grid)
        new = bq.predict(run, grid.assign(family="unseen family"))
        assert (known["new_levels"] == "").all()
        inside_mean = (known["mean_lower"] <= held["true_mean"]) & (held["true_mean"] <= known["mean_upper"])
        inside_pred = (known["pred_lower"] <= held["qid"]) & (held["qid"] <= known["pred_upper"])
        missed_mean += inside_mean.mean() < 0.5
        missed_pred += inside_pred.mean() < 0.5
        # Joining the family's own data buys sharpness: narrower than a new family's band.
        width_known = np.log(known["pred_upper"] / known["pred_lower"])
        width_new = np.log(new["pred_upper"] / new["pred_lower"])
        assert (width_known < width_new).all()
    assert missed_mean <= 2 and missed_pred <= 2, (missed_mean, missed_pred)
