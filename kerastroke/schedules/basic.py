"""Schedules: pure functions `step -> amount`, with the amount in [0, 1].

`step` is the epoch index Keras passes to `on_epoch_end` (or the optimizer's
step count at batch frequency), so a schedule needs no state to resume.
"""

import math

import attrs

from kerastroke.core import checks
from kerastroke.core.serialization import register


@register("schedules.constant")
@attrs.frozen
class Constant:
    """`amount(step) = value`.

    Args:
        value: Float in [0, 1].

    Example:
    >>> constant(0.25)(100)
    0.25
    """

    value: float = attrs.field(default=1.0, converter=lambda v: checks.fraction("value", v))

    def __call__(self, step):
        checks.step(step)
        return self.value


@register("schedules.decay")
@attrs.frozen
class Decay:
    """`amount(step) = min(1.0, initial * rate ** step)`.

    A rate above 1 grows the amount, never past 1.0 (kerastroke 2.x's `decay`).
    Steps and rates for which `rate ** step` overflows a float still follow
    the formula: no OverflowError is raised.

    Args:
        initial: Float in [0, 1], the amount at step 0.
        rate: Finite float >= 0, the factor applied per step.

    Example:
    >>> decay(0.5, 0.5)(2)
    0.125
    >>> decay(0.5, 4.0)(3)
    1.0
    """

    initial: float = attrs.field(converter=lambda v: checks.fraction("initial", v))
    rate: float = attrs.field(converter=lambda v: checks.non_negative("rate", v))

    def __call__(self, step):
        step = checks.step(step)
        initial, rate = self.initial, self.rate
        if initial == 0.0 or rate == 1.0:
            return initial
        if rate < 1.0:
            # Every rate below 1 has underflowed to 0.0 by step 2**64, and a
            # float power cannot take a step too large to convert to a float.
            return min(1.0, initial * rate ** min(step, 2**64))
        try:
            return min(1.0, initial * rate**step)
        except OverflowError:
            # rate**step is beyond the float range; the product can still be
            # below 1.0 when `initial` is tiny, so it is formed in logarithms.
            log_amount = math.log(initial) + min(step, 2**64) * math.log(rate)
            return 1.0 if log_amount >= 0.0 else math.exp(log_amount)


def _steps(value):
    if value is None:
        return None
    value = checks.integer("steps", value, minimum=-1)
    return None if value == -1 else value


@register("schedules.cutoff")
@attrs.frozen
class Cutoff:
    """`amount(step) = schedule(step)` while `step < steps`, else 0.0.

    Args:
        schedule: Any schedule (callable `step -> amount`).
        steps: Number of steps the schedule runs for. None or -1: never cut off.

    Example:
    >>> s = cutoff(constant(1.0), 3)
    >>> [s(step) for step in range(5)]
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """

    schedule: object = attrs.field(validator=lambda i, a, v: checks.callable_("schedule", v))
    steps: int | None = attrs.field(default=None, converter=_steps)

    def __call__(self, step):
        step = checks.step(step)
        if self.steps is not None and step >= self.steps:
            return 0.0
        return self.schedule(step)


constant = Constant
decay = Decay
cutoff = Cutoff
