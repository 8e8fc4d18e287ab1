"""Selectors: `select(weights, amount, seed) -> bool mask`, *which* entries change.

Every built-in selector has a notion of *eligible* entries and picks exactly
`round(amount * eligible)` of them uniformly at random, without replacement.
`amount=1.0` picks every eligible entry; `amount=0.0` picks none.

Combinators build new selectors from old ones: `intersection`, `union` and
`complement` combine the parts' full selections (each part is asked with
`amount=1.0`), then pick `amount` of the result, with the same exact count.
"""

import attrs
import numpy as np
from keras import ops

from kerastroke.core import arrays, checks, ranking, seeds
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


# -- Ranked by magnitude: the pruning and sparse-training selectors.
# Ties at the threshold are broken uniformly at random, so every selector
# still picks an exact count; NaN and infinite entries are never eligible.

def magnitude(weights):
    """An integer key ordered exactly like |w|: the bits of w without the sign.

    For IEEE floats the magnitude bits order non-negative values exactly, and
    integers are compared exactly even where the backend flushes subnormal
    floats to zero. Half-precision keys are widened to int32 for ranking.
    """
    _, bits = arrays.order_keys(arrays.tensor(weights))
    return bits if arrays.dtype_name(bits) == "int64" else ops.cast(bits, "int32")


def smallest_scores(scores, eligible, k, seed):
    """Boolean mask of the `k` eligible entries with the smallest `scores`.

    Entries tied with the k-th smallest score are picked uniformly at random,
    so exactly `k` entries are True.
    """
    eligible = arrays.tensor(eligible, "bool")
    total = arrays.count(eligible)
    k = min(k, total)
    if k == 0:
        return ops.zeros(arrays.shape(eligible), dtype="bool")
    if k == total:
        return eligible
    flat_scores = ops.reshape(scores, (-1,))
    flat_eligible = ops.reshape(eligible, (-1,))
    # The k-th smallest eligible score, found by NumPy's introselect in O(n):
    # a backend top_k of half the entries costs several times more.
    candidates = ops.convert_to_numpy(flat_scores)[ops.convert_to_numpy(flat_eligible)]
    kth = np.partition(candidates, k - 1)[k - 1]
    threshold = arrays.scalar(kth, arrays.dtype_name(flat_scores))
    below = ops.logical_and(flat_eligible, ops.less(flat_scores, threshold))
    ties = ops.logical_and(flat_eligible, ops.equal(flat_scores, threshold))
    picked = ops.logical_or(below, arrays.choose_count(ties, k - arrays.count(below), seed))
    return ops.reshape(picked, arrays.shape(eligible))


@register("selectors.smallest_magnitude")
@attrs.frozen
class SmallestMagnitude:
    """Picks the `amount` fraction of eligible entries with the smallest |w|.

    Eligible: every finite entry, or, with `among`, the finite entries that
    selector picks (asked with amount 1.0). Exactly
    `round(amount * eligible)` entries are picked; ties at the threshold are
    broken at random. Entries already at zero rank first, so a growing amount
    keeps earlier pruning (the masks of magnitude pruning are nested).

    Args:
        among: Optional selector restricting the eligible entries.

    Example:
    >>> import numpy as np
    >>> w = np.array([0.5, -0.1, 0.02, -0.9, 0.3], "float32")
    >>> smallest_magnitude()(w, 0.4, seed=0).tolist()
    [False, True, True, False, False]
    """

    among: object = attrs.field(default=None)

    def __attrs_post_init__(self):
        if self.among is not None:
            checks.callable_("among", self.among)

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        w = arrays.tensor(weights)
        eligible = ops.isfinite(w)
        if self.among is not None:
            chosen = arrays.tensor(self.among(w, 1.0, seeds.derive(seed, "among")), "bool")
            eligible = ops.logical_and(eligible, chosen)
        k = round(amount * arrays.count(eligible))
        return arrays.like(smallest_scores(magnitude(w), eligible, k, seed), weights)


