"""Prior sensitivity of a fitted run by power-scaling (Kallioinen et al. 2023, arXiv 2107.14054).

Power-scaling raises the prior (or the likelihood) to a power near 1 and measures, with
importance weights on the existing draws, how far each posterior quantity moves (ArviZ's
``psens``: a cumulative Jensen-Shannon distance per unit of log power). No refit is needed.

ArviZ needs the log prior of every draw: it is computed here in numpy from the spec's priors
on the variables the model samples in its documented form, population coefficients, effect
scales ``sd_<group>_<param>``, standardised effects ``z_<group>_<param>`` ~ N(0, 1) and
``sigma``. The 100T table (law-mean log QiD at 1e14 tokens, new family) is added to the
posterior as ``log_qid_1e14`` so its sensitivity is reported beside the coefficients.

Reading the table (ArviZ's and priorsense's convention): a sensitivity of 0.05 or more is
notable. Prior- and likelihood-sensitive: possible prior-data conflict; prior-sensitive only:
a strong prior or a weak likelihood; otherwise (``-``) the data, not the prior, decide.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from bayesqid.data.design import build_design
from bayesqid.errors import RunError
from bayesqid.lang.effects import sd_name, z_name
from bayesqid.questions.predict import default_grid
from bayesqid.sampling.draws import row_log_mu
from bayesqid.sampling.run import Run

#: ArviZ's threshold of a notable power-scaling sensitivity.
THRESHOLD = 0.05
#: Name of the derived 100T variable added to the posterior, and of its dimension.
TABLE_VAR = "log_qid_1e14"
TABLE_DIM = "table_row"


def log_prior(run: Run) -> xr.Dataset:
    """Log prior density of every posterior draw, one variable per prior term, dims (chain, draw)."""
    spec, post = run.spec, run.idata.posterior

    def term(name: str, dist: object) -> xr.DataArray:
        values = post[name]
        logp = xr.apply_ufunc(dist.logpdf, values)  # type: ignore[attr-defined]
        extra = [d for d in logp.dims if d not in ("chain", "draw")]
        return logp.sum(extra) if extra else logp

    terms = {p: term(p, spec.prior(p).to_scipy()) for p in (*spec.law_obj.param_names, *spec.recipe_shifts)}
    for eff in spec.effects:
        for p in eff.params:
            terms[sd_name(eff.group, p)] = term(sd_name(eff.group, p), spec.effect_sd(eff, p).to_scipy())
            # Student-t offsets: the z's marginal prior (their mixing variances integrated out).
            nu = eff.nu_of(p)
            z_prior = stats.norm(0.0, 1.0) if nu is None else stats.t(nu)
            terms[z_name(eff.group, p)] = term(z_name(eff.group, p), z_prior)
    terms["sigma"] = term("sigma", spec.likelihood.sigma.to_scipy())
    by = spec.likelihood.sigma_by
    if by is not None:
        terms[sd_name(by, "log_sigma")] = term(sd_name(by, "log_sigma"), spec.likelihood.sigma_sd.to_scipy())
        terms[z_name(by, "log_sigma")] = term(z_name(by, "log_sigma"), stats.norm(0.0, 1.0))
    return xr.Dataset(terms)


def table_labels(grid: pd.DataFrame) -> list[str]:
    """Labels of the 100T table rows, ``N=7e+09, P=3``."""
    return [f"N={n:g}, P={int(b)}" for n, b in zip(grid["params"], grid["bits"], strict=True)]


def with_sensitivity_groups(run: Run) -> az.InferenceData:
    """A copy of the run's InferenceData with a ``log_prior`` group and the 100T table as a
    posterior variable (``log_qid_1e14`` over ``table_row``)."""
    if "log_likelihood" not in run.idata.groups():
        raise RunError("the run has no log_likelihood group; power-scaling needs it")
    idata = run.idata.copy()
    grid = default_grid()
    design = build_design(grid, run.levels)
    log_mu = row_log_mu(idata, run.spec, design, seed=run.seed)
    chains, draws = idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]
    table = xr.DataArray(log_mu.reshape(chains, draws, -1), dims=("chain", "draw", TABLE_DIM),
                         coords={"chain": idata.posterior.chain, "draw": idata.posterior.draw,
                                 TABLE_DIM: table_labels(grid)})
    idata.posterior[TABLE_VAR] = table
    idata.add_groups(log_prior=log_prior(run))
    return idata


def assessed_variables(run: Run) -> list[str]:
    """Posterior variables whose sensitivity is reported: coefficients, scales, sigma, 100T table."""
    spec = run.spec
    names = list(spec.law_obj.param_names)
    names += [sd_name(e.group, p) for e in spec.effects for p in e.params]
    return [*names, "sigma", TABLE_VAR]


def prior_sensitivity(run: Run, *, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Power-scaling sensitivity of the run's coefficients and 100T predictions.

    Parameters
    ----------
    run : Run
        A fitted or loaded run (with its ``log_likelihood`` group).
    threshold : float
        Sensitivity above which a quantity is flagged (ArviZ's 0.05).

    Returns
    -------
    DataFrame
        ``quantity, prior_sensitivity, likelihood_sensitivity, diagnosis``; one row per
        population coefficient, effect scale, ``sigma`` and 100T table row (new family).
    """
    idata = with_sensitivity_groups(run)
    names = assessed_variables(run)
    with warnings.catch_warnings():
        # Importance-weight warnings concern the finite-difference weights, whose Pareto k is
        # tiny at delta = 0.01; they would only add noise to the table.
        warnings.simplefilter("ignore", UserWarning)
        prior = az.psens(idata, component="prior", var_names=names)
        lik = az.psens(idata, component="likelihood", var_names=names)
    rows = []
    for name in names:
        p_vals, l_vals = np.atleast_1d(prior[name].to_numpy()), np.atleast_1d(lik[name].to_numpy())
        labels = ([f"{name}[{lab}]" for lab in prior[name][TABLE_DIM].to_numpy()] if name == TABLE_VAR
                  else [name])
        for label, ps, ls in zip(labels, p_vals, l_vals, strict=True):
            rows.append({"quantity": label, "prior_sensitivity": float(ps),
                         "likelihood_sensitivity": float(ls),
                         "diagnosis": diagnosis(float(ps), float(ls), threshold)})
    return pd.DataFrame(rows)


def diagnosis(prior: float, likelihood: float, threshold: float = THRESHOLD) -> str:
    """The priorsense reading of one pair of sensitivities (``-``: nothing notable)."""
    if prior >= threshold and likelihood >= threshold:
        return "possible prior-data conflict"
    if prior >= threshold:
        return "strong prior / weak likelihood"
    return "-"


def format_sensitivity(table: pd.DataFrame) -> str:
    """Text table for the terminal."""
    width = max(len("quantity"), *(len(q) for q in table["quantity"]))
    lines = [f"{'quantity':<{width}} {'prior':>7} {'lik.':>7}  diagnosis"]
    for r in table.itertuples(index=False):
        lines.append(f"{r.quantity:<{width}} {r.prior_sensitivity:>7.3f} {r.likelihood_sensitivity:>7.3f}  "
                     f"{r.diagnosis}")
    return "\n".join(lines)
