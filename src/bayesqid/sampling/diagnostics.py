"""The convergence gate: divergences, R-hat, bulk/tail ESS and BFMI, checked after every fit.

A failed gate is never swallowed: it is printed, stored in the run, repeated by every command
that uses the run, and raised as :class:`~bayesqid.errors.ConvergenceWarning`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import arviz as az

#: Thresholds of the gate (Vehtari et al. 2021 for R-hat and ESS).
MAX_RHAT = 1.01
MIN_ESS = 400
MIN_BFMI = 0.3
MAX_DIVERGENCES = 0


@dataclass(frozen=True)
class Diagnostics:
    """Outcome of the convergence gate for one posterior."""

    divergences: int
    draws: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    min_bfmi: float
    worst_rhat: str
    worst_ess: str
    #: Draws that are NaN or infinite, over the checked variables (runs saved before this field
    #: was added load with 0: their draws are checked on loading instead).
    nonfinite: int = 0
    worst_nonfinite: str = ""

    @property
    def problems(self) -> list[str]:
        """Human-readable list of failed checks (empty when the gate passes)."""
        out = []
        if self.nonfinite:
            out.append(f"{self.nonfinite} non-finite (NaN or inf) draw values ({self.worst_nonfinite})")
        if self.divergences > MAX_DIVERGENCES:
            out.append(f"{self.divergences} divergent transitions")
        if not self.max_rhat <= MAX_RHAT:
            out.append(f"max R-hat {self.max_rhat:.3f} > {MAX_RHAT} ({self.worst_rhat})")
        if not min(self.min_ess_bulk, self.min_ess_tail) >= MIN_ESS:
            out.append(f"min ESS bulk/tail {self.min_ess_bulk:.0f}/{self.min_ess_tail:.0f} < {MIN_ESS} "
                       f"({self.worst_ess})")
        if not self.min_bfmi >= MIN_BFMI:
            out.append(f"min BFMI {self.min_bfmi:.2f} < {MIN_BFMI}")
        return out

    @property
    def passed(self) -> bool:
        """True when every check passes."""
        return not self.problems

    def format(self) -> str:
        """Multi-line report, starting with PASSED or FAILED."""
        head = "convergence gate: PASSED" if self.passed else "convergence gate: FAILED"
        lines = [head,
                 f"  divergences {self.divergences} of {self.draws} draws",
                 f"  max R-hat {self.max_rhat:.4f}  (<= {MAX_RHAT})",
                 f"  min ESS bulk {self.min_ess_bulk:.0f}, tail {self.min_ess_tail:.0f}  (>= {MIN_ESS})",
                 f"  min BFMI {self.min_bfmi:.2f}  (>= {MIN_BFMI})",
                 f"  non-finite draw values {self.nonfinite}  (= 0)"]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_json(self) -> str:
        """JSON form stored in saved runs."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Diagnostics:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def check_convergence(idata: az.InferenceData, var_names: list[str] | None = None) -> Diagnostics:
    """Run the gate on ``idata.posterior`` (free parameters unless ``var_names`` is given)."""
    import arviz as az  # here, not at the top: reading a run's stored gate needs no ArviZ

    post = idata.posterior
    # Check the quantities users read: the standardised effects z_* rather than the sampler's
    # internal u_* coordinates they are computed from, and not nutpie's *_log__ copies.
    names = var_names or [v for v in post.data_vars
                          if not v.startswith("u_") and not v.endswith("__")]
    summ = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    try:
        bfmi = float(np.min(az.bfmi(idata)))
    except (KeyError, AttributeError, ValueError):
        bfmi = float("nan")
    # R-hat is undefined (NaN) for a constant variable, which is fine; NaN draws are not, and
    # are counted separately, since az.summary would report them as that same NaN.
    rhat = summ["r_hat"].fillna(1.0)
    ess = np.minimum(summ["ess_bulk"], summ["ess_tail"])
    bad = {name: int(np.size(post[name]) - np.count_nonzero(np.isfinite(post[name].to_numpy())))
           for name in names if np.issubdtype(post[name].dtype, np.number)}
    return Diagnostics(
        divergences=divergences,
        draws=int(post.sizes["chain"] * post.sizes["draw"]),
        max_rhat=float(rhat.max()),
        min_ess_bulk=float(summ["ess_bulk"].min()),
        min_ess_tail=float(summ["ess_tail"].min()),
        min_bfmi=bfmi,
        worst_rhat=str(rhat.idxmax()),
        worst_ess=str(ess.idxmin()),
        nonfinite=sum(bad.values()),
        worst_nonfinite=max(bad, key=bad.__getitem__) if any(bad.values()) else "",
    )
