"""Sampling: sampler settings, the sampler registry, and ``fit(spec, dataset) -> Run``.

A fit is reproducible from its seed: the seed is passed to the sampler and recorded, with the
spec, the data hash and the package versions, in the run it returns.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
import pytensor
import xarray as xr

from bayesqid.constants import DEFAULT_SEED, GROUPS, OBS
from bayesqid.data import Dataset
from bayesqid.design import build_design
from bayesqid.diagnostics import check_convergence
from bayesqid.engine import ENGINES, Engine, make_engine
from bayesqid.errors import BayesqidError, ConvergenceWarning
from bayesqid.posterior import log_likelihood
from bayesqid.run import Run
from bayesqid.spec import ModelSpec

#: Packages whose versions are recorded in every run.
PROVENANCE_PACKAGES = ("bayesqid", "pymc", "pytensor", "arviz", "nutpie", "numpyro", "jax", "numpy",
                       "pandas", "xarray")


@dataclass(frozen=True)
class SamplerConfig:
    """How to run NUTS.

    Parameters
    ----------
    sampler : {"nutpie", "pymc", "numpyro"}
        NUTS implementation (see :data:`SAMPLERS`).
    draws, tune, chains : int
        Kept draws, warm-up iterations and chains.
    seed : int
        Root seed; the same seed gives the same draws on the same machine.
    target_accept : float
        Step-size adaptation target.
    cores : int
        Chains run in parallel (PyMC sampler).
    progress : bool
        Show the sampler's progress bar.
    engine : {"auto", "whitened", "collapsed", "direct"}
        How the posterior is sampled (:mod:`bayesqid.engine`); every engine samples the same
        posterior. ``"auto"``: whitened coefficients for laws linear in them, else direct.
    """

    sampler: str = "nutpie"
    draws: int = 1000
    # The whitened engine's posterior is close to a standard Normal in every direction, so
    # warm-up converges fast: on the reference data tune 600, 1000 and 1500 gave the same
    # min ESS (~2200) and R-hat. 1000 keeps margin for other data and for the direct engine
    # (whose crossed-effect ridges ended warm-up with R-hat ~1.012 at 1000 and needed 1500).
    tune: int = 1000
    chains: int = 4
    seed: int = DEFAULT_SEED
    target_accept: float = 0.9
    cores: int = 2
    progress: bool = False
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise BayesqidError(f"unknown sampler {self.sampler!r}; known: {sorted(SAMPLERS)}")
        for name in ("draws", "tune", "chains", "cores"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "tune" else 1):
                raise BayesqidError(f"sampler setting {name} must be a positive integer, got {value!r}")
        if self.chains < 2 and self.draws > 0:
            warnings.warn("R-hat needs at least 2 chains; the gate cannot check mixing", stacklevel=2)
        if self.engine not in ENGINES:
            raise BayesqidError(f"unknown engine {self.engine!r}; known: {list(ENGINES)}")
        if not 0 < self.target_accept < 1:
            raise BayesqidError(f"target_accept must be in (0, 1), got {self.target_accept!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SamplerConfig:
        """Named settings: ``"default"`` (4 x 1000) or ``"ci"`` (small, for tests and notebooks)."""
        presets = {
            "default": cls(),
            "ci": cls(draws=300, tune=400, chains=2),
        }
        if name not in presets:
            raise BayesqidError(f"unknown sampler preset {name!r}; known: {sorted(presets)}")
        return replace(presets[name], **overrides)


#: Largest pointwise log-likelihood (draws x rows) stored with a run: 5e7 doubles = 400 MB. Beyond
#: it (tens of thousands of rows) it would dominate a fit's memory and the file.
MAX_POINTWISE = 50_000_000

#: Python packages each sampler needs beyond the core dependencies, with the extra to install.
_SAMPLER_NEEDS = {"numpyro": (("numpyro", "jax"), "bayesqid[numpyro]")}


def _jax_on_accelerator() -> bool:
    """True when JAX's default device is a GPU or TPU (``pip install 'jax[cuda12]'``)."""
    import jax

    return jax.default_backend() in ("gpu", "cuda", "rocm", "tpu")


