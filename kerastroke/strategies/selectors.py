"""Selectors: `select(weights, amount, seed) -> bool mask`, *which* entries change.

Every built-in selector has a notion of *eligible* entries and picks exactly
`round(amount * eligible)` of them uniformly at random, without replacement.
`amount=1.0` picks every eligible entry; `amount=0.0` picks none.

Combinators build new selectors from old ones: `intersection`, `union` and
`complement` combine the parts' full selections (each part is asked with
`amount=1.0`), then pick `amount` of the result, with the same exact count.
"""

import attrs
from keras import ops

from kerastroke.core import arrays, checks, seeds
from kerastroke.core.serialization import register


def _selector(name):
    def validate(instance, attribute, value):
        checks.callable_(name, value)

    return validate


@register("selectors.random_fraction")
@attrs.frozen
class RandomFraction:
    """Every entry is eligible; picks `round(amount * size)` of them at random.

    Example:
    >>> import numpy as np
    >>> mask = random_fraction()(np.zeros((4, 5), "float32"), 0.25, seed=0)
    >>> int(mask.sum())
    5
    """

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        w = arrays.tensor(weights)
        mask = arrays.choose(ops.ones(arrays.shape(w), dtype="bool"), amount, seed)
        return arrays.like(mask, weights)


@register("selectors.value_range")
@attrs.frozen
class ValueRange:
    """Eligible: entries with `low <= w <= high`; NaN and inf never are.

    The comparison is exact in the weights' dtype (bounds are not rounded
    into the range). With `amount < 1` a random subset of the eligible
    entries is picked.

    Args:
        low: Lower bound, inclusive (may be -inf).
        high: Upper bound, inclusive (may be inf). Must be >= `low`.

    Example:
    >>> import numpy as np
    >>> w = np.array([-0.3, -0.01, 0.0, 0.02, 0.5], "float32")
    >>> value_range(-0.05, 0.05)(w, 1.0, seed=0).tolist()
    [False, True, True, True, False]
    """

    low: float
    high: float

    def __attrs_post_init__(self):
        low, high = checks.ordered("low", self.low, "high", self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        w = arrays.tensor(weights)
        mask = arrays.choose(arrays.in_range(w, self.low, self.high), amount, seed)
        return arrays.like(mask, weights)


def _parts(value):
    parts = tuple(value)
    if not parts:
        raise ValueError("A selector combinator needs at least one selector. Received: parts=()")
    for index, part in enumerate(parts):
        checks.callable_(f"parts[{index}]", part)
    return parts


def _combined(parts, combine, weights, amount, seed):
    """Folds the parts' full selections with `combine`, then picks `amount` of them."""
    amount = checks.amount(amount)
    eligible = None
    for selection in _full_selections(parts, weights, seed):
        eligible = selection if eligible is None else combine(eligible, selection)
    return arrays.like(arrays.choose(eligible, amount, seed), weights)


def _full_selections(parts, weights, seed):
    w = arrays.tensor(weights)
    for index, part in enumerate(parts):
        yield arrays.tensor(part(w, 1.0, seeds.derive(seed, "part", index)), "bool")


@register("selectors.intersection")
@attrs.frozen
class Intersection:
    """Eligible: entries every part selects. Built by `intersection(*parts)`."""

    parts: tuple = attrs.field(converter=_parts)

    def __call__(self, weights, amount, seed):
        return _combined(self.parts, ops.logical_and, weights, amount, seed)


@register("selectors.union")
@attrs.frozen
class Union:
    """Eligible: entries any part selects. Built by `union(*parts)`."""

    parts: tuple = attrs.field(converter=_parts)

    def __call__(self, weights, amount, seed):
        return _combined(self.parts, ops.logical_or, weights, amount, seed)


@register("selectors.complement")
@attrs.frozen
class Complement:
    """Eligible: entries the selector does not select. Built by `complement(selector)`."""

    selector: object = attrs.field(validator=_selector("selector"))

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        (selection,) = _full_selections((self.selector,), weights, seed)
        return arrays.like(arrays.choose(ops.logical_not(selection), amount, seed), weights)


def intersection(*parts):
    """A selector whose eligible entries are those every part selects.

    Example:
    >>> import numpy as np
    >>> near_zero = value_range(-0.1, 0.1)
    >>> not_zero = complement(value_range(0.0, 0.0))
    >>> w = np.array([0.0, 0.05, -0.5, -0.02], "float32")
    >>> intersection(near_zero, not_zero)(w, 1.0, seed=0).tolist()
    [False, True, False, True]
    """
    return Intersection(parts)


def union(*parts):
    """A selector whose eligible entries are those at least one part selects.

    Example:
    >>> import numpy as np
    >>> tails = union(value_range(-np.inf, -1.0), value_range(1.0, np.inf))
    >>> tails(np.array([-2.0, 0.0, 3.0], "float32"), 1.0, seed=0).tolist()
    [True, False, True]
    """
    return Union(parts)


def complement(selector):
    """A selector whose eligible entries are those `selector` does not select.

    Example:
    >>> import numpy as np
    >>> complement(value_range(0.0, 0.0))(np.array([0.0, 1.0], "float32"), 1.0, 0).tolist()
    [False, True]
    """
    return Complement(selector)


random_fraction = RandomFraction
value_range = ValueRange

# Magnitude-ranked selectors keep their ranking machinery in magnitude.py.
from kerastroke.strategies.magnitude import (  # noqa: E402
    DropAndGrowSelection,
    SmallestMagnitude,
    SmallestUnits,
    drop_and_grow,
    smallest_magnitude,
    smallest_units,
)
