"""Engines: how a spec's posterior is sampled, behind one interface.

- :class:`WhitenedEngine` samples the scales and the coefficients whitened by their Gaussian
  conditional (:mod:`bayesqid.whitened`), with the spec's exact likelihood; it needs a linear
  law and is the default for those (fastest measured on every shipped spec). It compiles once
  per template design, like the collapsed engine.
- :class:`DirectEngine` samples every coefficient with NUTS (:func:`bayesqid.model.build_model`);
  it handles every spec.
- :class:`CollapsedEngine` integrates the coefficients out and samples only the scales and the
  censored values (:mod:`bayesqid.collapsed`), then draws the coefficients exactly. It needs
  a linear law, a Normal likelihood and Normal population priors (:func:`collapsible`), and
  it compiles once per template design: fits on row subsets or on new measurements of the
  same design only swap data into the compiled model.

Both return the posterior under the same variable names, so runs look alike whichever
engine made them (the engine is recorded in the run's attributes).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
from threadpoolctl import threadpool_limits

from bayesqid.collapsed import (
    CENSORED_XTY,
    GAP,
    build_collapsed_model,
    collapsible,
    draw_coefficients,
    linear_system,
    slot_count,
    sufficient_stats,
)
from bayesqid.design import Design
from bayesqid.model import build_model
from bayesqid.spec import ModelSpec
from bayesqid.whitened import INTERNAL, build_whitened_model, coefficients, white_data, whitenable

if TYPE_CHECKING:
    from bayesqid.fit import SamplerConfig

#: Salt of the coefficient draws' random stream (kept apart from the sampler's own stream).
_COEF_STREAM = 0xC0EF


@contextmanager
def _quiet_sampling() -> Iterator[None]:
    """The sampler's own convergence chatter is replaced by bayesqid's gate."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(divergen|rhat|R-hat|effective sample).*")
        yield


def _nutpie_sample(compiled: Any, cfg: SamplerConfig) -> az.InferenceData:
    """Sample an already compiled nutpie model (engines that compile once and swap data)."""
    import nutpie

    return nutpie.sample(compiled, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cfg.cores,
                         seed=cfg.seed, target_accept=cfg.target_accept, progress_bar=cfg.progress,
                         save_warmup=False)


class DirectEngine:
    """NUTS on all coefficients; any spec. Builds (and the sampler compiles) per fit."""

    name = "direct"

    def __init__(self, spec: ModelSpec, design: Design) -> None:
        self.spec = spec
        self.design = design

    def sample(self, cfg: SamplerConfig, qid: np.ndarray, rows: np.ndarray | None = None) -> az.InferenceData:
        """Posterior of the spec on ``rows`` of the template (all rows by default)."""
        from bayesqid.fit import SAMPLERS

        design = self.design
        if rows is not None:
            design = Design(x={k: v[rows] for k, v in design.x.items()},
                            codes={k: v[rows] for k, v in design.codes.items()},
                            levels=design.levels,
                            labels={k: v[rows] for k, v in design.labels.items()})
            qid = qid[rows]
        model = build_model(self.spec, design, qid)
        with _quiet_sampling():
            return SAMPLERS[cfg.sampler](model, cfg)


class CollapsedEngine:
    """Coefficients integrated out; NUTS on scales and censored values; compiled once."""

    name = "collapsed"

    def __init__(self, spec: ModelSpec, design: Design, design_qid: np.ndarray) -> None:
        reason = collapsible(spec)
        if reason is not None:
            raise ValueError(f"spec {spec.name!r} cannot be collapsed: {reason}")
        self.spec = spec
        self.design = design
        self.system = linear_system(spec, design)
        self._compiled: dict[int, Any] = {}
        #: Censored slots of every fit: enough for the template's censored rows, so fits on
        #: row subsets all reuse one compiled model.
        self.slots = slot_count(int((np.asarray(design_qid, float) < spec.likelihood.censor_below).sum()))

    def _nutpie_model(self, stats: Any) -> Any:
        """The nutpie-compiled model for this many censored slots (compiled on first use)."""
        import nutpie

        if stats.slots not in self._compiled:
            model = build_collapsed_model(self.spec, self.system, stats)
            # Traces keep the scales and X_c' y_c, not one latent per censored row: at 100k
            # rows the latents alone would take gigabytes.
            keep = [v.name for v in model.free_RVs if v.name != GAP] + [CENSORED_XTY]
            self._compiled[stats.slots] = nutpie.compile_pymc_model(model, var_names=keep)
        return self._compiled[stats.slots].with_data(**stats.as_data())

    def sample(self, cfg: SamplerConfig, qid: np.ndarray, rows: np.ndarray | None = None) -> az.InferenceData:
        """Posterior of the spec on ``rows`` of the template with measurements ``qid``."""
        from bayesqid.fit import SAMPLERS

        n_cens = int(((np.asarray(qid, float) < self.spec.likelihood.censor_below)
                      & (True if rows is None else rows)).sum())
        stats = sufficient_stats(self.spec, self.system, qid, rows, slots=max(self.slots, slot_count(n_cens)))
        # One BLAS thread: the factorisations are ~100 x 100, where threading only adds
        # contention with the sampler's own chain threads.
        with threadpool_limits(limits=1, user_api="blas"):
            with _quiet_sampling():
                if cfg.sampler == "nutpie":
                    raw = _nutpie_sample(self._nutpie_model(stats), cfg)
                else:
                    raw = SAMPLERS[cfg.sampler](build_collapsed_model(self.spec, self.system, stats), cfg)
            posterior = getattr(raw, "posterior", None)
            if posterior is None or posterior.sizes.get("draw", 0) != cfg.draws:
                return raw  # interrupted: the caller refuses partial traces
            rng = np.random.default_rng([cfg.seed, _COEF_STREAM])
            coefs = draw_coefficients(posterior, self.spec, self.system, stats, self.design.levels, rng)
        for name, da in coefs.items():
            raw.posterior[name] = da.assign_coords(chain=posterior.chain, draw=posterior.draw)
        return raw


