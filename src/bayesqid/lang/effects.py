"""Names and composition of the hierarchy's random effects: pure, shared by every engine.

A coefficient ``theta`` of row ``i`` is its population value plus one offset per group that
varies it: ``theta_i = theta + sum_g sd_g_theta * z_g_theta[level_g(i)]``. The variable names
below are the contract between the engines (which sample them) and everything that reads
posterior draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayesqid.lang.spec import ModelSpec

#: Name of the likelihood term in the model and of the observed variable in saved runs.
OBSERVED = "log_qid"


def sd_name(group: str, param: str) -> str:
    """Variable name of the effect standard deviation of ``param`` over ``group``."""
    return f"sd_{group}_{param}"


def z_name(group: str, param: str) -> str:
    """Variable name of the standardised effects of ``param`` over ``group``."""
    return f"z_{group}_{param}"


def lam_name(group: str, param: str) -> str:
    """Variable name of the per-level variance multipliers of Student-t offsets of ``param``
    over ``group`` (:attr:`bayesqid.lang.spec.Effect.nu`)."""
    return f"lam_{group}_{param}"


def draw_z(rng: Any, size: int | None, nu: float | None = None) -> Any:
    """Standardised offsets from their prior: standard Normal, or standard Student-t with
    ``nu`` degrees of freedom (:attr:`bayesqid.lang.spec.Effect.nu`). Normal offsets take
    the same numbers from ``rng`` as ``rng.standard_normal(size)``."""
    return rng.standard_normal(size) if nu is None else rng.standard_t(nu, size)


def effect_pairs(spec: ModelSpec) -> list[tuple[str, str]]:
    """All (group, parameter) pairs that carry random effects, in spec order."""
    return [(e.group, p) for e in spec.effects for p in e.params]


def compose(spec: ModelSpec, values: Mapping[str, Any],
            offsets: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    """Per-row law coefficients: population value plus the row's group offsets.

    ``values`` holds population coefficients; ``offsets[(group, param)]`` the already-indexed
    offset of each row (``sd * z[code]``). Works on tensors and arrays alike. A slope offset
    of a group with a centre (:meth:`ModelSpec.centre_shift`) also moves the intercept by
    ``-offset * shift``, so that it pivots at the centre.
    """
    law = spec.law_obj
    out = {}
    for p in law.param_names:
        theta = values[p]
        for (group, q), off in offsets.items():
            if q == p:
                theta = theta + off
            if p == law.intercept and q != p:
                shift = spec.centre_shift(group, q)
                if shift:
                    theta = theta - off * shift
        out[p] = theta
    return out
