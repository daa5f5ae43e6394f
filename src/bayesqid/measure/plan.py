"""Measurement settings: checked once, turned into units of work and their resume keys.

Torch-free, so that bad options are reported before the lab's heavy imports. A *unit* is one
checkpoint under one method (every bit width and group size of it); its key is a hash of the
checkpoint's weights and of every setting that changes its rows, so a rerun of the same command
recognises the units an earlier run already wrote.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bayesqid.constants import DEFAULT_SEED
from bayesqid.errors import DataError

#: Method options and the names rows give them (the reference data's spelling).
METHOD_LABELS: dict[str, str] = {
    "rtn": "RTN", "rtn-sym": "RTN (symmetric)", "gptq": "GPTQ", "gptq-sym": "GPTQ (symmetric)",
    "w8a8": "W8A8",
}  # fmt: skip
#: Methods whose bit width and granularity are fixed: W8A8 is 8-bit per-channel weights.
FIXED_GRID: dict[str, tuple[tuple[int, int | None], ...]] = {"w8a8": ((8, None),)}
#: Methods that need GPTQ Hessians from the calibration pass.
HESSIAN_METHODS: frozenset[str] = frozenset({"gptq", "gptq-sym"})
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Predicted evaluation tokens below which QiD is refused (its noise is the size of the effects
#: measured), and below which a measurement warns.
MIN_EVAL_TOKENS = 200
WARN_EVAL_TOKENS = 2000
#: Bumped when a change to the algorithms changes rows, so old rows are not resumed.
ALGORITHM_VERSION = 1


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, str) or not isinstance(value, Iterable):
        return (value,)
    return tuple(value)


def _integer(value: Any, option: str, low: int, high: float = math.inf) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high
    if not ok:
        upper = "" if high == math.inf else f"..{int(high)}"
        wanted = f"in {low}{upper}" if upper else f">= {low}"
        raise DataError(f"{option}: expected an integer {wanted}, got {value!r}")
    return int(value)


def parse_group_size(value: Any) -> int | None:
    """``None``, ``"per-channel"`` (or ``"none"``) mean per-channel; else a positive integer.

    Raises
    ------
    DataError
        Naming ``--group-size``.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("per-channel", "none")):
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise DataError(
                f"--group-size: expected a positive integer or 'per-channel', got {value!r}") from None
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
        raise DataError(f"--group-size: expected a positive integer or 'per-channel', got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    """Every option of a measurement, checked (see :func:`bayesqid.measure.qid.measure`)."""

    bits: tuple[int, ...] = (2, 3, 4, 8)
    methods: tuple[str, ...] = ("rtn", "gptq")
    group_sizes: tuple[int | None, ...] = (128,)
    family: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_eval_tokens: int = 65536
    calib_tokens: int = 32768
    seq_len: int | None = None
    quantize_head: bool = False
    act_order: bool = False
    percdamp: float = 0.01
    seed: int = DEFAULT_SEED
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, **options: Any) -> Settings:
        """Check and normalise options; raise a one-line :class:`DataError` naming the option."""
        bits = tuple(dict.fromkeys(
            _integer(b, "--bits", 2, 8) for b in _as_tuple(options.pop("bits", cls.bits))))
        methods = tuple(dict.fromkeys(
            str(m).strip().lower() for m in _as_tuple(options.pop("methods", cls.methods))))
        for method in methods:
            if method not in METHOD_LABELS:
                raise DataError(
                    f"--method: unknown method {method!r} (choose from {', '.join(METHOD_LABELS)})")
        groups = tuple(dict.fromkeys(
            parse_group_size(g) for g in _as_tuple(options.pop("group_sizes", cls.group_sizes))))
        if not bits or not methods or not groups:
            raise DataError("--bits, --method and --group-size each need at least one value")
        settings = cls(bits=bits, methods=methods, group_sizes=groups, **options)
        if settings.family is not None and not str(settings.family).strip():
            raise DataError("--family: must not be empty")
        if settings.device not in DEVICES and not str(settings.device).startswith("cuda:"):
            raise DataError(f"--device: expected one of {', '.join(DEVICES)}, got {settings.device!r}")
        if settings.dtype not in DTYPES:
            raise DataError(f"dtype: expected one of {', '.join(DTYPES)}, got {settings.dtype!r}")
        _integer(settings.max_eval_tokens, "--max-eval-tokens", MIN_EVAL_TOKENS)
        _integer(settings.calib_tokens, "calib_tokens", 1)
        if settings.seq_len is not None:
            _integer(settings.seq_len, "seq_len", 2)
        _integer(settings.seed, "--seed", 0)
        if not (isinstance(settings.percdamp, numbers.Real) and 0 < settings.percdamp < 1e3):
            raise DataError(f"percdamp: expected a positive number, got {settings.percdamp!r}")
        return settings

    def grid(self, method: str) -> tuple[tuple[int, int | None], ...]:
        """The (bits, group_size) pairs a method is measured at."""
        return FIXED_GRID.get(method, tuple((b, g) for b in self.bits for g in self.group_sizes))

    def unit_key(self, method: str, identity: Mapping[str, Any]) -> str:
        """Resume key of one (checkpoint, method) unit.

        Parameters
        ----------
        method : str
            Method option name.
        identity : mapping
            What identifies the checkpoint and its texts: weights sha256, model name, family,
            tokens, corpora names and hashes.

        Returns
        -------
        str
            16 hex digits of a sha256 over all of it and every setting that changes the rows.
        """
        payload = {
            "version": ALGORITHM_VERSION, "method": method, "grid": self.grid(method),
            "dtype": self.dtype, "max_eval_tokens": self.max_eval_tokens, "calib_tokens": self.calib_tokens,
            "seq_len": self.seq_len, "quantize_head": self.quantize_head, "seed": self.seed,
            "extra": dict(self.extra), **identity,
        }  # fmt: skip
        if method in HESSIAN_METHODS:
            payload |= {"act_order": self.act_order, "percdamp": self.percdamp}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def method_settings(self, method: str) -> str:
        """The method's own settings as compact JSON (a row's ``settings`` column)."""
        values: dict[str, Any] = {"quantize_head": self.quantize_head}
        if method in HESSIAN_METHODS:
            values |= {"act_order": self.act_order, "percdamp": self.percdamp, "hessian": "one-shot"}
        if method == "w8a8":
            values |= {"activations": "per-token dynamic 8-bit"}
        return json.dumps(values, sort_keys=True, separators=(",", ":"))


def per_checkpoint(value: Any, count: int, option: str) -> list[Any]:
    """One value for every checkpoint: a scalar is repeated, a sequence must match."""
    if value is None or isinstance(value, str | numbers.Number):
        return [value] * count
    values = list(value) if isinstance(value, Sequence) else [value]
    if len(values) != count:
        raise DataError(f"{option}: {len(values)} values for {count} checkpoint(s)")
    return values


@dataclass(frozen=True)
class Plan:
    """One checkpoint's row identity and the resume key of each of its methods.

    Parameters
    ----------
    model, family : str
        The ``model`` and ``family`` columns.
    tokens : float
        Training tokens (``tokens`` column).
    keys : dict of str to str
        Resume key (:meth:`Settings.unit_key`) by method option name.
    """

    model: str
    family: str
    tokens: float
    keys: dict[str, str]
