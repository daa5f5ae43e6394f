"""Repeated fits of one spec on variations of one dataset (CV folds, SBC replicates, prior grids).

A :class:`Refitter` is built once per spec and template dataset; each :meth:`Refitter.fit`
call fits a row subset of the template and/or a replacement ``qid`` vector on the same rows.
Callers never rebuild models themselves: the engine is built once on the template design, and
the whitened and collapsed engines (:mod:`bayesqid.engine`) compile once and only swap data
between fits.
All fits through one refitter share the template's levels, so a family left out of a fold is
still a known level there, informed by its prior alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from bayesqid.data.dataset import Dataset
from bayesqid.data.design import build_design
from bayesqid.engines.registry import make_engine
from bayesqid.engines.sampler import SamplerConfig
from bayesqid.lang.spec import ModelSpec
from bayesqid.sampling.fit import sample_run
from bayesqid.sampling.run import Run


class Refitter:
    """Fit one spec repeatedly on subsets of (or new measurements for) one template dataset.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    dataset : Dataset
        Template data: every fit uses a subset of its rows (design and levels come from it).
    config : SamplerConfig, optional
        Sampler settings for every fit; the seed is given per fit.
    """

    def __init__(self, spec: ModelSpec, dataset: Dataset, config: SamplerConfig | None = None) -> None:
        self.spec = spec
        self.dataset = dataset
        self.config = config or SamplerConfig.preset("default")
        self.engine = make_engine(spec, build_design(dataset.frame), dataset.frame["qid"].to_numpy(float),
                                  self.config.engine)

    def fit(self, *, seed: int, rows: np.ndarray | None = None, qid: np.ndarray | None = None,
            log: Callable[[str], None] | None = None) -> Run:
        """Fit the spec on ``subset(rows, qid)`` with ``seed``; returns an ordinary :class:`Run`.

        Parameters
        ----------
        seed : int
            Sampler seed of this fit (derive it from a root seed, see :func:`derive_seed`).
        rows : ndarray of bool, optional
            Template rows to fit on (default: all).
        qid : ndarray, optional
            Replacement measurements for every template row (default: the template's).
        log : callable, optional
            Progress lines.
        """
        return sample_run(self.engine, self.dataset, replace(self.config, seed=int(seed)),
                          rows=rows, qid=qid, log=log)


def derive_seed(root: int, *keys: str | int) -> int:
    """A 32-bit seed derived from ``root`` and a path of keys (spec name, fold, replicate).

    Stable across processes and Python versions (no ``hash()``), so a resumed job gives the
    same per-task seeds as an uninterrupted one.
    """
    import zlib

    entropy = [int(root)] + [zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


#: Refitters kept alive in this process (one per spec, template data and sampler settings), so
#: that the fan-out's workers compile each spec once and then only swap data.
_CACHE: dict[tuple[str, str, str], Refitter] = {}


def refitter_for(spec: ModelSpec, dataset: Dataset, config: SamplerConfig | None = None) -> Refitter:
    """The process-wide :class:`Refitter` of ``(spec, dataset, config)``, built on first use."""
    cfg = config or SamplerConfig.preset("default")
    key = (spec.to_json(), dataset.sha256, repr(replace(cfg, seed=0)))
    if key not in _CACHE:
        _CACHE[key] = Refitter(spec, dataset, cfg)
    return _CACHE[key]
