"""Learning-rate schedules of the training lab, as fractions of the peak learning rate.

A schedule is a pure function of the number of optimizer steps taken. The learning rate of
the update that takes the model from step ``t - 1`` to step ``t`` is ``peak * frac(t)``, for
``t = 1 .. total``; so ``frac(t)`` is also "the learning rate at the checkpoint after ``t``
steps" (the ``lr_frac`` column of the lab's rows), and a schedule that decays reaches its
floor exactly on the last update. No torch here: the training loop sets each step's rate.

Schedules (after a linear warmup from ``1/warmup`` to 1 over ``warmup`` steps):

- ``cosine``: half a cosine from 1 down to ``floor`` at ``total``;
- ``linear``: a straight line from 1 down to ``floor`` at ``total``;
- ``wsd`` (warmup-stable-decay): 1 until ``decay_start``, then linear down to ``floor`` at
  ``total``; a cooldown branch from a stable-phase checkpoint at step ``s`` is the same
  schedule with ``decay_start = s`` and a later ``total`` (:func:`cooldown_end`);
- ``constant``: 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SCHEDULES", "Schedule", "cooldown_end", "wsd_decay_start"]

#: Known schedule names, in the order they are listed in messages.
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear", "wsd")


def wsd_decay_start(total: int, decay_frac: float) -> int:
    """Step at which a WSD run of ``total`` steps starts to decay.

    The decay covers ``decay_frac`` of the run, rounded to whole steps and at least one
    step (a WSD run always ends annealed).
    """
    decay = max(1, round(decay_frac * total))
    return max(0, total - decay)


def cooldown_end(start: int, decay_frac: float) -> int:
    """Last step of a cooldown branch that leaves the stable phase at step ``start``.

    The branch decays for ``decay_frac`` of its own length, as the main WSD run does, so it
    ends at ``start / (1 - decay_frac)`` steps (at least one step after ``start``).
    """
    return max(start + 1, round(start / (1.0 - decay_frac)))


@dataclass(frozen=True)
class Schedule:
    """One learning-rate schedule over ``total`` steps.

    Parameters
    ----------
    kind : str
        One of :data:`SCHEDULES`.
    total : int
        Steps of the run (the schedule's end; decaying schedules reach ``floor`` there).
    warmup : int
        Steps of linear warmup (0 for none).
    floor : float
        Final fraction of the peak rate of a decaying schedule, in [0, 1].
    decay_start : int, optional
        Step where a ``wsd`` schedule leaves its stable phase (required for ``wsd``).
    """

    kind: str
    total: int
    warmup: int = 0
    floor: float = 0.0
    decay_start: int | None = None

    def __post_init__(self) -> None:
        # Config validation reports bad values with their keys; these guard direct use.
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; known: {list(SCHEDULES)}")
        if self.total < 1 or self.warmup < 0 or not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"bad schedule {self}")
        if self.kind == "wsd" and (self.decay_start is None or not 0 <= self.decay_start < self.total):
            raise ValueError(f"wsd needs 0 <= decay_start < total, got {self}")

    def frac(self, step: int) -> float:
        """Learning rate of the update that reaches ``step`` (1-based), over the peak rate."""
        t = min(max(int(step), 0), self.total)
        if self.kind == "wsd":
            assert self.decay_start is not None
            if t > self.decay_start:  # decay: a line from 1 at decay_start to floor at total
                p = (t - self.decay_start) / (self.total - self.decay_start)
                return self._warm(t) * (1.0 - (1.0 - self.floor) * p)
            return self._warm(t)
        if self.kind == "constant" or t <= self.warmup:
            return self._warm(t)
        p = (t - self.warmup) / (self.total - self.warmup)
        if self.kind == "cosine":
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * p))
        return self.floor + (1.0 - self.floor) * (1.0 - p)  # linear

    def _warm(self, t: int) -> float:
        return min(1.0, t / self.warmup) if self.warmup > 0 else 1.0

    def annealed(self, step: int) -> bool:
        """Whether a checkpoint at ``step`` ends a decay of the rate (cosine, linear, wsd end)."""
        return self.kind != "constant" and int(step) == self.total
