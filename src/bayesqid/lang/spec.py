"""Declarative model specifications: law, hierarchy, likelihood and prior overrides.

A :class:`ModelSpec` is what a TOML file in ``models/`` says, as typed objects. It is
validated once, at the boundary, and stored as JSON in every saved run so a run can be
re-read without the file it came from.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bayesqid.constants import (
    BITS_SCALE,
    DEFAULT_CENSOR_BELOW,
    DEFAULT_SPEC,
    GROUPS,
    PARAMS_SCALE,
    TOKENS_SCALE,
)
from bayesqid.errors import SpecError
from bayesqid.lang.laws import LAWS, Law, covariates, get_law
from bayesqid.lang.priors import MAX_ARG, MIN_NU, Prior, halfnormal, normal, shown
from bayesqid.lang.recipe import RECIPE_COVARIATES, shift_name

#: Version of the spec format. Runs record it; older versions are migrated or refused.
SPEC_VERSION = 1

PARAMETRIZATIONS: tuple[str, ...] = ("auto", "centered", "non_centered")
LIKELIHOODS: tuple[str, ...] = ("student_t", "normal")
#: Degrees of freedom with a closed-form, numerically stable Student-t CDF (see likelihood.py).
STUDENT_T_NU: tuple[int, ...] = (2, 4)
#: Raw covariates an effect's centre may set (the law's reference cell gives the others).
CENTRE_KEYS: tuple[str, ...] = ("params", "tokens", "bits")
#: Largest centre value: above every parameter or token count a model could have.
MAX_CENTRE = 1e30

# Bounds on the shape of a spec, checked before its content: a spec is a handful of small tables,
# so anything deeper or larger is a mistake or an attack (deep nesting used to end in a
# RecursionError thousands of lines long).
#: Largest nesting of tables and lists (a prior of an effect's sd sits at depth 5).
MAX_DEPTH = 8
#: Most tables, lists and values in one spec.
MAX_NODES = 5_000
#: Longest text value (the description) and longest key, in characters.
MAX_TEXT = 10_000
MAX_KEY = 200
#: Largest spec file.
MAX_FILE_BYTES = 1_000_000


def check_shape(raw: Any, where: str) -> None:
    """Refuse a spec that is nested too deeply or too large, before reading its content.

    Iterative, so that no input, however deep, can exhaust the interpreter's stack.

    Raises
    ------
    SpecError
        Nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values, or a text or
        key longer than :data:`MAX_TEXT` / :data:`MAX_KEY` characters.
    """
    stack: list[tuple[Any, int, str]] = [(raw, 1, "")]
    nodes = 0
    while stack:
        value, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise SpecError(f"{where}: too large (more than {MAX_NODES} values); a spec is a few small "
                            "tables")
        at = f" (at {path[1:]})" if path else ""
        if isinstance(value, Mapping | list | tuple) and depth > MAX_DEPTH:
            raise SpecError(f"{where}: nested too deeply{at}; a spec nests at most {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str) or len(key) > MAX_KEY:
                    raise SpecError(f"{where}: key {shown(key)}{at} is not a name (text of at most "
                                    f"{MAX_KEY} characters)")
                stack.append((item, depth + 1, f"{path}.{key}"))
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            raise SpecError(f"{where}: text{at} is longer than {MAX_TEXT} characters")


def _as_float(value: float) -> float:
    """``float(value)``, with integers too large for a double as inf (refused by the range checks)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _positive(value: Any, low: float, high: float) -> bool:
    """True for a real number (not a bool) within [low, high]; huge integers are out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return low <= float(value) <= high
    except OverflowError:
        return False


@dataclass(frozen=True)
class Effect:
    """Random effects of one grouping factor on some law coefficients.

    Effects are non-centred: ``theta[g] = theta_pop + sd * z[g]`` with ``z ~ Normal(0, 1)``.

    Parameters
    ----------
    group : str
        One of :data:`bayesqid.constants.GROUPS`.
    params : tuple of str
        Law coefficients that vary by this group.
    sd : Mapping[str, Prior]
        Overrides of the effect standard-deviation priors (default: the law's).
    parametrization : str or Mapping[str, str]
        How the sampler sees the offsets, for all coefficients or per coefficient:
        ``"auto"`` (default) samples each level centred (``offset ~ Normal(0, sd)``) when its
        own rows identify it and non-centred (``offset = sd * z``) otherwise; ``"centered"``
        and ``"non_centered"`` force one form. The model's density is the same in all three.
    centre : Mapping[str, float]
        Raw covariates (``params``, ``tokens``, ``bits``; unset ones at the law's reference
        cell) where the group's slope offsets pivot: a level's slope offset ``b`` enters as
        ``b * (feature(x) - feature(centre))``, so its intercept offset is its shift *at the
        centre*. With independent effects this is a modelling choice, not a
        reparametrization: a new level's band is narrowest near the centre, so a centre
        inside the data (e.g. ``params = 7e9``) keeps slope spread from inflating the band
        at the sizes that are measured. Linear laws only.
    nu : Mapping[str, float]
        Degrees of freedom of Student-t offsets, by coefficient (unset ones are Normal): a
        level's offset is ``sd * z`` with ``z ~ StudentT(nu)``, sampled as the scale mixture
        ``z | lam ~ Normal(0, sqrt(lam))``, ``lam ~ InverseGamma(nu / 2, nu / 2)``. One odd
        level then stretches its own ``lam`` instead of the group's ``sd``, which sets every
        new level's band. ``nu > 0``.
    """

    group: str
    params: tuple[str, ...]
    sd: Mapping[str, Prior] = field(default_factory=dict)
    parametrization: str | Mapping[str, str] = "auto"
    centre: Mapping[str, float] = field(default_factory=dict)
    nu: Mapping[str, float] = field(default_factory=dict)

    def nu_of(self, param: str) -> float | None:
        """Degrees of freedom of ``param``'s Student-t offsets, or None for Normal offsets."""
        value = self.nu.get(param)
        return None if value is None else float(value)

    def parametrization_of(self, param: str) -> str:
        """Parametrization used for the offsets of ``param``."""
        if isinstance(self.parametrization, str):
            return self.parametrization
        return self.parametrization.get(param, "auto")


@dataclass(frozen=True)
class Likelihood:
    """Observation model for log QiD.

    Parameters
    ----------
    kind : {"student_t", "normal"}
        Heavy tails by default: published QiD values include cliffs (RTN at 3 bits,
        degenerate cells) that a Normal would let dominate the fit.
    nu : int
        Student-t degrees of freedom (2 or 4: closed-form CDFs keep censoring cheap).
    censor_below : float
        QiD resolution in nats. Measured QiD below it (zero and negative included) enters
        as the left-censored observation ``log QiD < log(censor_below)``.
    sigma : Prior
        Prior of the residual scale on the log scale (with ``sigma_by``: of the median scale
        over that group's levels).
    sigma_by : str or None
        A grouping factor (:data:`bayesqid.constants.GROUPS`) whose levels each get their own
        residual scale, ``log sigma_g = log sigma + sd * z_g`` with ``z_g ~ Normal(0, 1)``
        (variables ``sd_<group>_log_sigma`` and ``z_<group>_log_sigma``); a new level draws
        its scale from that population. None (default): one scale for every row.
    sigma_sd : Prior
        Prior of ``sd``, the spread of ``log sigma_g`` over levels (used with ``sigma_by``).
    """

    kind: str = "student_t"
    nu: int = 4
    censor_below: float = DEFAULT_CENSOR_BELOW
    sigma: Prior = field(default_factory=lambda: halfnormal(1.0))
    sigma_by: str | None = None
    sigma_sd: Prior = field(default_factory=lambda: halfnormal(0.5))


@dataclass(frozen=True)
class ModelSpec:
    """A complete, validated model specification.

    Parameters
    ----------
    name : str
        Short name, e.g. ``"ouyang"``.
    law : str
        Registry key of the law form (see :data:`bayesqid.laws.LAWS`).
    effects : tuple of Effect
        Grouping factors and the coefficients each one varies.
    likelihood : Likelihood
        Observation model.
    priors : Mapping[str, Prior]
        Overrides of the law's population priors, by coefficient name.
    description : str
        One paragraph for reports.
    recipe : Mapping[str, tuple of str]
        Recipe covariates (:data:`bayesqid.lang.recipe.RECIPE_COVARIATES`) that shift each
        coefficient, e.g. ``{"beta": ("annealed",)}``.
    recipe_prior : Prior
        Prior of every recipe shift (default Normal(0, 1) on the log scale).
    """

    name: str
    law: str
    effects: tuple[Effect, ...] = ()
    likelihood: Likelihood = field(default_factory=Likelihood)
    priors: Mapping[str, Prior] = field(default_factory=dict)
    description: str = ""
    version: int = SPEC_VERSION
    recipe: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    recipe_prior: Prior = field(default_factory=lambda: normal(0.0, 1.0))

    def __post_init__(self) -> None:
        law = get_law(self.law)
        object.__setattr__(self, "recipe", {p: tuple(c) for p, c in self.recipe.items() if c})
        if not self.recipe:  # no shift to put it on: the default, so that a JSON round trip is equal
            object.__setattr__(self, "recipe_prior", normal(0.0, 1.0))
        for p, covs in self.recipe.items():
            law.parameter(p)
            unknown = [c for c in covs if c not in RECIPE_COVARIATES]
            if unknown:
                raise SpecError(f"spec {shown(self.name)}: recipe.{p}: unknown recipe covariate "
                                f"{shown(unknown[0])}; known: {list(RECIPE_COVARIATES)}")
            if not law.is_linear:
                raise SpecError(f"spec {shown(self.name)}: recipe shifts need a law linear in its "
                                f"coefficients; {shown(law.name)} is not")
        # Canonical group order, so a spec equals itself after a JSON round trip.
        order = {g: i for i, g in enumerate(GROUPS)}
        ordered = sorted(self.effects, key=lambda e: order.get(e.group, len(order)))
        object.__setattr__(self, "effects", tuple(ordered))
        for key in self.priors:
            law.parameter(key)
        seen = set()
        for eff in self.effects:
            if eff.group not in GROUPS:
                raise SpecError(f"spec {shown(self.name)}: unknown group {shown(eff.group)}; "
                                f"known: {list(GROUPS)}")
            if eff.group in seen:
                raise SpecError(f"spec {shown(self.name)}: group {shown(eff.group)} listed twice")
            seen.add(eff.group)
            if not eff.params:
                raise SpecError(f"spec {shown(self.name)}: effects.{eff.group} varies no parameter")
            for p in (*eff.params, *eff.sd):
                law.parameter(p)
            kinds = ([eff.parametrization] if isinstance(eff.parametrization, str)
                     else list(eff.parametrization.values()))
            if isinstance(eff.parametrization, Mapping):
                for p in eff.parametrization:
                    law.parameter(p)
                if not set(eff.parametrization) <= set(eff.params):
                    raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.parametrization names "
                                    f"parameters that do not vary: "
                                    f"{sorted(set(eff.parametrization) - set(eff.params))}")
            bad = [k for k in kinds if k not in PARAMETRIZATIONS]
            if bad:
                raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.parametrization must be one "
                                f"of {list(PARAMETRIZATIONS)}, got {shown(bad[0])}")
            if not set(eff.sd) <= set(eff.params):
                raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.sd names parameters "
                                f"that do not vary: {sorted(set(eff.sd) - set(eff.params))}")
            for key, value in eff.centre.items():
                if key not in CENTRE_KEYS:
                    raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.centre: unknown "
                                    f"covariate {shown(key)}; known: {list(CENTRE_KEYS)}")
                if not (_positive(value, 0.0, MAX_CENTRE) and value > 0):
                    raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.centre.{key} must be "
                                    f"a positive number, got {shown(value)} (at most {MAX_CENTRE:g})")
            for key, value in eff.nu.items():
                if key not in eff.params:
                    raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.nu names {shown(key)}, "
                                    "which "
                                    f"does not vary by {eff.group}; varying: {list(eff.params)}")
                if not _positive(value, MIN_NU, MAX_ARG):
                    raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.nu.{key} must be a "
                                    f"positive number, got {shown(value)} (range {MIN_NU:g}..{MAX_ARG:g})")
            if eff.centre and not law.is_linear:
                raise SpecError(f"spec {shown(self.name)}: effects.{eff.group}.centre needs a law linear "
                                f"in its coefficients; {shown(law.name)} is not")
        lik = self.likelihood
        if lik.kind not in LIKELIHOODS:
            raise SpecError(f"spec {shown(self.name)}: unknown likelihood {shown(lik.kind)}; "
                            f"known: {list(LIKELIHOODS)}")
        if lik.kind == "student_t" and lik.nu not in STUDENT_T_NU:
            raise SpecError(f"spec {shown(self.name)}: likelihood.nu must be one of {list(STUDENT_T_NU)}, "
                            f"got {shown(lik.nu)}")
        # The bound enters as log(censor_below): it must be a finite positive number of nats.
        if not _positive(lik.censor_below, 0.0, MAX_ARG) or not lik.censor_below > 0:
            raise SpecError(f"spec {shown(self.name)}: likelihood.censor_below must be > 0 and finite "
                            f"(QiD in nats, at most {MAX_ARG:g}), got {shown(lik.censor_below)}")
        if not lik.sigma.family.positive:
            raise SpecError(f"spec {shown(self.name)}: likelihood.sigma needs a positive prior, "
                            f"got {shown(lik.sigma.dist)}")
        if lik.sigma_by is not None and lik.sigma_by not in GROUPS:
            raise SpecError(f"spec {shown(self.name)}: likelihood.sigma_by: unknown group "
                            f"{shown(lik.sigma_by)}; "
                            f"known: {list(GROUPS)}")
        if not lik.sigma_sd.family.positive:
            raise SpecError(f"spec {shown(self.name)}: likelihood.sigma_sd needs a positive prior, "
                            f"got {shown(lik.sigma_sd.dist)}")

    @property
    def law_obj(self) -> Law:
        """The law form object."""
        return get_law(self.law)

    def prior(self, param: str) -> Prior:
        """Population prior of ``param`` (or of a recipe shift): the spec's override, else the
        law's default."""
        if param in self.recipe_shifts:
            return self.recipe_prior
        return self.priors.get(param, self.law_obj.parameter(param).prior)

    @property
    def recipe_terms(self) -> tuple[tuple[str, str], ...]:
        """(coefficient, encoded recipe column) of every recipe shift, in a fixed order."""
        return tuple((p, col) for p in self.law_obj.param_names for cov in self.recipe.get(p, ())
                     for col in RECIPE_COVARIATES[cov])

    @property
    def recipe_shifts(self) -> tuple[str, ...]:
        """Variable names of the recipe shifts (:func:`bayesqid.lang.recipe.shift_name`)."""
        return tuple(shift_name(p, col) for p, col in self.recipe_terms)

    def effect_sd(self, effect: Effect, param: str) -> Prior:
        """Prior of the group-effect standard deviation of ``param`` in ``effect``."""
        return effect.sd.get(param, self.law_obj.parameter(param).effect_sd)

    def effect(self, group: str) -> Effect | None:
        """The effect entry of ``group``, if the spec has one."""
        return next((e for e in self.effects if e.group == group), None)

    def centre_shift(self, group: str, param: str) -> float:
        """``feature(centre)`` of ``param``'s offsets over ``group``: what a slope offset's
        feature is measured from (0 without a centre, for the intercept, and for recipe
        shifts). A level's offset ``b`` adds ``b * (feature(x) - shift)`` to the log-mean."""
        eff = self.effect(group)
        law = self.law_obj
        if eff is None or not eff.centre or param == law.intercept:
            return 0.0
        raw = {"params": PARAMS_SCALE, "tokens": TOKENS_SCALE, "bits": BITS_SCALE} | dict(eff.centre)
        x = covariates(raw["params"], raw["tokens"], raw["bits"])
        return float(law.features[param](x))

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (the TOML layout)."""
        return {
            "spec_version": self.version,
            "name": self.name,
            "description": self.description,
            "law": self.law,
            "likelihood": {
                "kind": self.likelihood.kind,
                "nu": self.likelihood.nu,
                "censor_below": self.likelihood.censor_below,
                "sigma": self.likelihood.sigma.to_dict(),
                # Only when set: specs with one residual scale keep their stored JSON.
                **({"sigma_by": self.likelihood.sigma_by, "sigma_sd": self.likelihood.sigma_sd.to_dict()}
                   if self.likelihood.sigma_by else {}),
            },
            "effects": {
                e.group: {"params": list(e.params),
                          "parametrization": (e.parametrization if isinstance(e.parametrization, str)
                                              else dict(e.parametrization)),
                          "sd": {k: v.to_dict() for k, v in e.sd.items()},
                          # Only when set: specs without a centre keep their stored JSON.
                          **({"centre": dict(e.centre)} if e.centre else {}),
                          **({"nu": dict(e.nu)} if e.nu else {})}
                for e in self.effects
            },
            "priors": {k: v.to_dict() for k, v in self.priors.items()},
            **({"recipe": {**{p: list(c) for p, c in self.recipe.items()},
                           "prior": self.recipe_prior.to_dict()}} if self.recipe else {}),
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), stored in saved runs."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str = "spec") -> ModelSpec:
        """Build a spec from its plain-dict form, with one-line :class:`SpecError` on problems."""
        known = {"spec_version", "name", "description", "law", "likelihood", "effects", "priors", "recipe"}
        check_shape(raw, where)
        _check_keys(raw, known, where)
        version = raw.get("spec_version", SPEC_VERSION)
        if version != SPEC_VERSION:
            raise SpecError(f"{where}: spec_version {shown(version)} is not supported (this bayesqid "
                            f"reads version {SPEC_VERSION})")
        name = _typed(raw, "name", str, where)
        law = _typed(raw, "law", str, where)
        if law not in LAWS:  # before any message quotes it at length
            raise SpecError(f"{where}: unknown law {shown(law)}; known: {sorted(LAWS)}")
        lik_raw = raw.get("likelihood", {})
        _check_keys(lik_raw, {"kind", "nu", "censor_below", "sigma", "sigma_by", "sigma_sd"},
                    f"{where}: likelihood")
        default = Likelihood()
        likelihood = Likelihood(
            kind=_typed(lik_raw, "kind", str, f"{where}: likelihood", default.kind),
            nu=_typed(lik_raw, "nu", int, f"{where}: likelihood", default.nu),
            censor_below=_as_float(_typed(lik_raw, "censor_below", (int, float), f"{where}: likelihood",
                                          default.censor_below)),
            sigma=(Prior.from_dict(lik_raw["sigma"], where=f"{where}: likelihood.sigma")
                   if "sigma" in lik_raw else default.sigma),
            sigma_by=_typed(lik_raw, "sigma_by", str, f"{where}: likelihood", None),
            sigma_sd=(Prior.from_dict(lik_raw["sigma_sd"], where=f"{where}: likelihood.sigma_sd")
                      if "sigma_sd" in lik_raw else default.sigma_sd),
        )
        effects = []
        eff_raw = raw.get("effects", {})
        if not isinstance(eff_raw, Mapping):
            raise SpecError(f"{where}: 'effects' must be a table of groups")
        for group, body in eff_raw.items():
            loc = f"{where}: effects.{group}"
            _check_keys(body, {"params", "sd", "parametrization", "centre", "nu"}, loc)
            params = body.get("params")
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                known = f"; law {shown(law)} has {list(LAWS[law].param_names)}" if law in LAWS else ""
                raise SpecError(f"{loc}: 'params' must be a list of parameter names, "
                                f"got {shown(params)}{known}")
            sd_raw = body.get("sd", {})
            if not isinstance(sd_raw, Mapping):
                raise SpecError(f"{loc}: 'sd' must be a table of priors")
            sd = {k: Prior.from_dict(v, where=f"{loc}.sd.{k}") for k, v in sd_raw.items()}
            param_kind = _typed(body, "parametrization", (str, Mapping), loc, "auto")
            centre = _typed(body, "centre", Mapping, loc, {})
            nu = _typed(body, "nu", (int, float, Mapping), loc, {})
            # One number gives every varying coefficient Student-t offsets.
            nu = dict(nu) if isinstance(nu, Mapping) else dict.fromkeys(params, nu)
            effects.append(Effect(group=group, params=tuple(params), sd=sd, parametrization=param_kind,
                                  centre=dict(centre), nu=nu))
        pri_raw = raw.get("priors", {})
        if not isinstance(pri_raw, Mapping):
            raise SpecError(f"{where}: 'priors' must be a table of priors")
        priors = {k: Prior.from_dict(v, where=f"{where}: priors.{k}") for k, v in pri_raw.items()}
        rec_raw = dict(raw.get("recipe", {})) if isinstance(raw.get("recipe", {}), Mapping) else None
        if rec_raw is None:
            raise SpecError(f"{where}: 'recipe' must be a table of coefficient = [covariates]")
        recipe_prior = (Prior.from_dict(rec_raw.pop("prior"), where=f"{where}: recipe.prior")
                        if "prior" in rec_raw else normal(0.0, 1.0))
        for p, covs in rec_raw.items():
            if not isinstance(covs, list) or not all(isinstance(c, str) for c in covs):
                raise SpecError(f"{where}: recipe.{p} must be a list of recipe covariates "
                                f"({list(RECIPE_COVARIATES)}), got {shown(covs)}")
        try:
            return cls(name=name, law=law, effects=tuple(effects), likelihood=likelihood,
                       priors=priors, description=_typed(raw, "description", str, where, ""), version=version,
                       recipe={p: tuple(c) for p, c in rec_raw.items()}, recipe_prior=recipe_prior)
        except SpecError as err:
            raise SpecError(f"{where}: {err}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of :meth:`to_json`; :class:`SpecError` for text that is not a spec's JSON."""
        where = "stored spec"
        if len(text) > MAX_FILE_BYTES:
            raise SpecError(f"{where}: larger than {MAX_FILE_BYTES} characters")
        try:
            raw = json.loads(text)
        except RecursionError:  # json's decoder recurses once per nested array or object
            raise SpecError(f"{where}: nested too deeply; a spec nests at most {MAX_DEPTH} "
                            "levels") from None
        except ValueError as err:
            raise SpecError(f"{where}: not JSON ({err})") from None
        return cls.from_dict(raw, where=where)


