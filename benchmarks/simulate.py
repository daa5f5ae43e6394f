"""Simulated QiD on the reference design, replicated: the data of the scaling benchmarks.

Rows keep the reference layout (N, D, bits, family, quantizer, evaluation set); replicating the
design k times gives k measurements per design point, as repeated evaluations would. QiD is
drawn from Ouyang et al.'s Eq. 8 with family, quantizer and evaluation-set offsets and Normal
residuals on the log scale (sd 0.3), so a fraction of rows falls below the 0.02-nat resolution
and is censored, as in the real data.
"""

from __future__ import annotations

import numpy as np

import bayesqid as bq
from bayesqid.data.design import build_design
from bayesqid.lang.laws import published_ouyang


def simulated_reference(factor: int, seed: int = 0) -> bq.Dataset:
    """The reference design replicated ``factor`` times with simulated QiD."""
    ref = bq.load_reference().frame
    frame = ref.loc[np.tile(np.arange(len(ref)), factor)].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    design = build_design(frame)
    truth = published_ouyang()
    log_mu = (truth["log_k"] + truth["beta"] * design.x["log_d"] - truth["alpha"] * design.x["log_n"]
              - truth["gamma"] * design.x["log_bits"])
    for group, sd in (("family", 0.5), ("quantizer", 0.7), ("eval_set", 0.3)):
        offsets = rng.normal(0.0, sd, len(design.levels[group]))
        log_mu = log_mu + offsets[design.codes[group]]
    qid = np.exp(log_mu + rng.normal(0.0, 0.3, len(frame)))
    return bq.Dataset(frame.assign(qid=qid), f"<reference design x{factor}, simulated>", ())
