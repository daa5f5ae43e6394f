"""Cell rules of the canonical schema: each parses one cell or raises :class:`Rule`.

A rule's message is the rule itself ("must be > 0"); :mod:`bayesqid.data.dataset` adds the file,
row and column. The recipe columns (how a model was trained) have their rules here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bayesqid.constants import BITS_RANGE


class Rule(Exception):
    """A cell breaks a rule; the message is the rule."""


def is_missing(value: Any) -> bool:
    # Frames mark missing values with None, NA or NaN; CSV files with an empty cell.
    if isinstance(value, str):
        return not value.strip()
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def parse_number(value: Any) -> float:
    if is_missing(value):
        raise Rule("missing value")
    if isinstance(value, bool | np.bool_):
        raise Rule("not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Rule("not a number") from None
    if not math.isfinite(number):  # 'nan', 'inf', and text like '1e400' that overflows
        raise Rule("not a finite number")
    return number


def parse_positive(value: Any) -> float:
    number = parse_number(value)
    if number <= 0:
        raise Rule("must be > 0")
    return number


def parse_bits(value: Any) -> int:
    number = parse_number(value)
    if not number.is_integer():
        raise Rule("bits must be an integer")
    low, high = BITS_RANGE
    if not low <= number <= high:
        raise Rule(f"bits must be within {low}..{high}")
    return int(number)


def parse_group_size(value: Any) -> Any:
    if is_missing(value):
        return pd.NA
    number = parse_number(value)
    # 2**53 bounds integers that float parsing represents exactly.
    if not (number.is_integer() and 1 <= number <= 2**53):
        raise Rule("must be a positive integer (empty = per-channel)")
    return int(number)


def parse_required_text(value: Any) -> str:
    if is_missing(value) and not isinstance(value, str):
        raise Rule("missing value")
    if not str(value).strip():
        raise Rule("must not be empty")
    return str(value)


def parse_optional_text(value: Any) -> str:
    return value if isinstance(value, str) else "" if is_missing(value) else str(value)


# --- recipe columns: how the measured checkpoint was trained ----------------------------------

#: The word for an unknown recipe value; an empty cell means the same.
UNKNOWN = "unknown"
#: Learning-rate schedules (``wsd``: warmup-stable-decay).
LR_SCHEDULES: tuple[str, ...] = ("cosine", "linear", "wsd", "constant", UNKNOWN)
#: Training precisions (the half-precision type of mixed-precision training, or fp32).
TRAIN_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8", UNKNOWN)
_TRUE = {"true", "yes", "1", "1.0"}
_FALSE = {"false", "no", "0", "0.0"}


def _unknown(value: Any) -> bool:
    return is_missing(value) or (isinstance(value, str) and value.strip().lower() == UNKNOWN)


def _choice(value: Any, choices: tuple[str, ...]) -> str:
    if _unknown(value):
        return UNKNOWN
    text = str(value).strip().lower()
    if text not in choices:
        raise Rule(f"must be one of {', '.join(choices)}")
    return text


def parse_lr_schedule(value: Any) -> str:
    """Learning-rate schedule; empty means unknown."""
    return _choice(value, LR_SCHEDULES)


def parse_precision(value: Any) -> str:
    """Training precision; empty means unknown."""
    return _choice(value, TRAIN_PRECISIONS)


def _optional_number(value: Any, valid: Callable[[float], bool], rule: str) -> float:
    """A number for which ``valid`` holds, or NaN when the cell says unknown; ``rule`` otherwise."""
    if _unknown(value):
        return float("nan")
    number = parse_number(value)
    if not valid(number):
        raise Rule(rule)
    return number


def parse_lr_frac(value: Any) -> float:
    """Learning rate at the checkpoint over the peak, in [0, 1]; empty means unknown (NaN)."""
    return _optional_number(value, lambda x: 0 <= x <= 1, "must be within 0..1")


def parse_weight_decay(value: Any) -> float:
    """Weight decay coefficient, >= 0; empty means unknown (NaN)."""
    return _optional_number(value, lambda x: x >= 0, "must be >= 0")


def _parse_flag(value: Any) -> Any:
    if _unknown(value):
        return pd.NA
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Rule("must be true, false or unknown")


def parse_annealed(value: Any) -> Any:
    """Whether the checkpoint ends a learning-rate decay: True, False or <NA> (unknown)."""
    return _parse_flag(value)


def parse_post_trained(value: Any) -> Any:
    """Whether the checkpoint was post-trained (instruct/chat tuning after pre-training):
    True, False or <NA> (unknown)."""
    return _parse_flag(value)


def parse_dropout(value: Any) -> float:
    """Dropout probability during training, in [0, 1); empty means unknown (NaN)."""
    return _optional_number(value, lambda x: 0 <= x < 1, "must be within 0..1 (1 excluded)")


def parse_grad_clip(value: Any) -> float:
    """Gradient-norm clipping threshold, >= 0; ``0`` or ``none`` mean no clipping; empty means
    unknown (NaN)."""
    if isinstance(value, str) and value.strip().lower() == "none":
        return 0.0
    return _optional_number(value, lambda x: x >= 0, "must be >= 0 (0 or none: no clipping)")


def parse_peak_lr(value: Any) -> float:
    """Peak learning rate of the run, > 0 and at most 10; empty means unknown (NaN)."""
    return _optional_number(value, lambda x: 0 < x <= 10, "must be > 0 and at most 10")


def parse_average_last(value: Any) -> float:
    """How many last checkpoints were averaged into the measured weights: an integer >= 0
    (0 or 1: not averaged); empty means unknown (NaN). A float, so that unknown is NaN."""
    # 2**53 bounds integers that float parsing represents exactly.
    return _optional_number(value, lambda x: x.is_integer() and 0 <= x <= 2**53,
                            "must be an integer >= 0 (0: not averaged)")
