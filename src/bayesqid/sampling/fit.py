"""``fit(spec, dataset) -> Run``: sample a spec on data through an engine and keep the provenance.

A fit is reproducible from its seed: the seed is passed to the sampler and recorded, with the
spec, the data hash and the package versions, in the run it returns.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pytensor
import xarray as xr

from bayesqid.constants import GROUPS, OBS
from bayesqid.data.dataset import Dataset
from bayesqid.data.design import build_design
from bayesqid.engines.registry import Engine, make_engine
from bayesqid.engines.sampler import SamplerConfig
from bayesqid.errors import BayesqidError, ConvergenceWarning
from bayesqid.lang.spec import ModelSpec
from bayesqid.sampling.diagnostics import check_convergence
from bayesqid.sampling.draws import log_likelihood
from bayesqid.sampling.run import Run

#: Packages whose versions are recorded in every run.
PROVENANCE_PACKAGES = ("bayesqid", "pymc", "pytensor", "arviz", "nutpie", "numpyro", "jax", "numpy",
                       "pandas", "xarray")


#: Largest pointwise log-likelihood (draws x rows) stored with a run: 5e7 doubles = 400 MB. Beyond
#: it (tens of thousands of rows) it would dominate a fit's memory and the file.
MAX_POINTWISE = 50_000_000

def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on."""
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = sys.version.split()[0]
    return out


def fit(spec: ModelSpec, dataset: Dataset, config: SamplerConfig | None = None, *,
        log: Callable[[str], None] | None = None) -> Run:
    """Fit ``spec`` to ``dataset`` with NUTS and return a :class:`~bayesqid.run.Run`.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    dataset : Dataset
        Validated data (see :func:`bayesqid.data.load_dataset`).
    config : SamplerConfig, optional
        Sampler settings; default :meth:`SamplerConfig.preset` ``("default")``.
    log : callable, optional
        Receives progress lines (the CLI prints them to stderr).

    Returns
    -------
    Run
        Posterior, pointwise log-likelihood, observed and constant data, the convergence
        gate and provenance. A failed gate also emits :class:`ConvergenceWarning`.
    """
    cfg = config or SamplerConfig.preset("default")
    engine = make_engine(spec, build_design(dataset.frame), dataset.frame["qid"].to_numpy(float),
                         cfg.engine)
    return sample_run(engine, dataset, cfg, log=log)


