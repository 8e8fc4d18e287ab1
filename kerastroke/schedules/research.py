"""Schedules from the sparse-training literature, and a frequency wrapper.

- `polynomial`: the sparsity ramp of TensorFlow Model Optimization's
  `PolynomialDecay` (Zhu and Gupta 2017, "To prune, or not to prune").
- `cosine`: the drop-fraction decay of RigL (Evci et al. 2020).
- `every`: apply another schedule only on every n-th step.
"""

import math

import attrs

from kerastroke.core import checks
from kerastroke.core.serialization import register


@register("schedules.polynomial")
@attrs.frozen
class Polynomial:
    """A sparsity ramp from `initial` to `final` between steps `begin` and `end`.

    With `p = (step - begin) / (end - begin)` clamped to [0, 1]:
    `amount(step) = final + (initial - final) * (1 - p) ** power` from `begin`
    on, and 0.0 (do nothing) before `begin`. After `end` it stays at `final`.

    Args:
        initial: Amount at `begin`, in [0, 1].
        final: Amount from `end` on, in [0, 1].
        begin: First step at which the schedule acts (int >= 0).
        end: Step at which `final` is reached (int > begin).
        power: Exponent of the ramp (> 0); 3 is tfmot's default.

    Example:
    >>> s = polynomial(0.0, 0.8, begin=0, end=4, power=1)
    >>> [round(s(step), 2) for step in range(6)]
    [0.0, 0.2, 0.4, 0.6, 0.8, 0.8]
    """

    initial: float = attrs.field(converter=lambda v: checks.fraction("initial", v))
    final: float = attrs.field(converter=lambda v: checks.fraction("final", v))
    begin: int = attrs.field(converter=lambda v: checks.integer("begin", v, minimum=0))
    end: int = attrs.field(converter=lambda v: checks.integer("end", v, minimum=0))
    power: float = attrs.field(default=3.0, converter=lambda v: checks.finite("power", v))

    def __attrs_post_init__(self):
        if self.end <= self.begin:
            raise ValueError(
                f"`end` must be greater than `begin`. Received: begin={self.begin}, end={self.end}"
            )
        if self.power <= 0:
            raise ValueError(f"`power` must be > 0. Received: power={self.power!r}")

    def __call__(self, step):
        step = checks.step(step)
        if step < self.begin:
            return 0.0
        progress = min(1.0, (step - self.begin) / (self.end - self.begin))
        return self.final + (self.initial - self.final) * (1.0 - progress) ** self.power


@register("schedules.cosine")
@attrs.frozen
class Cosine:
    """RigL's cosine decay: `amount(step) = initial / 2 * (1 + cos(pi * step / end))`.

    From `end` on the amount is 0.0, so the rule stops.

    Args:
        initial: Amount at step 0, in [0, 1].
        end: Number of steps over which the amount decays to 0 (int >= 1).

    Example:
    >>> s = cosine(0.3, end=4)
    >>> [round(s(step), 3) for step in range(5)]
    [0.3, 0.256, 0.15, 0.044, 0.0]
    """

    initial: float = attrs.field(converter=lambda v: checks.fraction("initial", v))
    end: int = attrs.field(converter=lambda v: checks.integer("end", v, minimum=1))

    def __call__(self, step):
        step = checks.step(step)
        if step >= self.end:
            return 0.0
        return self.initial / 2.0 * (1.0 + math.cos(math.pi * step / self.end))


@register("schedules.every")
@attrs.frozen
class Every:
    """`schedule(step)` on every `n`-th step counted from `offset`, else 0.0.

    Args:
        schedule: Any schedule (callable `step -> amount`).
        n: Period in steps (int >= 1).
        offset: First step that acts (int >= 0); earlier steps give 0.0.

    Example:
    >>> s = every(lambda step: 0.5, 3, offset=1)
    >>> [s(step) for step in range(8)]
    [0.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5]
    """

    schedule: object = attrs.field(validator=lambda i, a, v: checks.callable_("schedule", v))
    n: int = attrs.field(converter=lambda v: checks.integer("n", v, minimum=1))
    offset: int = attrs.field(default=0, converter=lambda v: checks.integer("offset", v, minimum=0))

    def __call__(self, step):
        step = checks.step(step)
        if step < self.offset or (step - self.offset) % self.n:
            return 0.0
        return self.schedule(step)


polynomial = Polynomial
cosine = Cosine
every = Every
