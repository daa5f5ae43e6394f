"""Argument types of the command line, shared by ``cli.py`` and the lab's subcommands.

Each parses one option's text or raises ``argparse.ArgumentTypeError`` with the expected form,
which argparse turns into a one-line usage error (exit status 2).
"""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A positive integer (``--draws``, ``--workers``...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """A count that may be zero (``--retries``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


#: Largest seed: numpy's SeedSequence, PyMC and nutpie all take seeds in 0..2**32 - 1 unchanged.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """A random seed, an integer within 0..:data:`MAX_SEED` (numpy refuses negative seeds)."""
    expected = f"expected an integer seed within 0..{MAX_SEED}, got {text!r}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(expected)
    return value


def group_size(text: str) -> int | None:
    """A quantization group size: a positive integer, or ``per-channel`` (None)."""
    if text.strip().lower() in ("per-channel", "none", ""):
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'per-channel', got {text!r}") from None


def interval(text: str) -> float:
    """A central-interval mass in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def token_count(text: str) -> float:
    """A positive, finite number of tokens such as ``2.6e9``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens such as 2.6e9, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of tokens, got {text!r}")
    return value
