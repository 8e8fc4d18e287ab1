"""The three kinds of piece, and the Rule that joins one of each.

A selector answers *which* entries change, a mutator *what* they become, a
schedule *how much* at a step. Any callable with the right call is a piece;
the built-ins are small attrs classes so they also validate their parameters,
print well and serialise.
"""

from typing import Any, Callable, Protocol

import attrs

from kerastroke.core import checks, serialization


class Selector(Protocol):
    """`select(weights, amount, seed) -> bool mask` of the weights' shape.

    A selector that needs more than the weights declares it with a class
    attribute `inputs`, a tuple of names from `kerastroke.engine.probes.INPUTS`
    (`inputs = ("gradient",)`). The callback then measures each named input
    for every targeted variable on its `probe` batch before an application,
    and the engine passes it as a keyword argument of the weights' shape:
    `select(weights, amount, seed, gradient=g)`.
    """

    def __call__(self, weights: Any, amount: float, seed: int) -> Any: ...


class Mutator(Protocol):
    """`mutate(weights, mask, seed) -> new weights`; entries outside the mask kept."""

    def __call__(self, weights: Any, mask: Any, seed: int) -> Any: ...


Schedule = Callable[[int], float]
"""`schedule(step) -> amount` in [0, 1]; 0 means "do nothing at this step"."""


def _callable(name):
    def validate(instance, attribute, value):
        checks.callable_(name, value)

    return validate


SCOPES = ("tensor", "global")


def _scope(instance, attribute, value):
    if value not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}. Received: scope={value!r}")


def _default_schedule():
    from kerastroke.schedules import constant

    return constant(1.0)


@attrs.frozen
class Rule:
    """One technique step: a selector, a mutator and a schedule.

    At step `s` the rule asks `schedule(s)` for an amount; if it is 0 nothing
    happens. Otherwise `selector(w, amount, seed)` picks entries and
    `mutator(w, mask, seed)` gives their new values.

    Args:
        selector: Callable `(weights, amount, seed) -> bool mask`.
        mutator: Callable `(weights, mask, seed) -> new weights`.
        schedule: Callable `step -> amount`; defaults to `schedules.constant(1.0)`.
        scope: "tensor" runs the selector on each targeted tensor on its own;
            "global" runs it once on all targeted tensors taken together (so
            `smallest_magnitude` ranks across the whole model and the amount
            is a fraction of all targeted entries).

    Example:
    >>> from kerastroke import Rule, selectors, mutators, schedules
    >>> rule = Rule(selectors.value_range(-0.01, 0.01), mutators.zero(),
    ...             schedules.cutoff(schedules.constant(1.0), 10))
    """

    selector: Selector = attrs.field(validator=_callable("selector"))
    mutator: Mutator = attrs.field(validator=_callable("mutator"))
    schedule: Schedule = attrs.field(
        factory=_default_schedule, validator=_callable("schedule")
    )
    scope: str = attrs.field(default="tensor", kw_only=True, validator=_scope)

    def get_config(self):
        """A JSON-ready dict; raises TypeError if a piece is an unregistered callable."""
        return {
            "selector": serialization.serialize(self.selector),
            "mutator": serialization.serialize(self.mutator),
            "schedule": serialization.serialize(self.schedule),
            "scope": self.scope,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        scope = config.pop("scope", "tensor")
        pieces = {key: serialization.deserialize(value) for key, value in config.items()}
        return cls(**pieces, scope=scope)
