"""Model specifications: shipped specs, round trips, and one-line errors for every bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from bayesqid.errors import SpecError
from bayesqid.lang.laws import LAWS
from bayesqid.lang.priors import PRIOR_FAMILIES, Prior, halfnormal, normal
from bayesqid.lang.spec import (
    GROUPS,
    LIKELIHOODS,
    PARAMETRIZATIONS,
    SPEC_VERSION,
    Effect,
    Likelihood,
    ModelSpec,
    available_specs,
    load_spec,
)

SHIPPED = sorted(available_specs())


def base_dict() -> dict:
    """A valid spec in plain-dict (TOML) form, exercising every section."""
    return {
        "spec_version": SPEC_VERSION,
        "name": "test",
        "description": "a test spec",
        "law": "ouyang",
        "likelihood": {"kind": "student_t", "nu": 4, "censor_below": 0.02,
                       "sigma": {"dist": "halfnormal", "sigma": 1.0}},
        "effects": {
            "family": {"params": ["log_k", "alpha"], "parametrization": {"alpha": "non_centered"},
                       "sd": {"alpha": {"dist": "gamma", "alpha": 2.0, "beta": 10.0}}},
            "quantizer": {"params": ["log_k"], "parametrization": "centered", "sd": {}},
        },
        "priors": {"gamma": {"dist": "normal", "mu": 5.0, "sigma": 1.0}},
    }


def assert_one_line_error(err: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def spec_error(raw: dict, *fragments: str) -> str:
    with pytest.raises(SpecError) as err:
        ModelSpec.from_dict(raw)
    return assert_one_line_error(err, *fragments)


# --- shipped specs and round trips -----------------------------------------------------------


def test_default_spec_is_shipped():
    assert {"ouyang", "ouyang_sharp", "ouyang_lineage"} <= set(SHIPPED)
    assert load_spec().name == "ouyang_lineage"
    assert load_spec() == load_spec("ouyang_lineage") == load_spec(available_specs()["ouyang_lineage"])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_loads_and_round_trips(name):
    spec = load_spec(name)
    assert spec.name == name, "a shipped spec's name should match its file name"
    assert spec.law in LAWS
    assert spec.description.strip()
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    again = ModelSpec.from_json(spec.to_json())
    assert again.to_json() == spec.to_json()
    assert sorted(again.effects, key=repr) == sorted(spec.effects, key=repr)
    assert (again.law, again.likelihood, again.priors) == (spec.law, spec.likelihood, spec.priors)
    # to_json is plain JSON with sorted keys (stored in NetCDF attrs)
    assert json.loads(spec.to_json()) == json.loads(json.dumps(spec.to_dict()))


def test_custom_spec_round_trips():
    spec = ModelSpec.from_dict(base_dict())
    assert spec.prior("gamma") == normal(5.0, 1.0)
    assert spec.prior("alpha") == LAWS["ouyang"].parameter("alpha").prior
    fam = spec.effect("family")
    assert fam.parametrization_of("alpha") == "non_centered"
    assert fam.parametrization_of("log_k") == "auto"
    assert spec.effect("quantizer").parametrization_of("log_k") == "centered"
    assert spec.effect("eval_set") is None
    assert spec.effect_sd(fam, "alpha") == Prior("gamma", {"alpha": 2.0, "beta": 10.0})
    assert spec.effect_sd(fam, "log_k") == LAWS["ouyang"].parameter("log_k").effect_sd
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.to_dict() == base_dict()


def test_defaults_fill_missing_sections():
    spec = ModelSpec.from_dict({"name": "minimal", "law": "kumar"})
    assert spec.effects == ()
    assert spec.likelihood == Likelihood()
    assert spec.version == SPEC_VERSION
    assert ModelSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("law", sorted(LAWS))
def test_every_law_accepts_effects_on_all_its_parameters(law):
    params = list(LAWS[law].param_names)
    raw = {"name": law, "law": law, "effects": {g: {"params": params} for g in GROUPS}}
    spec = ModelSpec.from_dict(raw)
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_json(spec.to_json()).to_json() == spec.to_json()


@pytest.mark.parametrize("name", SHIPPED)
def test_json_round_trip_is_equal(name):
    spec = load_spec(name)
    assert ModelSpec.from_json(spec.to_json()) == spec


# --- bad specs: one line, naming the valid choices -------------------------------------------


def with_(path: str, value) -> dict:
    """``base_dict()`` with the dotted ``path`` set to ``value``."""
    raw = copy.deepcopy(base_dict())
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def without(path: str) -> dict:
    raw = copy.deepcopy(base_dict())
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    del node[last]
    return raw


def test_unknown_law():
    spec_error(with_("law", "nosuch"), "unknown law 'nosuch'", *sorted(LAWS))


def test_unknown_parameter_in_effects():
    spec_error(with_("effects.family.params", ["log_k", "delta"]), "'delta'", "known", "alpha", "gamma")


def test_unknown_parameter_in_effect_sd():
    raw = with_("effects.family.sd", {"delta": {"dist": "halfnormal", "sigma": 1.0}})
    spec_error(raw, "'delta'", "known", "log_k")


def test_effect_sd_on_a_parameter_that_does_not_vary():
    raw = with_("effects.family.sd", {"beta": {"dist": "halfnormal", "sigma": 1.0}})
    spec_error(raw, "do not vary", "beta")


def test_unknown_parameter_in_priors():
    raw = with_("priors", {"delta": {"dist": "normal", "mu": 0, "sigma": 1}})
    spec_error(raw, "'delta'", "known", "log_k")


def test_unknown_parameter_in_parametrization_map():
    spec_error(with_("effects.family.parametrization", {"delta": "centered"}), "'delta'", "known")


def test_parametrization_map_on_a_parameter_that_does_not_vary():
    spec_error(with_("effects.family.parametrization", {"beta": "centered"}), "beta")


@pytest.mark.parametrize("value", ["sideways", {"alpha": "sideways"}, {"alpha": 1}])
def test_invalid_parametrization(value):
    spec_error(with_("effects.family.parametrization", value), "parametrization", *PARAMETRIZATIONS)


def test_unknown_group():
    raw = with_("effects.vendor", {"params": ["log_k"]})
    spec_error(raw, "unknown group 'vendor'", *GROUPS)


def test_group_listed_twice():
    effect = Effect("family", ("log_k",))
    with pytest.raises(SpecError) as err:
        ModelSpec("twice", "ouyang", effects=(effect, effect))
    assert_one_line_error(err, "listed twice")


def test_effect_varying_nothing():
    spec_error(with_("effects.family.params", []), "varies no parameter")


@pytest.mark.parametrize(
    ("path", "bad_key"),
    [("", "colour"), ("likelihood", "df"), ("effects.family", "slopes")],
    ids=["top", "likelihood", "effect"],
)
def test_unknown_key(path, bad_key):
    raw = copy.deepcopy(base_dict())
    node = raw
    for key in filter(None, path.split(".")):
        node = node[key]
    node[bad_key] = 1
    msg = spec_error(raw, f"unknown key(s) ['{bad_key}']", "valid")
    valid = {"": ["law", "likelihood", "effects", "priors"],
             "likelihood": ["kind", "nu", "censor_below", "sigma"],
             "effects.family": ["params", "sd", "parametrization"]}[path]
    assert all(f"'{k}'" in msg for k in valid)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("likelihood.nu", "four", "'nu' must be int"),
        ("likelihood.nu", 4.0, "'nu' must be int"),
        ("likelihood.nu", True, "'nu' must be int"),
        ("likelihood.censor_below", "0.02", "'censor_below' must be int/float"),
        ("likelihood.censor_below", False, "'censor_below' must be int/float"),
        ("likelihood.kind", 1, "'kind' must be str"),
        ("name", 3, "'name' must be str"),
        ("law", ["ouyang"], "'law' must be str"),
        ("effects.family.params", "log_k", "'params' must be a list"),
        ("effects.family.params", ["log_k", 1], "'params' must be a list"),
        ("effects.family.sd", "gamma", "'sd' must be a table"),
        ("effects.family", ["log_k"], "expected a table"),
        ("effects", ["family"], "'effects' must be a table"),
        ("priors", ["gamma"], "'priors' must be a table"),
        ("likelihood", "student_t", "expected a table"),
        ("effects.family.parametrization", 3, "'parametrization' must be str"),
    ],
)
def test_wrong_type(path, value, fragment):
    spec_error(with_(path, value), fragment)


def test_missing_required_key():
    spec_error(without("law"), "missing required key 'law'")
    spec_error(without("name"), "missing required key 'name'")


@pytest.mark.parametrize(
    ("path", "value", "fragments"),
    [
        ("likelihood.kind", "cauchy", ("unknown likelihood 'cauchy'", *LIKELIHOODS)),
        ("likelihood.nu", 3, ("nu must be one of", "[2, 4]")),
        ("likelihood.censor_below", 0.0, ("censor_below must be > 0",)),
        ("likelihood.censor_below", -0.01, ("censor_below must be > 0",)),
        ("likelihood.sigma", {"dist": "normal", "mu": 0, "sigma": 1}, ("positive prior", "normal")),
    ],
)
def test_invalid_likelihood(path, value, fragments):
    spec_error(with_(path, value), *fragments)


def test_normal_likelihood_ignores_nu():
    raw = with_("likelihood", {"kind": "normal", "nu": 3})
    assert ModelSpec.from_dict(raw).likelihood.kind == "normal"


@pytest.mark.parametrize(
    ("prior", "fragments"),
    [
        ({"dist": "cauchy", "beta": 1.0}, ("unknown prior distribution 'cauchy'", *sorted(PRIOR_FAMILIES))),
        ({"dist": "normal", "mu": 0.0, "sigma": -1.0}, ("'sigma' must be finite and positive",)),
        ({"dist": "normal", "mu": 0.0, "sigma": 0.0}, ("'sigma' must be finite and positive",)),
        ({"dist": "normal", "mu": 0.0}, ("takes arguments ['mu', 'sigma']",)),
        ({"dist": "normal", "mu": 0.0, "sigma": 1.0, "nu": 3.0}, ("takes arguments ['mu', 'sigma']",)),
        ({"dist": "normal", "mu": "zero", "sigma": 1.0}, ("'mu' must be a number",)),
        ({"dist": "normal", "mu": True, "sigma": 1.0}, ("'mu' must be a number",)),
        ({"dist": "normal", "mu": float("nan"), "sigma": 1.0}, ("'mu' must be finite",)),
        ({"dist": "normal", "mu": 0.0, "sigma": float("inf")}, ("'sigma' must be finite",)),
        ({"mu": 0.0, "sigma": 1.0}, ("a prior is a table like",)),
        ("normal", ("a prior is a table like",)),
    ],
)
def test_invalid_prior_in_spec(prior, fragments):
    msg = spec_error(with_("priors.gamma", prior), *fragments)
    assert "priors.gamma" in msg, "the message should say where the prior is"


def test_invalid_prior_in_effect_sd_names_its_location():
    raw = with_("effects.family.sd.alpha", {"dist": "gamma", "alpha": 2.0, "beta": -1.0})
    spec_error(raw, "effects.family.sd.alpha", "'beta' must be finite and positive")


@pytest.mark.parametrize("version", [0, 2, "1"])
def test_unsupported_spec_version(version):
    raw = with_("spec_version", version)
    spec_error(raw, f"spec_version {version!r} is not supported", str(SPEC_VERSION))


# --- files -------------------------------------------------------------------------------------


def test_load_spec_from_path(tmp_path):
    path = tmp_path / "mine.toml"
    text = 'name = "mine"\nlaw = "dn_ratio"\n[effects.family]\nparams = ["beta"]\n'
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    assert spec.law == "dn_ratio"
    assert spec.effect("family").params == ("beta",)
    assert load_spec(str(path)) == spec


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nlaw = \n[effects\n', encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert_one_line_error(err, str(path), "invalid TOML")


def test_invalid_content_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nlaw = "nosuch"\n', encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert_one_line_error(err, str(path), "unknown law 'nosuch'")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\nlaw = "ouyang"\n'.encode("latin-1"))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert_one_line_error(err, str(path))


def test_missing_file(tmp_path):
    path = tmp_path / "nosuch.toml"
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert_one_line_error(err, str(path), "does not exist")


def test_unknown_shipped_name():
    with pytest.raises(SpecError) as err:
        load_spec("nosuch")
    assert_one_line_error(err, "unknown spec 'nosuch'", *SHIPPED)


def test_stored_spec_errors_are_spec_errors():
    with pytest.raises(SpecError) as err:
        ModelSpec.from_json(json.dumps(with_("law", "nosuch")))
    assert_one_line_error(err, "stored spec", "unknown law")


# --- Prior ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dist", sorted(PRIOR_FAMILIES))
def test_prior_round_trip_and_draw(dist):
    family = PRIOR_FAMILIES[dist]
    args = {name: (3.0 if name == "nu" else 1.5) for name in family.args}
    prior = Prior(dist, args)
    assert Prior.from_dict(prior.to_dict()) == prior
    assert Prior.from_dict(json.loads(json.dumps(prior.to_dict()))) == prior
    assert prior.to_dict() == {"dist": dist, **args}
    assert str(prior).startswith(str(prior).split("(")[0]) and "1.5" in str(prior)
    rng = np.random.default_rng(7)
    draws = prior.draw(rng, 500)
    assert draws.shape == (500,)
    assert np.isfinite(draws).all()
    if family.positive:
        assert (draws > 0).all()


def test_prior_args_become_floats():
    prior = Prior("normal", {"mu": 0, "sigma": 2})
    assert prior.args == {"mu": 0.0, "sigma": 2.0}
    assert all(type(v) is float for v in prior.args.values())
    assert prior == normal(0.0, 2.0)
    assert halfnormal(1).to_dict() == {"dist": "halfnormal", "sigma": 1.0}


def test_prior_draws_are_reproducible():
    prior = normal(0.0, 1.0)
    a = prior.draw(np.random.default_rng(3), 10)
    b = prior.draw(np.random.default_rng(3), 10)
    np.testing.assert_array_equal(a, b)


def test_prior_draw_of_one_has_shape_one():
    assert normal(0.0, 1.0).draw(np.random.default_rng(0), 1).shape == (1,)


def test_prior_to_pymc_creates_named_variable():
    import pymc as pm

    with pm.Model() as model:
        Prior("gamma", {"alpha": 2.0, "beta": 2.0}).to_pymc("s")
    assert [v.name for v in model.free_RVs] == ["s"]


# --- recipe shifts ---------------------------------------------------------------------------


def test_recipe_shifts_are_named_and_round_trip():
    spec = load_spec("ouyang_recipe")
    assert spec.recipe == {"log_k": ("annealed", "lr_frac"), "beta": ("annealed", "lr_frac")}
    assert spec.recipe_shifts[:2] == ("d_log_k_annealed_true", "d_log_k_annealed_unknown")
    assert spec.prior("d_beta_lr_frac") == spec.recipe_prior
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert "recipe" not in load_spec("ouyang").to_dict()  # specs without shifts are unchanged


@pytest.mark.parametrize(("recipe", "match"), [
    ({"beta": ["tokens_per_param"]}, r"recipe.beta: unknown recipe covariate 'tokens_per_param'; known: "),
    ({"delta": ["annealed"]}, "delta"),
    ({"beta": "annealed"}, "recipe.beta must be a list of recipe covariates"),
])
def test_bad_recipe_entries_are_one_line_errors(recipe, match):
    raw = load_spec("ouyang").to_dict() | {"recipe": recipe}
    with pytest.raises(SpecError, match=match):
        ModelSpec.from_dict(raw, where="x.toml")


# --- effect centres --------------------------------------------------------------------------


def _with_family_centre(centre) -> dict:
    raw = load_spec("ouyang").to_dict()
    raw["effects"]["family"]["centre"] = centre
    return raw


def test_family_centre_round_trips_and_sets_the_slope_shifts():
    spec = ModelSpec.from_dict(_with_family_centre({"params": 7e9, "tokens": 1e11}))
    assert ModelSpec.from_json(spec.to_json()) == spec
    # Shift = the slope's feature at the centre: -log(N / 1e9) for alpha, log(D / 1e12) for beta.
    assert spec.centre_shift("family", "alpha") == pytest.approx(-np.log(7.0))
    assert spec.centre_shift("family", "beta") == pytest.approx(np.log(0.1))
    assert spec.centre_shift("family", "gamma") == 0.0  # bits left at the reference cell
    assert spec.centre_shift("family", "log_k") == 0.0  # the intercept does not pivot
    assert spec.centre_shift("quantizer", "gamma") == 0.0  # no centre for that group
    assert "centre" not in load_spec("ouyang").to_dict()["effects"]["family"]  # stored JSON unchanged


@pytest.mark.parametrize(("centre", "match"), [
    ({"size": 7e9}, r"effects.family.centre: unknown covariate 'size'; known: \['params', 'tokens', 'bits'\]"),
    ({"params": -1.0}, r"effects.family.centre.params must be a positive number, got -1.0"),
    ({"params": "7e9"}, r"effects.family.centre.params must be a positive number"),
    ({"params": True}, r"effects.family.centre.params must be a positive number"),
])
def test_bad_centres_are_one_line_errors(centre, match):
    with pytest.raises(SpecError, match=match) as err:
        ModelSpec.from_dict(_with_family_centre(centre), where="x.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("x.toml: ")


def test_centre_needs_a_linear_law(monkeypatch):
    from dataclasses import replace

    curved = replace(LAWS["ouyang"], name="curved", intercept=None, features={})
    monkeypatch.setitem(LAWS, "curved", curved)
    raw = {"name": "c", "law": "curved", "effects": {"family": {"params": ["alpha"], "centre": {"params": 7e9}}}}
    with pytest.raises(SpecError, match="centre needs a law linear in its coefficients; 'curved' is not"):
        ModelSpec.from_dict(raw, where="x.toml")


# --- Student-t offsets ----------------------------------------------------------------------


def _with_family_nu(nu) -> dict:
    raw = load_spec("ouyang").to_dict()
    raw["effects"]["family"]["nu"] = nu
    return raw


def test_family_nu_round_trips_per_coefficient_or_for_all():
    one = ModelSpec.from_dict(_with_family_nu({"beta": 3}))
    assert ModelSpec.from_json(one.to_json()) == one
    fam = one.effect("family")
    assert fam.nu_of("beta") == 3.0 and fam.nu_of("alpha") is None
    every = ModelSpec.from_dict(_with_family_nu(4.5)).effect("family")
    assert {p: every.nu_of(p) for p in every.params} == dict.fromkeys(every.params, 4.5)
    assert "nu" not in load_spec("ouyang").to_dict()["effects"]["family"]  # stored JSON unchanged


@pytest.mark.parametrize(("nu", "match"), [
    ({"sigma": 3}, r"effects.family.nu names 'sigma', which does not vary by family"),
    ({"beta": 0}, r"effects.family.nu.beta must be a positive number, got 0"),
    ({"beta": True}, r"effects.family.nu.beta must be a positive number, got True"),
    ({"beta": "3"}, r"effects.family.nu.beta must be a positive number"),
    ("3", r"effects.family: 'nu' must be int/float/Mapping, got '3'"),
])
def test_bad_effect_nu_is_a_one_line_error(nu, match):
    with pytest.raises(SpecError, match=match) as err:
        ModelSpec.from_dict(_with_family_nu(nu), where="x.toml")
    assert "\n" not in str(err.value) and str(err.value).startswith("x.toml: ")


# --- residual scales per level ----------------------------------------------------------------


def _with_scale_by(**lik) -> dict:
    raw = load_spec("ouyang").to_dict()
    raw["likelihood"].update(lik)
    return raw


def test_residual_scale_by_group_round_trips():
    spec = ModelSpec.from_dict(_with_scale_by(sigma_by="family",
                                              sigma_sd={"dist": "gamma", "alpha": 2.0, "beta": 4.0}))
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert spec.likelihood.sigma_by == "family" and spec.likelihood.sigma_sd.dist == "gamma"
    assert "sigma_by" not in load_spec("ouyang").to_dict()["likelihood"]  # stored JSON unchanged


@pytest.mark.parametrize(("lik", "match"), [
    ({"sigma_by": "model"}, r"likelihood.sigma_by: unknown group 'model'; known: \['lineage', 'family'"),
    ({"sigma_by": 3}, r"likelihood: 'sigma_by' must be str, got 3"),
    ({"sigma_by": "family", "sigma_sd": {"dist": "normal", "mu": 0.0, "sigma": 1.0}},
     r"likelihood.sigma_sd needs a positive prior, got 'normal'"),
])
def test_bad_residual_scale_groups_are_one_line_errors(lik, match):
    with pytest.raises(SpecError, match=match) as err:
        ModelSpec.from_dict(_with_scale_by(**lik), where="x.toml")
    assert "\n" not in str(err.value)


# --- class 2 of the bad-input corpus: every number in range, shape bounded, valid means buildable --

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bayesqid.lang.priors import ARG_LIMITS, MAX_ARG, MIN_NU, MIN_POSITIVE_ARG  # noqa: E402
from bayesqid.lang.spec import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES  # noqa: E402

_POSITIVE_ARGS = {"sigma", "lam", "nu", "alpha", "beta"}


def prior_dicts(*, positive: bool) -> st.SearchStrategy[dict]:
    """Valid priors in TOML form, arguments anywhere in their allowed ranges."""
    families = sorted(n for n, f in PRIOR_FAMILIES.items() if f.positive or not positive)

    def bounds(name: str, a: str) -> tuple[float, float]:
        default = (MIN_POSITIVE_ARG, MAX_ARG) if a in _POSITIVE_ARGS else (-MAX_ARG, MAX_ARG)
        return ARG_LIMITS.get((name, a), default)

    def args(name: str) -> st.SearchStrategy[dict]:
        return st.fixed_dictionaries({a: st.floats(*bounds(name, a)) for a in PRIOR_FAMILIES[name].args})

    return st.sampled_from(families).flatmap(lambda n: args(n).map(lambda a: {"dist": n, **a}))


@st.composite
def valid_spec_dicts(draw) -> dict:
    """A spec every part of which is drawn within its documented range."""
    law = LAWS[draw(st.sampled_from(sorted(LAWS)))]
    params = list(law.param_names)
    some = st.lists(st.sampled_from(params), min_size=1, unique=True)
    effects = {}
    for group in draw(st.lists(st.sampled_from(list(GROUPS)), unique=True)):
        varied = draw(some)
        body = {"params": varied,
                "parametrization": draw(st.one_of(st.sampled_from(PARAMETRIZATIONS), st.dictionaries(
                    st.sampled_from(varied), st.sampled_from(PARAMETRIZATIONS)))),
                "sd": draw(st.dictionaries(st.sampled_from(varied), prior_dicts(positive=True), max_size=2))}
        if draw(st.booleans()):
            body["centre"] = draw(st.dictionaries(st.sampled_from(["params", "tokens", "bits"]),
                                                  st.floats(1e-3, 1e20), max_size=3))
        if draw(st.booleans()):
            body["nu"] = draw(st.one_of(st.floats(MIN_NU, MAX_ARG), st.dictionaries(
                st.sampled_from(varied), st.floats(MIN_NU, MAX_ARG))))
        effects[group] = body
    likelihood = {"kind": draw(st.sampled_from(LIKELIHOODS)), "nu": draw(st.sampled_from([2, 4])),
                  "censor_below": draw(st.floats(1e-12, 1e3)), "sigma": draw(prior_dicts(positive=True))}
    if draw(st.booleans()):
        likelihood |= {"sigma_by": draw(st.sampled_from(list(GROUPS))),
                       "sigma_sd": draw(prior_dicts(positive=True))}
    raw = {"name": "generated", "law": law.name, "likelihood": likelihood, "effects": effects,
           "priors": draw(st.dictionaries(st.sampled_from(params), prior_dicts(positive=False), max_size=3))}
    if law.is_linear and draw(st.booleans()):
        from bayesqid.lang.recipe import RECIPE_COVARIATES

        raw["recipe"] = draw(st.dictionaries(st.sampled_from(params), st.lists(
            st.sampled_from(sorted(RECIPE_COVARIATES)), min_size=1, unique=True), max_size=2))
        raw["recipe"]["prior"] = draw(prior_dicts(positive=False))
    return raw


@pytest.fixture(scope="module")
def tiny():
    """A small design of the reference data (3 families, 2 quantizers, 1 eval set)."""
    import bayesqid as bq
    from bayesqid.checks.simulate import tiny_design
    from bayesqid.data.design import build_design

    frame = tiny_design(bq.load_reference(), max_rows=30).frame
    return build_design(frame), frame["qid"].to_numpy(float)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(raw=valid_spec_dicts())
# Every row censored (censor_below above all QiD) once drove the whitened pilot's censored
# stand-in to t ~ 1e300, where its curvature overflowed to NaN.
@example(raw={"name": "generated", "law": "dn_ratio", "effects": {},
              "likelihood": {"kind": "normal", "nu": 2, "censor_below": 10.0,
                             "sigma": {"dist": "exponential", "lam": 0.25}},
              "priors": {"beta": {"dist": "lognormal", "mu": -53.0, "sigma": 0.03125}}})
def test_every_valid_spec_builds_its_models(raw, tiny):
    """Any spec that validates builds the direct model and, where the law is linear, the
    whitened model with finite data (what `fit` samples by default); nothing is sampled."""
    from bayesqid.engines.direct import build_model
    from bayesqid.engines.linear import linear_system
    from bayesqid.engines.whitened import build_whitened_model, white_data, whitenable

    design, qid = tiny
    spec = ModelSpec.from_dict(raw)
    assert ModelSpec.from_json(spec.to_json()) == spec
    model = build_model(spec, design, qid)
    assert model.free_RVs
    if whitenable(spec) is None:
        system = linear_system(spec, design)
        by = spec.likelihood.sigma_by
        group = None if by is None else np.asarray(design.codes[by], np.int64)
        data = white_data(spec, system, qid, None, group, 1 if by is None else len(design.levels[by]))
        for name, value in data.as_data(by is not None).items():
            assert np.isfinite(value).all(), name
        build_whitened_model(spec, system, design.levels, data, group)


#: Paths into a valid spec, and values out of their range there (every number class of the spec).
OUT_OF_RANGE = {
    "likelihood.censor_below": [float("inf"), float("nan"), 0.0, -1.0, 1e300, 10**400],
    "priors.gamma": [{"dist": "normal", "mu": m, "sigma": 1.0} for m in (float("inf"), -1e7, 1e300, 10**400)]
    + [{"dist": "normal", "mu": 0.0, "sigma": s} for s in (0.0, -1.0, 1e-9, 1e7, float("nan"))]
    + [{"dist": "student_t", "nu": n, "mu": 0.0, "sigma": 1.0} for n in (0.0, -2.0, float("inf"))]
    + [{"dist": "gamma", "alpha": 0.0, "beta": 1.0}, {"dist": "exponential", "lam": -1.0},
       {"dist": "lognormal", "mu": 710.0, "sigma": 1.0}, {"dist": "lognormal", "mu": 0.0, "sigma": 527.0},
       {"dist": "student_t", "nu": 1e-6, "mu": 0.0, "sigma": 1e6}],
    "effects.family.nu": [0.0, -1.0, float("inf"), float("nan"), 1e9, 10**400, {"alpha": 0.0}],
    "effects.family.centre": [{"params": v} for v in (0.0, -7e9, float("inf"), float("nan"), 1e40, 10**400)],
    "likelihood.sigma": [{"dist": "halfnormal", "sigma": v} for v in (0.0, float("inf"), 1e7)],
}
_OUT_CASES = [(path, value) for path, values in OUT_OF_RANGE.items() for value in values]


@pytest.mark.parametrize(("path", "value"), _OUT_CASES,
                         ids=[f"{p}-{i}" for i, (p, _) in enumerate(_OUT_CASES)])
def test_numbers_out_of_range_are_one_line_errors(path, value):
    spec_error(with_(path, value), path.split(".")[-1])


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(MAX_DEPTH, 3000),
       where=st.sampled_from(["description", "effects", "priors", "likelihood.sigma",
                              "effects.family.params"]),
       kind=st.sampled_from(["list", "table"]))
def test_deep_nesting_is_one_line_error_in_toml_and_json(depth, where, kind, tmp_path_factory):
    """Nesting of any depth: one SpecError line, never a RecursionError, from TOML, JSON or a dict."""
    value: object = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"x": value}
    with pytest.raises(SpecError) as err:
        ModelSpec.from_dict(with_(where, value))
    assert_one_line_error(err)
    # As a run's stored JSON (written by hand: json.dumps itself stops at ~1000 levels).
    deep_json = "1"
    for _ in range(depth):
        deep_json = f"[{deep_json}]" if kind == "list" else f'{{"x": {deep_json}}}'
    with pytest.raises(SpecError) as err:
        ModelSpec.from_json(json.dumps(with_(where, "DEEP")).replace('"DEEP"', deep_json))
    assert_one_line_error(err)
    inner = "1"
    for _ in range(depth):
        inner = f"[{inner}]" if kind == "list" else f"{{x = {inner}}}"
    path = tmp_path_factory.mktemp("deep") / "deep.toml"
    path.write_text(f'name = "x"\nlaw = "ouyang"\ndescription = {inner}\n', encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert_one_line_error(err, str(path))


@pytest.mark.parametrize("case", ["nodes", "text", "key", "file"])
def test_size_is_bounded(case, tmp_path):
    raw = base_dict()
    if case == "nodes":
        raw["description"] = list(range(MAX_NODES + 1))
        spec_error(raw, "too large")
    elif case == "text":
        raw["description"] = "x" * 20_000
        spec_error(raw, "longer than")
    elif case == "key":
        raw["priors"] = {"a" * 1000: {"dist": "normal", "mu": 0, "sigma": 1}}
        msg = spec_error(raw, "is not a name")
        assert len(msg) < 400
    else:
        path = tmp_path / "big.toml"
        path.write_text('name = "x"\nlaw = "ouyang"\n' + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
        with pytest.raises(SpecError, match="larger than"):
            load_spec(path)


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.text(min_size=200, max_size=5000),
                       st.lists(st.integers(), min_size=50, max_size=500),
                       st.integers(10**50, 10**400)))
def test_messages_echo_bad_values_short(value):
    """A huge bad value is echoed cut short: the line stays short enough to read."""
    for path in ("law", "likelihood.kind", "likelihood.nu", "effects.family.params", "spec_version"):
        with pytest.raises(SpecError) as err:
            ModelSpec.from_dict(with_(path, value))
        assert len(assert_one_line_error(err)) < 600
