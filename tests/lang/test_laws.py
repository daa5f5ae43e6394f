"""Contract tests of the law registry: every registered law obeys the same rules."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesqid.errors import SpecError
from bayesqid.lang.laws import LAWS, OUYANG, covariates, get_law, published_ouyang

ALL_LAWS = list(LAWS.values())
law_params = pytest.mark.parametrize("law", ALL_LAWS, ids=lambda law: law.name)

#: The raw quantity behind each covariate, for the monotonicity check.
RAW_OF = {"log_n": "params", "log_d": "tokens", "log_bits": "bits", "bits_c": "bits"}
RAW_RANGE = {"params": (1e7, 1e12), "tokens": (1e9, 1e14), "bits": (2, 16)}


class Recording(Mapping):
    """A read-only mapping that records every key looked up."""

    def __init__(self, data):
        self._data = dict(data)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


def prior_means(law) -> dict[str, float]:
    """Population prior means of a law's coefficients (all shipped laws use Normal priors)."""
    out = {}
    for p in law.parameters:
        assert p.prior.dist in {"normal", "student_t"}, f"{law.name}.{p.name}: no mean for {p.prior.dist}"
        out[p.name] = p.prior.args["mu"]
    return out


def prior_draws(law, rng, n) -> list[dict[str, float]]:
    """``n`` joint draws of a law's coefficients from their population priors."""
    columns = {prm.name: prm.prior.draw(rng, n) for prm in law.parameters}
    return [{name: float(col[i]) for name, col in columns.items()} for i in range(n)]


def realistic_grid() -> dict[str, np.ndarray]:
    """N 1e7..1e12, D 1e9..1e14, bits 2..16, every combination."""
    n, d, b = np.meshgrid(np.logspace(7, 12, 11), np.logspace(9, 14, 11), np.arange(2, 17), indexing="ij")
    return covariates(n.ravel(), d.ravel(), b.ravel())


def random_covariates(rng, size=50) -> dict[str, np.ndarray]:
    n, d = 10 ** rng.uniform(7, 12, size), 10 ** rng.uniform(9, 14, size)
    return covariates(n, d, rng.integers(2, 17, size))


def test_registry_lookup():
    assert {"ouyang", "kumar", "dn_ratio"} <= set(LAWS)
    for name, law in LAWS.items():
        assert law.name == name
        assert get_law(name) is law
    with pytest.raises(SpecError, match=r"unknown law 'nosuch'; known: .*ouyang"):
        get_law("nosuch")


@law_params
def test_parameter_lookup_lists_known(law):
    assert law.parameter(law.param_names[0]).name == law.param_names[0]
    with pytest.raises(SpecError) as err:
        law.parameter("nosuch")
    assert all(name in str(err.value) for name in law.param_names)
    assert "\n" not in str(err.value)


@law_params
def test_log_mu_reads_exactly_its_parameters(law):
    rng = np.random.default_rng(1)
    x = random_covariates(rng)
    extra = {"unused_a": 1.0, "unused_b": 2.0}
    p = Recording({**prior_means(law), **extra})
    law.log_mu(x, p)
    assert p.read == set(law.param_names)
    assert len(set(law.param_names)) == len(law.param_names)


@law_params
def test_log_mu_reads_only_known_covariates(law):
    rng = np.random.default_rng(2)
    x = Recording(random_covariates(rng))
    law.log_mu(x, prior_means(law))
    assert x.read <= {"log_n", "log_d", "log_bits", "bits_c"}
    assert set(law.monotone) <= x.read, "a declared monotone covariate is not used by log_mu"


@law_params
def test_numpy_and_pytensor_agree(law):
    rng = np.random.default_rng(3)
    x_np = random_covariates(rng, size=40)
    x_sym = {k: pt.dvector(k) for k in x_np}
    p_sym = {name: pt.dscalar(name) for name in law.param_names}
    fn = pytensor.function([*x_sym.values(), *p_sym.values()], law.log_mu(x_sym, p_sym),
                           on_unused_input="ignore")
    for p in prior_draws(law, rng, 5):
        expected = law.log_mu(x_np, p)
        got = fn(*x_np.values(), *p.values())
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@law_params
def test_finite_on_realistic_grid(law):
    x = realistic_grid()
    rng = np.random.default_rng(4)
    for p in [prior_means(law), *prior_draws(law, rng, 10)]:
        out = np.asarray(law.log_mu(x, p))
        assert out.shape == x["log_n"].shape
        assert np.isfinite(out).all()


@law_params
def test_declared_monotone_directions_hold_at_prior_means(law):
    """Vary one raw quantity over its realistic range, holding the others at several values."""
    p = prior_means(law)
    assert law.monotone, "every law declares its directions"
    base = {"params": [1e8, 1e9, 1e11], "tokens": [1e10, 1e12, 1e14], "bits": [2, 4, 8]}
    for cov, direction in law.monotone.items():
        raw = RAW_OF[cov]
        lo, hi = RAW_RANGE[raw]
        sweep = np.arange(lo, hi + 1) if raw == "bits" else np.logspace(np.log10(lo), np.log10(hi), 25)
        for i in range(3):
            values = {k: np.full(sweep.shape, float(v[i])) for k, v in base.items()}
            values[raw] = sweep.astype(float)
            x = covariates(values["params"], values["tokens"], values["bits"])
            step = np.diff(np.asarray(law.log_mu(x, p)))
            if direction == "up":
                assert (step > 0).all(), f"{law.name}: QiD should rise with {cov}"
            else:
                assert (step < 0).all(), f"{law.name}: QiD should fall with {cov}"


