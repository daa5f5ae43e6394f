"""Sampler settings and the NUTS implementations that run them.

:class:`SamplerConfig` says how to run NUTS (which implementation, how long, which seed, which
engine); :data:`SAMPLERS` maps an implementation's name to a function
``(pymc.Model, SamplerConfig) -> InferenceData``. The settings live here, below the engines
that read them.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bayesqid.constants import DEFAULT_SEED
from bayesqid.errors import BayesqidError

if TYPE_CHECKING:
    # PyMC and ArviZ are imported where a sampler runs: the command line's parser reads this
    # module's settings, and must start in well under a second.
    import arviz as az
    import numpy as np
    import pymc as pm

#: Engine names accepted by ``SamplerConfig.engine`` ("auto": the fastest that applies).
ENGINES = ("auto", "whitened", "collapsed", "direct")


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


#: Python packages each sampler needs beyond the core dependencies, with the extra to install.
_SAMPLER_NEEDS = {"numpyro": (("numpyro", "jax"), "bayesqid[numpyro]")}


def jax_on_accelerator() -> bool:
    """True when JAX's default device is a GPU or TPU (``pip install 'jax[cuda12]'``)."""
    import jax

    return jax.default_backend() in ("gpu", "cuda", "rocm", "tpu")


def _sample_pymc_backend(backend: str) -> Callable[[pm.Model, SamplerConfig], az.InferenceData]:
    def run(model: pm.Model, cfg: SamplerConfig) -> az.InferenceData:
        import pymc as pm

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
        if backend == "numpyro" and jax_on_accelerator():
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
    import pymc as pm
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


@contextmanager
def quiet_sampling() -> Iterator[None]:
    """The sampler's own convergence chatter is replaced by bayesqid's gate."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(divergen|rhat|R-hat|effective sample).*")
        yield


def nutpie_sample(compiled: Any, cfg: SamplerConfig) -> az.InferenceData:
    """Sample an already compiled nutpie model (engines that compile once and swap data)."""
    import nutpie

    return nutpie.sample(compiled, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cfg.cores,
                         seed=cfg.seed, target_accept=cfg.target_accept, progress_bar=cfg.progress,
                         save_warmup=False)
