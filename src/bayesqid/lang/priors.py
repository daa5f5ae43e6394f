"""Serialisable prior distributions: a name from a small registry plus numeric arguments.

A :class:`Prior` is a plain value object. It becomes a PyMC random variable only inside
:func:`bayesqid.model.build_model`, and it round-trips through TOML and JSON unchanged.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayesqid.errors import SpecError


@dataclass(frozen=True)
class Family:
    """One distribution family known to the prior registry."""

    name: str
    # The PyMC class by name, looked up when a model is built: reading and checking a spec must
    # not import PyMC (seconds), so that a bad spec is a one-line error at once.
    pymc_name: str
    args: tuple[str, ...]
    positive: bool

    @property
    def pymc(self) -> Any:
        """The PyMC distribution class of this family (imports PyMC)."""
        import pymc as pm

        return getattr(pm, self.pymc_name)

    def draw(self, args: Mapping[str, float], rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` values with numpy (used by simulation and prior predictive checks)."""
        import pymc as pm

        return pm.draw(self.pymc.dist(**args), draws=size, random_seed=rng)


PRIOR_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("normal", "Normal", ("mu", "sigma"), positive=False),
        Family("student_t", "StudentT", ("nu", "mu", "sigma"), positive=False),
        Family("halfnormal", "HalfNormal", ("sigma",), positive=True),
        Family("exponential", "Exponential", ("lam",), positive=True),
        Family("lognormal", "LogNormal", ("mu", "sigma"), positive=True),
        Family("gamma", "Gamma", ("alpha", "beta"), positive=True),
    )
}

# Arguments that must be strictly positive for the distribution to be proper.
_POSITIVE_ARGS = {"sigma", "lam", "nu", "alpha", "beta"}

#: Largest magnitude of a prior argument. The priors sit on log-scale coefficients of QiD: a
#: location or scale beyond this puts prior draws where exp() overflows, not a wide prior.
MAX_ARG = 1e6
#: Smallest positive argument (scale, rate, shape, degrees of freedom): below it a prior is a
#: point mass in all but name and its density overflows double precision.
MIN_POSITIVE_ARG = 1e-6
#: Smallest Student-t degrees of freedom: below it the quartiles pass 1e150 and a Normal matched
#: to them (the whitened engine's stand-in) overflows.
MIN_NU = 0.1
#: Tighter limits where the general ones still overflow: a log-normal's draws and quartiles are
#: exp(mu + sigma z), finite for these.
ARG_LIMITS = {("lognormal", "mu"): (-100.0, 100.0), ("lognormal", "sigma"): (MIN_POSITIVE_ARG, 100.0),
           ("student_t", "nu"): (MIN_NU, MAX_ARG)}

_SHOW = reprlib.Repr()  # keyword arguments need Python 3.12
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 60, 60, 4, 4, 2


def shown(value: Any) -> str:
    """``repr(value)`` cut short (nesting, length), for one-line messages about any input."""
    return _SHOW.repr(value)


@dataclass(frozen=True)
class Prior:
    """A prior distribution by registry name, e.g. ``Prior("normal", {"mu": 0, "sigma": 1})``.

    Parameters
    ----------
    dist : str
        Key of :data:`PRIOR_FAMILIES`.
    args : Mapping[str, float]
        The distribution's arguments; exactly those the family declares.

    Raises
    ------
    SpecError
        Unknown family, missing or extra arguments, non-numeric or invalid values.
    """

    dist: str
    args: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        family = PRIOR_FAMILIES.get(self.dist) if isinstance(self.dist, str) else None
        if family is None:
            raise SpecError(f"unknown prior distribution {shown(self.dist)}; known: {sorted(PRIOR_FAMILIES)}")
        if set(self.args) != set(family.args):
            raise SpecError(f"prior {self.dist!r} takes arguments {list(family.args)}, got "
                            f"{shown(sorted(map(str, self.args)))}")
        clean = {}
        for key in family.args:
            value = self.args[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(f"prior {self.dist!r} argument {key!r} must be a number, "
                                f"got {shown(value)}")
            try:
                number = float(value)
            except OverflowError:  # an integer too large for a double
                number = float("inf")
            if key in _POSITIVE_ARGS and not (math.isfinite(number) and number > 0):
                raise SpecError(f"prior {self.dist!r} argument {key!r} must be finite and positive, "
                                f"got {shown(value)}")
            if not math.isfinite(number):
                raise SpecError(f"prior {self.dist!r} argument {key!r} must be finite, got {shown(value)}")
            default = (MIN_POSITIVE_ARG, MAX_ARG) if key in _POSITIVE_ARGS else (-MAX_ARG, MAX_ARG)
            low, high = ARG_LIMITS.get((self.dist, key), default)
            if not low <= number <= high:
                raise SpecError(f"prior {self.dist!r} argument {key!r} must be within {low:g}..{high:g}, "
                                f"got {shown(value)}")
            clean[key] = number
        object.__setattr__(self, "args", clean)

    @property
    def family(self) -> Family:
        """The registry entry of this prior."""
        return PRIOR_FAMILIES[self.dist]

    def to_pymc(self, name: str, **kwargs: Any) -> Any:
        """Create the PyMC random variable ``name`` (inside a model context)."""
        return self.family.pymc(name, **self.args, **kwargs)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` values from the prior."""
        # pm.draw drops the axis when draws == 1.
        return np.asarray(self.family.draw(self.args, rng, size), dtype=float).reshape(size)

    def to_scipy(self) -> Any:
        """The same distribution as a frozen :mod:`scipy.stats` object (log densities on draws).

        PyMC parametrises Gamma and Exponential by rate, scipy by scale: converted here once.
        """
        from scipy import stats

        a = self.args
        return {
            "normal": lambda: stats.norm(a.get("mu"), a.get("sigma")),
            "student_t": lambda: stats.t(a.get("nu"), a.get("mu"), a.get("sigma")),
            "halfnormal": lambda: stats.halfnorm(0.0, a.get("sigma")),
            "exponential": lambda: stats.expon(0.0, 1.0 / a["lam"]),
            "lognormal": lambda: stats.lognorm(a.get("sigma"), 0.0, np.exp(a.get("mu", 0.0))),
            "gamma": lambda: stats.gamma(a.get("alpha"), 0.0, 1.0 / a["beta"]),
        }[self.dist]()

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, as written in TOML: ``{"dist": "normal", "mu": 0, "sigma": 1}``."""
        return {"dist": self.dist, **self.args}

    @classmethod
    def from_dict(cls, raw: Any, *, where: str = "prior") -> Prior:
        """Parse the TOML/JSON form; ``where`` names the location for error messages."""
        if not isinstance(raw, Mapping) or "dist" not in raw:
            raise SpecError(f"{where}: a prior is a table like {{dist = \"normal\", mu = 0, sigma = 1}}, "
                            f"got {shown(raw)}")
        args = {k: v for k, v in raw.items() if k != "dist"}
        try:
            return cls(str(raw["dist"]), args)
        except SpecError as err:
            raise SpecError(f"{where}: {err}") from None

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v:g}" for k, v in self.args.items())
        return f"{self.dist.replace('_', '-').title().replace('-', '')}({inner})"


def normal(mu: float, sigma: float) -> Prior:
    """Shorthand for a Normal prior."""
    return Prior("normal", {"mu": mu, "sigma": sigma})


def halfnormal(sigma: float) -> Prior:
    """Shorthand for a half-Normal prior (scales and standard deviations)."""
    return Prior("halfnormal", {"sigma": sigma})