@law_params
def test_linear_laws_match_their_features(law):
    if not law.is_linear:
        pytest.skip("not declared linear")
    assert law.intercept in law.param_names
    assert set(law.features) == set(law.param_names) - {law.intercept}
    rng = np.random.default_rng(5)
    x = random_covariates(rng, size=100)
    for _ in range(5):
        p = {name: rng.normal(0, 2) for name in law.param_names}
        by_features = p[law.intercept] + sum(p[j] * np.asarray(f(x)) for j, f in law.features.items())
        np.testing.assert_allclose(law.log_mu(x, p), by_features, rtol=1e-12, atol=1e-12)


@law_params
def test_documentation_fields(law):
    assert law.latex.strip() and law.citation.strip() and law.title.strip()
    assert set(law.monotone.values()) <= {"up", "down"}
    for prm in law.parameters:
        assert prm.doc.strip()
        assert prm.effect_sd.family.positive, f"{prm.name}: an sd prior must be positive"


# science.md, "QiD at 100T tokens from Eq. 8 (derived, nominal N)".
EQ8_100T = {
    (1e9, 2): 78.0, (1e9, 3): 8.40, (1e9, 4): 1.73,
    (7e9, 2): 50.3, (7e9, 3): 5.41, (7e9, 4): 1.11,
    (7e10, 2): 29.9, (7e10, 3): 3.22, (7e10, 4): 0.661,
    (4.05e11, 2): 20.1, (4.05e11, 3): 2.16, (4.05e11, 4): 0.445,
}  # fmt: skip


@pytest.mark.parametrize(("cell", "expected"), EQ8_100T.items(), ids=lambda v: str(v))
def test_published_ouyang_reproduces_100T_table(cell, expected):
    n, bits = cell
    x = covariates([n], [1e14], [bits])
    qid = float(np.exp(OUYANG.log_mu(x, published_ouyang()))[0])
    assert qid == pytest.approx(expected, rel=0.01)


def test_published_ouyang_matches_raw_eq8():
    """Eq. 8 on raw counts, QiD = k D^beta / (N^alpha P^gamma), at arbitrary points."""
    p = published_ouyang()
    assert set(p) == set(OUYANG.param_names)
    rng = np.random.default_rng(6)
    n, d, b = 10 ** rng.uniform(7, 12, 30), 10 ** rng.uniform(9, 14, 30), rng.integers(2, 9, 30)
    raw = 0.017 * d**0.5251 / (n**0.2261 * b.astype(float) ** 5.4967)
    np.testing.assert_allclose(np.exp(OUYANG.log_mu(covariates(n, d, b), p)), raw, rtol=1e-10)


@settings(max_examples=200, deadline=None)
@given(
    log10_n=st.floats(7, 12, allow_nan=False, allow_infinity=False),
    log10_d=st.floats(9, 14, allow_nan=False, allow_infinity=False),
    bits=st.integers(2, 16),
)
def test_no_nan_or_inf_at_prior_means(log10_n, log10_d, bits):
    x = covariates([10.0**log10_n], [10.0**log10_d], [bits])
    for law in ALL_LAWS:
        out = np.asarray(law.log_mu(x, prior_means(law)))
        assert np.isfinite(out).all(), law.name
        assert np.isfinite(np.exp(out)).all(), law.name


# --- property: declared monotone directions hold at any realistic point ------------------------


@settings(max_examples=150, deadline=None)
@given(
    law=st.sampled_from(ALL_LAWS),
    log10_n=st.floats(7, 12), log10_d=st.floats(9, 14), bits=st.integers(2, 16),
    raw=st.sampled_from(["params", "tokens", "bits"]),
    step=st.floats(0.01, 3.0),
)
def test_declared_monotonicity_holds_everywhere(law, log10_n, log10_d, bits, raw, step):
    """Raise one raw quantity from a random realistic point: QiD moves the declared way, finitely."""
    covs = [c for c, r in RAW_OF.items() if r == raw and c in law.monotone]
    if not covs:
        return
    direction = law.monotone[covs[0]]
    lo = {"params": 10.0**log10_n, "tokens": 10.0**log10_d, "bits": float(bits)}
    hi = dict(lo)
    hi[raw] = lo[raw] + max(1.0, round(step * 4)) if raw == "bits" else lo[raw] * 10.0**step
    p = prior_means(law)
    a, b = (float(np.asarray(law.log_mu(covariates([v["params"]], [v["tokens"]], [v["bits"]]), p))[0])
            for v in (lo, hi))
    assert np.isfinite(a) and np.isfinite(b)
    assert (b > a) if direction == "up" else (b < a), f"{law.name}: {raw} {lo[raw]:g} -> {hi[raw]:g}"