def sample_run(engine: Engine, template: Dataset, cfg: SamplerConfig, *,
               rows: np.ndarray | None = None, qid: np.ndarray | None = None,
               log: Callable[[str], None] | None = None) -> Run:
    """Sample ``engine`` on ``rows`` of ``template`` (measurements replaced by ``qid``).

    The engine was built on ``template``'s design, so every fit made through it knows the same
    levels; the returned run describes the rows it was fitted on.
    """
    say = log or (lambda _msg: None)
    spec, design = engine.spec, engine.design
    frame = template.frame
    if qid is not None:
        qid = np.asarray(qid, dtype=float)
        if qid.shape != (len(frame),):
            raise BayesqidError(f"qid has shape {qid.shape}, expected ({len(frame)},)")
        frame = frame.assign(qid=qid)
    if rows is not None:
        rows = np.asarray(rows, dtype=bool)
        if rows.shape != (len(frame),) or not rows.any():
            raise BayesqidError("rows must be a non-empty boolean mask over the template rows")
        frame = frame[rows].reset_index(drop=True)
    dataset = template if frame is template.frame else Dataset(frame, template.path, template.excluded)
    say(f"building model {spec.name!r} ({spec.law}, {engine.name} engine) on {len(frame)} rows, "
        + ", ".join(f"{len(design.levels[g])} {g} levels" for g in GROUPS))
    say(f"sampling with {cfg.sampler}: {cfg.chains} chains x ({cfg.tune} tune + {cfg.draws} draws), "
        f"seed {cfg.seed}")
    start = time.perf_counter()
    full_qid = template.frame["qid"].to_numpy(float) if qid is None else qid
    # Strict floating point in compiled models: with fastmath, numba code compiled in this
    # process and the same code loaded from PyTensor's on-disk cache differed in the last bits
    # (reductions reassociated differently), so one seed gave two chains of draws depending on
    # the cache's state. Measured: no cost in sampling speed.
    with pytensor.config.change_flags(numba__fastmath=False):
        raw = engine.sample(cfg, full_qid, rows)
    seconds = time.perf_counter() - start
    # nutpie and PyMC answer Ctrl-C by returning the draws made so far. A run must never be built
    # from such a partial trace: treat a short trace as the interruption it was.
    posterior = getattr(raw, "posterior", None)
    shape = ((posterior.sizes.get("chain", 0), posterior.sizes.get("draw", 0)) if posterior is not None
             else (0, 0))
    if shape != (cfg.chains, cfg.draws):
        raise KeyboardInterrupt(f"sampling stopped early: {shape[0]} chains x {shape[1]} draws, "
                                f"expected {cfg.chains} x {cfg.draws}")
    fitted = build_design(frame, levels=design.levels)
    y = frame["qid"].to_numpy(float)
    idata = az.InferenceData(
        posterior=raw.posterior,
        sample_stats=raw.sample_stats,
        observed_data=xr.Dataset({"qid": ((OBS,), y)}),
        constant_data=constant_data(frame),
    )
    pointwise = cfg.draws * cfg.chains * len(frame)
    if pointwise <= MAX_POINTWISE:
        idata.add_groups(log_likelihood=log_likelihood(idata, spec, fitted, y).rename({"obs": OBS}))
    else:
        say(f"pointwise log-likelihood not stored: {pointwise:.2g} values (> {MAX_POINTWISE:.0e}); "
            "LOO recomputes it on demand")
    diagnostics = check_convergence(idata)
    idata.attrs.update({
        "bayesqid_spec": spec.to_json(),
        "data_sha256": dataset.sha256,
        "data_path": dataset.path,
        "seed": cfg.seed,
        "sampler": json.dumps(asdict(cfg)),
        "engine": engine.name,
        "versions": json.dumps(package_versions()),
        "diagnostics": diagnostics.to_json(),
        "sampling_seconds": seconds,
        "command": " ".join(sys.argv) if sys.argv else "",
        "levels": json.dumps({g: list(design.levels[g]) for g in GROUPS}),
        "created_by": "bayesqid",
    })
    say(f"sampled in {seconds:.1f} s")
    if not diagnostics.passed:
        warnings.warn("convergence gate failed: " + "; ".join(diagnostics.problems),
                      ConvergenceWarning, stacklevel=3)
    return Run(spec=spec, idata=idata, diagnostics=diagnostics)


def constant_data(frame: Any) -> xr.Dataset:
    """The fitted rows (canonical columns, as arrays over ``obs``) kept with the run."""
    cols = {}
    for col in ("family", "model", "method", "eval_set", "source"):
        cols[col] = ((OBS,), frame[col].astype(str).to_numpy().astype("U"))
    for col in ("params", "tokens", "qid"):
        cols[col] = ((OBS,), frame[col].to_numpy(float))
    cols["bits"] = ((OBS,), frame["bits"].to_numpy(np.int64))
    # Recipe columns, as text (unknown where unknown) and floats (NaN where unknown).
    for col in ("lr_schedule", "train_precision"):
        if col in frame:
            cols[col] = ((OBS,), frame[col].astype(str).to_numpy().astype("U"))
    for col in ("lr_frac", "weight_decay", "dropout", "grad_clip", "peak_lr", "average_last"):
        if col in frame:
            cols[col] = ((OBS,), frame[col].to_numpy(float))
    for col in ("annealed", "post_trained"):  # true, false or unknown, as text
        if col in frame:
            cols[col] = ((OBS,), np.array(["unknown" if v is pd.NA or pd.isna(v) else str(bool(v)).lower()
                                           for v in frame[col]], dtype="U"))
    # NetCDF has no integer NA: per-channel group size is stored as 0.
    cols["group_size"] = ((OBS,), frame["group_size"].fillna(0).to_numpy(np.int64))
    return xr.Dataset(cols)
