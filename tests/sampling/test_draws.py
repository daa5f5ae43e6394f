"""The cell-wise fast path of ``row_log_mu`` for linear laws equals the generic per-row path."""

from __future__ import annotations

import numpy as np

from bayesqid.data.design import build_design
from bayesqid.sampling.draws import n_samples, row_log_mu, row_theta


def test_linear_fast_path_matches_generic_path(mock_run, reference):
    grid = reference.frame.sample(400, replace=True, random_state=2).reset_index(drop=True)
    grid.loc[::7, "family"] = "new A"
    grid.loc[::11, "family"] = "new B"
    grid.loc[::5, "method"] = "unseen method"
    design = build_design(grid, mock_run.levels)
    assert mock_run.spec.law_obj.is_linear
    fast = row_log_mu(mock_run.idata, mock_run.spec, design, seed=3)
    theta = row_theta(mock_run.idata, mock_run.spec, design, seed=3)
    generic = np.asarray(mock_run.spec.law_obj.log_mu(design.x, theta)) * np.ones(
        (n_samples(mock_run.idata), design.n_rows))
    np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)