def _check_keys(raw: Any, known: set[str], where: str) -> None:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a table, got {type(raw).__name__}")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; valid: {sorted(known)}")


def _typed(raw: Mapping[str, Any], key: str, types: Any, where: str, default: Any = ...) -> Any:
    if key not in raw:
        if default is ...:
            raise SpecError(f"{where}: missing required key {shown(key)}")
        return default
    value = raw[key]
    # bool is an int subclass: accept it only where a bool is asked for.
    wants_bool = types is bool
    if isinstance(value, bool) != wants_bool or not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise SpecError(f"{where}: {shown(key)} must be {names}, got {shown(value)}")
    return value


# --- the shipped specs --------------------------------------------------------------------

def specs_dir() -> Path:
    """Directory of the specs shipped with the package (``models/`` in the repository)."""
    packaged = resources.files("bayesqid") / "models"
    if packaged.is_dir():
        return Path(str(packaged))
    # Editable installs read the repository's models/ directly.
    return Path(__file__).resolve().parents[3] / "models"


def available_specs() -> dict[str, Path]:
    """Shipped spec names and their files."""
    return {p.stem: p for p in sorted(specs_dir().glob("*.toml"))}


def load_spec(name_or_path: str | Path | None = None) -> ModelSpec:
    """Load a shipped spec by name, or any spec TOML by path (default: :data:`DEFAULT_SPEC`).

    Raises
    ------
    SpecError
        Unknown name, unreadable file, invalid TOML or invalid content.
    """
    target = DEFAULT_SPEC if name_or_path is None else name_or_path
    path = Path(target)
    if not (path.suffix == ".toml" or path.exists()):
        shipped = available_specs()
        if str(target) not in shipped:
            raise SpecError(f"unknown spec {shown(str(target))}; shipped specs: {sorted(shipped)} "
                            "(or give a path to a .toml file)")
        path = shipped[str(target)]
    try:
        if path.is_dir():
            raise SpecError(f"{path}: is a directory, not a spec file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(f"{path}: larger than {MAX_FILE_BYTES} bytes; a spec is a few small tables")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read spec ({err.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: invalid TOML ({err})") from None
    except RecursionError:  # tomllib's parser recurses once per nested array or inline table
        raise SpecError(f"{path}: nested too deeply; a spec nests at most {MAX_DEPTH} levels") from None
    return ModelSpec.from_dict(raw, where=str(path))
