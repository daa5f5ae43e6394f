"""The engine registry: which engine samples a spec, by name.

Every engine exposes ``name``, ``spec``, ``design`` and
``sample(config, qid, rows=None) -> InferenceData`` and returns the posterior under the same
variable names (see :mod:`bayesqid.lang.effects`), so runs look alike whichever engine made
them (the engine is recorded in the run's attributes).

- :class:`~bayesqid.engines.whitened.WhitenedEngine`: scales and whitened coefficients by NUTS,
  exact likelihood; needs a linear law; the default for those.
- :class:`~bayesqid.engines.direct.DirectEngine`: NUTS on every coefficient; any spec.
- :class:`~bayesqid.engines.collapsed.CollapsedEngine`: coefficients integrated out; needs a
  linear law, a Normal likelihood and Normal population priors.
"""

from __future__ import annotations

import numpy as np

from bayesqid.data.design import Design
from bayesqid.engines.collapsed import CollapsedEngine
from bayesqid.engines.direct import DirectEngine
from bayesqid.engines.sampler import ENGINES
from bayesqid.engines.whitened import WhitenedEngine, whitenable
from bayesqid.lang.spec import ModelSpec

__all__ = ["ENGINES", "Engine", "make_engine"]

Engine = DirectEngine | CollapsedEngine | WhitenedEngine


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
