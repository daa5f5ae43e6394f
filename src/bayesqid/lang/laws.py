"""Law forms for QiD as an explicit registry: one small frozen object per published form.

Every law is written on the log scale, ``log E[QiD] = log_mu(x, p)``, as one pure function of
model-scale covariates ``x`` and parameters ``p`` that uses only ``+``, ``-`` and ``*``. The
same function therefore runs on numpy arrays, xarray DataArrays (posterior draws broadcast by
dimension name) and PyTensor tensors (inside the PyMC model): there is no second
implementation to drift.

Covariates (see :mod:`bayesqid.constants` for the scales):

- ``log_n``  = log(N / 1e9), N non-embedding parameters
- ``log_d``  = log(D / 1e12), D training tokens
- ``log_bits`` = log(P / 4), P weight bits
- ``bits_c`` = P - 4 (for forms exponential in bits)

Intercepts therefore describe a 1B-parameter model trained on 1T tokens at 4 bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bayesqid.constants import BITS_SCALE, PARAMS_SCALE, TOKENS_SCALE
from bayesqid.errors import SpecError
from bayesqid.lang.priors import Prior, halfnormal, normal

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class Parameter:
    """A law coefficient with its default population prior and group-effect scale prior.

    Parameters
    ----------
    name : str
        Name a reader of the paper recognises (``alpha``, ``beta``, ``gamma``, ``log_k``).
    prior : Prior
        Default prior of the population value.
    effect_sd : Prior
        Default prior of the standard deviation of group effects on this coefficient.
    doc : str
        One-line meaning, shown in reports.
    """

    name: str
    prior: Prior
    effect_sd: Prior
    doc: str


@dataclass(frozen=True)
class Law:
    """A QiD scaling law on the log scale.

    Parameters
    ----------
    name : str
        Stable registry key, stored in saved runs.
    title : str
        Human-readable name.
    parameters : tuple of Parameter
        The coefficients ``log_mu`` reads, in display order.
    log_mu : callable
        ``log_mu(x, p) -> log E[QiD]``; pure arithmetic on covariates and parameters.
    latex : str
        The law in LaTeX on the raw scale.
    citation : str
        Source of the form.
    monotone : Mapping[str, {"up", "down"}]
        Declared direction of QiD in each covariate for parameters at their prior means.
    intercept : str or None
        For laws linear in their coefficients on the log scale, the coefficient that enters
        additively.
    features : Mapping[str, callable]
        For linear laws, the covariate multiplying each non-intercept coefficient, so that
        ``log_mu = intercept + sum(theta_j * features[j](x))``. The model uses it to
        decorrelate group intercepts from group slopes; the contract test checks it agrees
        with ``log_mu``.
    """

    name: str
    title: str
    parameters: tuple[Parameter, ...]
    log_mu: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
    latex: str
    citation: str
    monotone: Mapping[str, Direction] = field(default_factory=dict)
    intercept: str | None = None
    features: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)

    @property
    def is_linear(self) -> bool:
        """True if the law declares itself linear in its coefficients (intercept + features)."""
        return self.intercept is not None

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the law's coefficients."""
        return tuple(p.name for p in self.parameters)

    def parameter(self, name: str) -> Parameter:
        """Look up one coefficient by name; :class:`SpecError` lists the valid ones."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise SpecError(f"law {self.name!r} has no parameter {name!r}; known: {list(self.param_names)}")


LAWS: dict[str, Law] = {}


def register(law: Law) -> Law:
    """Add ``law`` to :data:`LAWS`; names are unique."""
    if law.name in LAWS:
        raise SpecError(f"duplicate law {law.name!r}")
    LAWS[law.name] = law
    return law


def get_law(name: str) -> Law:
    """Return the registered law ``name`` or raise :class:`SpecError` listing the known ones."""
    try:
        return LAWS[name]
    except KeyError:
        raise SpecError(f"unknown law {name!r}; known: {sorted(LAWS)}") from None


def covariates(params: Any, tokens: Any, bits: Any) -> dict[str, np.ndarray]:
    """Model-scale covariates for raw N (non-embedding), D (tokens) and P (bits)."""
    params = np.asarray(params, dtype=float)
    tokens = np.asarray(tokens, dtype=float)
    bits = np.asarray(bits, dtype=float)
    return {
        "log_n": np.log(params / PARAMS_SCALE),
        "log_d": np.log(tokens / TOKENS_SCALE),
        "log_bits": np.log(bits / BITS_SCALE),
        "bits_c": bits - BITS_SCALE,
    }


# Exponent priors are centred on round values near the published fits but wide enough
# (and Normal, so either sign is allowed) that the data, not the prior, decide: a family
# trained at constant learning rate may show no growth with D at all.
_LOG_K = Parameter("log_k", normal(-2.0, 2.0), halfnormal(1.0),
                   "log QiD at N = 1e9, D = 1e12, P = 4 (reference cell)")
_ALPHA = Parameter("alpha", normal(0.25, 0.25), halfnormal(0.2), "exponent of N (QiD falls with N)")
_BETA = Parameter("beta", normal(0.5, 0.5), halfnormal(0.3), "exponent of D (QiD grows with D)")
_GAMMA = Parameter("gamma", normal(4.0, 2.0), halfnormal(1.0), "exponent of P (QiD falls with bits)")


def _ouyang(x: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    return p["log_k"] + p["beta"] * x["log_d"] - p["alpha"] * x["log_n"] - p["gamma"] * x["log_bits"]


OUYANG = register(Law(
    name="ouyang",
    title="Ouyang et al. unified power law",
    parameters=(_LOG_K, _ALPHA, _BETA, _GAMMA),
    log_mu=_ouyang,
    latex=r"\Delta_q L = k\,\frac{D^{\beta}}{N^{\alpha} P^{\gamma}}",
    citation="Ouyang et al. 2024, Low-Bit Quantization Favors Undertrained LLMs, arXiv 2411.17691, Eq. 8",
    monotone={"log_n": "down", "log_d": "up", "log_bits": "down"},
    intercept="log_k",
    features={"alpha": lambda x: -x["log_n"], "beta": lambda x: x["log_d"],
              "gamma": lambda x: -x["log_bits"]},
))


def _kumar(x: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    return (p["log_c"] + p["gamma_d"] * x["log_d"] - p["gamma_n"] * x["log_n"]
            - p["lambda_p"] * x["bits_c"])


KUMAR = register(Law(
    name="kumar",
    title="Kumar et al. post-training quantization law (exponential in bits)",
    parameters=(
        Parameter("log_c", normal(-2.0, 2.0), halfnormal(1.0),
                  "log QiD at N = 1e9, D = 1e12, P = 4 (reference cell)"),
        Parameter("gamma_n", normal(0.25, 0.25), halfnormal(0.2), "exponent of N"),
        Parameter("gamma_d", normal(0.5, 0.5), halfnormal(0.3), "exponent of D"),
        # 1/gamma_post rather than gamma_post keeps the log-mean linear in the parameter.
        Parameter("lambda_p", normal(1.5, 1.0), halfnormal(0.4),
                  "decay rate per bit, 1/gamma_post"),
    ),
    log_mu=_kumar,
    latex=r"\delta_{PTQ} = C\,\frac{D^{\gamma_D}}{N^{\gamma_N}}\,e^{-P/\gamma_{post}}",
    citation="Kumar et al. 2024, Scaling Laws for Precision, arXiv 2411.04330",
    monotone={"log_n": "down", "log_d": "up", "bits_c": "down"},
    intercept="log_c",
    features={"gamma_n": lambda x: -x["log_n"], "gamma_d": lambda x: x["log_d"],
              "lambda_p": lambda x: -x["bits_c"]},
))


def _dn_ratio(x: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
    return p["log_k"] + p["beta"] * (x["log_d"] - x["log_n"]) - p["gamma"] * x["log_bits"]


DN_RATIO = register(Law(
    name="dn_ratio",
    title="Tokens-per-parameter law",
    parameters=(
        Parameter("log_k", normal(-2.0, 2.0), halfnormal(1.0),
                  "log QiD at D/N = 1000 tokens per parameter, P = 4"),
        Parameter("beta", normal(0.4, 0.4), halfnormal(0.3), "exponent of D/N"),
        _GAMMA,
    ),
    log_mu=_dn_ratio,
    latex=r"\Delta_q L = k\,\left(\frac{D}{N}\right)^{\beta} P^{-\gamma}",
    citation="Kumar et al. 2024 (arXiv 2411.04330) report gamma_D ~ gamma_N, i.e. QiD depends on D/N",
    monotone={"log_n": "down", "log_d": "up", "log_bits": "down"},
    intercept="log_k",
    features={"beta": lambda x: x["log_d"] - x["log_n"], "gamma": lambda x: -x["log_bits"]},
))


def published_ouyang() -> dict[str, float]:
    """Ouyang et al.'s Eq. 8 fit re-expressed on bayesqid's covariate scales.

    The paper's ``k = 0.017`` is in raw counts; on the scaled covariates the intercept becomes
    ``log k + beta log 1e12 - alpha log 1e9 - gamma log 4``.
    """
    k, alpha, beta, gamma = 0.017, 0.2261, 0.5251, 5.4967
    log_k = (np.log(k) + beta * np.log(TOKENS_SCALE) - alpha * np.log(PARAMS_SCALE)
             - gamma * np.log(BITS_SCALE))
    return {"log_k": float(log_k), "alpha": alpha, "beta": beta, "gamma": gamma}


@dataclass(frozen=True)
class PointLaw:
    """A law with fixed coefficients (a published fit), callable on raw N, D and bits.

    Parameters
    ----------
    law : Law
        The form.
    coefficients : Mapping[str, float]
        Its coefficients on bayesqid's covariate scales.
    """

    law: Law
    coefficients: Mapping[str, float]

    def __call__(self, *, params: Any, tokens: Any, bits: Any) -> np.ndarray:
        """QiD in nats at raw non-embedding parameters, training tokens and bits (broadcast)."""
        return np.exp(np.asarray(self.law.log_mu(covariates(params, tokens, bits), self.coefficients)))


def ouyang_eq8() -> PointLaw:
    """Ouyang et al.'s (2024) Eq. 8 point law, ``QiD = 0.017 D^0.5251 / (N^0.2261 P^5.4967)``.

    Examples
    --------
    >>> import bayesqid as bq
    >>> float(bq.ouyang_eq8()(params=7e9, tokens=1e14, bits=4)) > 0
    True
    """
    return PointLaw(OUYANG, published_ouyang())