def _sample_pymc_backend(backend: str) -> Callable[[pm.Model, SamplerConfig], az.InferenceData]:
    def run(model: pm.Model, cfg: SamplerConfig) -> az.InferenceData:
        modules, extra = _SAMPLER_NEEDS.get(backend, ((), ""))
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise BayesqidError(f"sampler {backend!r} needs {', '.join(missing)}: pip install '{extra}'")
        kwargs: dict[str, Any] = {}
        if backend == "nutpie":
            # nutpie runs its chains on threads; "cores" caps them.
            kwargs["nuts_sampler_kwargs"] = {"cores": cfg.cores}
        if backend == "pymc":
            # PyMC's own NUTS loop on a numba-compiled log density: the default C back end
            # calls the fused Ops' numpy code through Python on every gradient (measured on
            # the default fit: 50 s of sampling vs 19 s).
            kwargs["compile_kwargs"] = {"mode": "NUMBA"}
            if sys.platform.startswith("linux"):
                # Forked chain processes inherit the compiled function (and the strict
                # floating-point setting it was compiled under) instead of unpickling and
                # recompiling it; fork is unsafe only on macOS.
                kwargs["mp_ctx"] = "fork"
            with model:
                initial_points, step = _pymc_nuts(model, cfg, kwargs["compile_kwargs"])
                return pm.sample(draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cfg.cores,
                                 random_seed=cfg.seed, step=step, initvals=initial_points,
                                 progressbar=cfg.progress, compute_convergence_checks=False, **kwargs)
        if backend == "numpyro" and _jax_on_accelerator():
            # One accelerator: run the chains as one vectorised batch rather than one per device.
            kwargs["nuts_sampler_kwargs"] = {"chain_method": "vectorized"}
        with model:
            return pm.sample(draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cfg.cores,
                             random_seed=cfg.seed, target_accept=cfg.target_accept,
                             nuts_sampler=backend, progressbar=cfg.progress,
                             compute_convergence_checks=False, **kwargs)
    return run


def _pymc_nuts(model: pm.Model, cfg: SamplerConfig,
               compile_kwargs: dict[str, Any]) -> tuple[list[dict[str, np.ndarray]], Any]:
    """PyMC's own NUTS set-up (jittered starts, diagonal mass-matrix adaptation), made here.

    Why not leave it to ``pm.sample``: to choose a step method it differentiates the log
    density once per free variable (9 gradient graphs, ~2 s on the default spec) before
    building NUTS anyway. The per-chain seeds are derived as ``pm.sample`` derives them.
    """
    from pymc.util import get_random_generator

    seeds = [int(rng.integers(2**30)) for rng in get_random_generator(cfg.seed).spawn(cfg.chains)]
    return pm.init_nuts(init="jitter+adapt_diag", chains=cfg.chains, model=model, random_seed=seeds,
                        progressbar=False, tune=cfg.tune, target_accept=cfg.target_accept,
                        compile_kwargs=compile_kwargs)


#: Sampler registry: name -> function(model, config) -> InferenceData.
SAMPLERS: dict[str, Callable[[pm.Model, SamplerConfig], az.InferenceData]] = {
    "nutpie": _sample_pymc_backend("nutpie"),
    "pymc": _sample_pymc_backend("pymc"),
    "numpyro": _sample_pymc_backend("numpyro"),
}


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
        constant_data=_constant_data(frame),
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


def _constant_data(frame: Any) -> xr.Dataset:
    """The fitted rows (canonical columns, as arrays over ``obs``) kept with the run."""
    cols = {}
    for col in ("family", "model", "method", "eval_set", "source"):
        cols[col] = ((OBS,), frame[col].astype(str).to_numpy().astype("U"))
    for col in ("params", "tokens", "qid"):
        cols[col] = ((OBS,), frame[col].to_numpy(float))
    cols["bits"] = ((OBS,), frame["bits"].to_numpy(np.int64))
    # NetCDF has no integer NA: per-channel group size is stored as 0.
    cols["group_size"] = ((OBS,), frame["group_size"].fillna(0).to_numpy(np.int64))
    return xr.Dataset(cols)