@register("selectors.smallest_units")
@attrs.frozen
class SmallestUnits:
    """Structured selection: whole output units (or filters) with the smallest norm.

    A unit is a slice along the last axis of a kernel: an output unit of a
    Dense kernel, a filter of a Conv kernel. Units are ranked by the
    L-`order` norm of their entries and `round(amount * units)` of the
    smallest are picked whole. A 1-D tensor (a bias) has one entry per unit.
    Units holding a NaN or inf are never picked.

    Args:
        order: 1 or 2, the norm used to rank units.

    Example:
    >>> import numpy as np
    >>> w = np.array([[1.0, 0.1, -3.0], [1.0, 0.0, 2.0]], "float32")
    >>> smallest_units()(w, 0.34, seed=0).tolist()
    [[False, True, False], [False, True, False]]
    """

    order: int = attrs.field(default=2)

    def __attrs_post_init__(self):
        if self.order not in (1, 2):
            raise ValueError(f"`order` must be 1 or 2. Received: order={self.order!r}")

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        w = arrays.tensor(weights)
        shape = arrays.shape(w)
        units = ops.reshape(w, (-1, shape[-1])) if len(shape) else ops.reshape(w, (1, 1))
        magnitude = ops.abs(ops.cast(units, "float32"))
        norms = ops.sum(magnitude if self.order == 1 else ops.square(magnitude), axis=0)
        eligible = ops.all(ops.isfinite(units), axis=0)
        k = round(amount * arrays.count(eligible))
        picked_units = smallest_scores(norms, eligible, k, seed)
        mask = ops.broadcast_to(ops.expand_dims(picked_units, 0), arrays.shape(units))
        return arrays.like(ops.reshape(mask, shape), weights)


@register("selectors.drop_and_grow")
@attrs.frozen
class DropAndGrowSelection:
    """The exchange step of sparse training (SET, RigL's random-growth variant).

    Picks `k = round(amount * active)` of the active (non-zero, finite)
    entries with the smallest |w| to drop, and `k` entries chosen uniformly
    at random among those that are exactly zero to grow. If there are fewer
    zero entries than `k`, both sides shrink to that number, so the number of
    non-zero entries is unchanged. Use with `mutators.drop_and_grow`, which
    zeroes the dropped entries and gives the grown ones new values.

    Example:
    >>> import numpy as np
    >>> w = np.array([0.0, 0.9, 0.0, -0.05, 0.4, 0.0], "float32")
    >>> mask = drop_and_grow()(w, 0.34, seed=3)
    >>> int(mask.sum()), bool(mask[3])
    (2, True)
    """

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        w = arrays.tensor(weights)
        empty = arrays.is_zero(w)  # by bit pattern: a subnormal is not empty
        active = ops.logical_and(ops.isfinite(w), ops.logical_not(empty))
        k = min(round(amount * arrays.count(active)), arrays.count(empty))
        drop = smallest_scores(magnitude(w), active, k, seeds.derive(seed, "drop"))
        grow = arrays.choose_count(empty, k, seeds.derive(seed, "grow"))
        return arrays.like(ops.logical_or(drop, grow), weights)


smallest_magnitude = SmallestMagnitude
smallest_units = SmallestUnits
drop_and_grow = DropAndGrowSelection


# -- Scores in, mask out: one score per unit (an activity, a utility), as the
# unit-recycling presets rank them. Written in keras.ops (`ranking`), so the
# selection traces; only the count `round(amount * eligible)` is read on the host.

lowest_count = ranking.lowest_count


def _threshold(value):
    return None if value is None else checks.not_nan("threshold", value)


@register("selectors.lowest")
@attrs.frozen
class Lowest:
    """Picks the `amount` fraction of eligible scores with the lowest values.

    Meant for per-unit scores (ReDo's normalised activity, continual
    backprop's utility) rather than weights: eligible are the finite scores,
    and with `threshold` only those `<= threshold`. Exactly
    `round(amount * eligible)` are picked, the lowest first; ties at the
    last place are broken at random from the seed. With a threshold and
    `amount=1.0` every score at or below it is picked (ReDo's dormant units);
    without one, `amount` is the fraction to pick (continual backprop's
    lowest-utility units).

    Args:
        threshold: None, or the highest score eligible (inclusive, compared
            exactly in the scores' dtype; may be +-inf, not NaN).

    Example:
    >>> import numpy as np
    >>> scores = np.array([0.0, 1.3, 0.05, 2.0, 0.0], "float32")
    >>> lowest(threshold=0.1)(scores, 1.0, seed=0).tolist()
    [True, False, True, False, True]
    >>> lowest()(scores, 0.4, seed=0).tolist()
    [True, False, False, False, True]
    """

    threshold: object = attrs.field(default=None, converter=_threshold)

    def __call__(self, weights, amount, seed):
        amount = checks.amount(amount)
        scores = arrays.tensor(weights)
        if self.threshold is None:
            eligible = ops.isfinite(scores)
        else:
            eligible = arrays.in_range(scores, -np.inf, self.threshold)
        k = round(amount * arrays.count(eligible))
        return arrays.like(lowest_count(scores, k, seed, eligible), weights)


lowest = Lowest