class WhitenedEngine:
    """Scales and whitened coefficients by NUTS; any likelihood; compiled once per template."""

    name = "whitened"

    def __init__(self, spec: ModelSpec, design: Design) -> None:
        reason = whitenable(spec)
        if reason is not None:
            raise ValueError(f"spec {spec.name!r} cannot be whitened: {reason}")
        self.spec = spec
        self.design = design
        self.system = linear_system(spec, design)
        self._compiled: Any = None

    def _nutpie_model(self, data: Any) -> Any:
        """The nutpie-compiled model (compiled on first use) with ``data`` swapped in."""
        import nutpie

        if self._compiled is None:
            model = build_whitened_model(self.spec, self.system, self.design.levels, data)
            self._compiled = nutpie.compile_pymc_model(model, var_names=[v.name for v in model.free_RVs])
        return self._compiled.with_data(**data.as_data())

    def sample(self, cfg: SamplerConfig, qid: np.ndarray, rows: np.ndarray | None = None) -> az.InferenceData:
        """Posterior of the spec on ``rows`` of the template with measurements ``qid``."""
        from bayesqid.fit import SAMPLERS

        data = white_data(self.spec, self.system, qid, rows)
        # One BLAS thread: see CollapsedEngine.sample.
        with threadpool_limits(limits=1, user_api="blas"), _quiet_sampling():
            if cfg.sampler == "nutpie":
                raw = _nutpie_sample(self._nutpie_model(data), cfg)
            else:
                model = build_whitened_model(self.spec, self.system, self.design.levels, data)
                raw = SAMPLERS[cfg.sampler](model, cfg)
            posterior = getattr(raw, "posterior", None)
            if posterior is None or posterior.sizes.get("draw", 0) != cfg.draws:
                return raw  # interrupted: the caller refuses partial traces
            # Inside the one-thread limit too: LAPACK's results on a stack of matrices can
            # differ in the last bits with the thread count, and a seed must give equal draws.
            coefs = coefficients(posterior, self.system, data, self.design.levels)
        # The whitened coordinates are internal (and depend on the scales and the data): runs
        # keep the coefficients and sigma, as every other engine's do.
        internal = tuple(f"{n}_" for n in INTERNAL)
        raw.posterior = posterior.drop_vars([v for v in posterior.data_vars
                                             if v in INTERNAL or v.startswith(internal)])
        for name, da in coefs.items():
            raw.posterior[name] = da.assign_coords(chain=posterior.chain, draw=posterior.draw)
        return raw


Engine = DirectEngine | CollapsedEngine | WhitenedEngine

#: Engine names accepted by ``SamplerConfig.engine`` ("auto": the fastest that applies).
ENGINES = ("auto", "whitened", "collapsed", "direct")


def make_engine(spec: ModelSpec, design: Design, qid: np.ndarray, engine: str = "auto") -> Engine:
    """The engine ``engine`` for ``spec`` on ``design`` (measured ``qid``).

    ``"auto"`` picks the whitened engine for laws linear in their coefficients and the direct
    engine otherwise. On the reference data the whitened engine beat the collapsed one even on
    Normal specs (no latent value per censored row: 4500 vs 900 min ESS, 10.6 vs 39 s sampling
    for ``ouyang_normal``); the collapsed engine stays selectable by name.

    Raises
    ------
    ValueError
        Unknown engine, or one that cannot fit ``spec``.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {list(ENGINES)}")
    if engine == "auto":
        engine = "whitened" if whitenable(spec) is None else "direct"
    if engine == "whitened":
        return WhitenedEngine(spec, design)
    if engine == "collapsed":
        return CollapsedEngine(spec, design, qid)
    return DirectEngine(spec, design)
