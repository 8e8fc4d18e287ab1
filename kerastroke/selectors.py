"""Selectors: `select(weights, amount, seed) -> bool mask`, *which* entries change.

Every built-in selector has a notion of *eligible* entries and picks exactly
`round(amount * eligible)` of them uniformly at random, without replacement.
`amount=1.0` picks every eligible entry; `amount=0.0` picks none.

Combinators build new selectors from old ones: `intersection`, `union` and
`complement` combine the parts' full selections (each part is asked with
`amount=1.0`), then pick `amount` of the result, with the same exact count.

Every built-in also has `select_batch(weights, amount, keys)`, the form the
engine calls: `weights` holds R variables of one shape stacked on a leading
axis, `keys` one random key per variable (`kerastroke.core.hashing`), and
everything is `keras.ops` without data-dependent shapes, so one compiled
call selects in every variable at once. `__call__` is `select_batch` on a
batch of one.

`random_fraction`, `value_range`, `smallest_magnitude` (without `among`) and
`drop_and_grow` also have `select_host(weights, amount, keys)`: the same
selection, the same bits, on a float32 NumPy batch in host memory, by the
Numba loops of `kerastroke.accel.host` (the engine's CPU path; see
`kerastroke.engine.writer`).
"""

import functools

import attrs
import numpy as np
from keras import ops

from kerastroke.accel import host
from kerastroke.core import arrays, checks, hashing, picking, seeds
from kerastroke.core.serialization import register


def _single(select_batch, weights, amount, seed):
    """A selector's call on one tensor, through its batched form."""
    amount = checks.amount(amount)
    w = arrays.tensor(weights)
    mask = select_batch(ops.expand_dims(w, 0), amount, hashing.keys_of([seed]))
    return arrays.like(ops.squeeze(mask, 0), weights)


def _is_full(amount):
    """True for an amount that is the Python float 1.0: the engine passes
    amounts of 1 as such, so "every eligible entry" needs no ranking."""
    return isinstance(amount, float) and amount == 1.0


def _pick(eligible, amount, keys):
    return eligible if _is_full(amount) else picking.choose(eligible, amount, keys)


def _pick_host(eligible, amount, keys):
    """`_pick` on the host (`kerastroke.accel.host`): the same entries."""
    if _is_full(amount):
        return eligible
    return host.choose(eligible, host.to_pick(amount, host.count(eligible)), keys)


def batched(piece, method="select_batch"):
    """The piece's batched form, or None if it has none (a plain callable)."""
    return getattr(piece, method, None)


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
        return _single(self.select_batch, weights, amount, seed)

    def select_batch(self, weights, amount, keys):
        return _pick(ops.ones(weights.shape, dtype="bool"), amount, keys)

    def select_host(self, weights, amount, keys):
        return _pick_host(host.everything(weights.shape), amount, keys)


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
        return _single(self.select_batch, weights, amount, seed)

    def select_batch(self, weights, amount, keys):
        return _pick(arrays.in_range(weights, self.low, self.high), amount, keys)

    def select_host(self, weights, amount, keys):
        return _pick_host(host.in_range(weights, *_float32_keys(self.low, self.high)), amount, keys)


@functools.lru_cache(maxsize=256)
def _float32_keys(low, high):
    """The order keys of [low, high] moved to float32 as `arrays.in_range` moves them
    (kept per pair of bounds: they cost 17 us, a call on a small variable about as much)."""
    return arrays.scalar_key(arrays.at_least(low, "float32")), arrays.scalar_key(arrays.at_most(high, "float32"))


def _parts(value):
    parts = tuple(value)
    if not parts:
        raise ValueError("A selector combinator needs at least one selector. Received: parts=()")
    for index, part in enumerate(parts):
        checks.callable_(f"parts[{index}]", part)
    return parts


class _Combinator:
    """Shared by the combinators: the parts' full selections, folded, then picked from."""

    def __call__(self, weights, amount, seed):
        select_batch = self.select_batch
        if select_batch is None:
            return self._eager(weights, amount, seed)
        return _single(select_batch, weights, amount, seed)

    @property
    def select_batch(self):
        """The batched form, if every part has one (else None: the engine runs it eagerly)."""
        parts = [batched(part) for part in self._parts()]
        if any(part is None for part in parts):
            return None

        def select_batch(weights, amount, keys):
            selections = [
                part(weights, 1.0, hashing.derive(keys, f"part {index}")) for index, part in enumerate(parts)
            ]
            return _pick(self._fold(selections), amount, keys)

        return select_batch

    def _eager(self, weights, amount, seed):
        """Plain callables as parts: each asked with a seed drawn from `seed`."""
        amount = checks.amount(amount)
        w = arrays.tensor(weights)
        selections = [
            arrays.tensor(part(w, 1.0, seeds.derive(seed, f"part {index}")), "bool")
            for index, part in enumerate(self._parts())
        ]
        eligible = ops.expand_dims(self._fold(selections), 0)
        mask = _pick(eligible, amount, hashing.keys_of([seed]))
        return arrays.like(ops.squeeze(mask, 0), weights)

    def _fold(self, selections):
        eligible = selections[0]
        for selection in selections[1:]:
            eligible = self._combine(eligible, selection)
        return self._finish(eligible)

    def _finish(self, eligible):
        return eligible


@register("selectors.intersection")
@attrs.frozen
class Intersection(_Combinator):
    """Eligible: entries every part selects. Built by `intersection(*parts)`."""

    parts: tuple = attrs.field(converter=_parts)

    _combine = staticmethod(ops.logical_and)

    def _parts(self):
        return self.parts


@register("selectors.union")
@attrs.frozen
class Union(_Combinator):
    """Eligible: entries any part selects. Built by `union(*parts)`."""

    parts: tuple = attrs.field(converter=_parts)

    _combine = staticmethod(ops.logical_or)

    def _parts(self):
        return self.parts


@register("selectors.complement")
@attrs.frozen
class Complement(_Combinator):
    """Eligible: entries the selector does not select. Built by `complement(selector)`."""

    selector: object = attrs.field(validator=_selector("selector"))

    def _parts(self):
        return (self.selector,)

    def _finish(self, eligible):
        return ops.logical_not(eligible)


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
        if self.select_batch is None:
            among = arrays.tensor(self.among(arrays.tensor(weights), 1.0, seeds.derive(seed, "among")), "bool")
            return _single(lambda w, a, keys: self._select(w, a, keys, ops.expand_dims(among, 0)),
                           weights, amount, seed)
        return _single(self.select_batch, weights, amount, seed)

    @property
    def select_batch(self):
        """The batched form; None if `among` is a plain callable without one."""
        if self.among is None:
            return self._select
        among = batched(self.among)
        if among is None:
            return None
        return lambda w, amount, keys: self._select(w, amount, keys, among(w, 1.0, hashing.derive(keys, "among")))

    @property
    def select_host(self):
        """The host form (float32 batches); None with `among`."""
        return self._select_host if self.among is None else None

    def _select_host(self, weights, amount, keys):
        eligible = host.finite(weights)
        if _is_full(amount):
            return eligible
        return host.smallest(weights, eligible, host.to_pick(amount, host.count(eligible)), keys)

    def _select(self, weights, amount, keys, among=None):
        eligible = ops.isfinite(weights)
        if among is not None:
            eligible = ops.logical_and(eligible, among)
        if _is_full(amount):
            return eligible
        k = picking.to_pick(amount, picking.count(eligible))
        return picking.smallest(magnitude(weights), eligible, k, keys)


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
        return _single(self.select_batch, weights, amount, seed)

    def select_batch(self, weights, amount, keys):
        shape = tuple(weights.shape)
        rows = shape[0]
        units = ops.reshape(weights, (rows, -1, shape[-1] if len(shape) > 1 else 1))
        size = ops.abs(ops.cast(units, "float32"))
        norms = ops.sum(size if self.order == 1 else ops.square(size), axis=1)
        eligible = ops.all(ops.isfinite(units), axis=1)
        if _is_full(amount):
            picked = eligible
        else:
            k = picking.to_pick(amount, picking.count(eligible))
            # Norms are non-negative floats: their bit patterns order them.
            picked = picking.smallest(magnitude(norms), eligible, k, keys)
        return ops.reshape(ops.broadcast_to(ops.expand_dims(picked, 1), units.shape), shape)


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
        return _single(self.select_batch, weights, amount, seed)

    def select_batch(self, weights, amount, keys):
        empty = arrays.is_zero(weights)  # by bit pattern: a subnormal is not empty
        active = ops.logical_and(ops.isfinite(weights), ops.logical_not(empty))
        active_count, empty_count = picking.counts(active, empty)
        k = ops.minimum(picking.to_pick(amount, active_count), empty_count)
        drop = picking.smallest(magnitude(weights), active, k, hashing.derive(keys, "drop"))
        grow = picking.choose_count(empty, k, hashing.derive(keys, "grow"))
        return ops.logical_or(drop, grow)

    def select_host(self, weights, amount, keys):
        active, empty, active_count, empty_count = host.active_and_empty(weights)
        k = np.minimum(host.to_pick(amount, active_count), empty_count)
        drop = host.smallest(weights, active, k, hashing.derive_on_host(keys, "drop"))
        grow = host.choose(empty, k, hashing.derive_on_host(keys, "grow"))
        return np.logical_or(drop, grow, out=drop)  # `drop` is this call's own


smallest_magnitude = SmallestMagnitude
smallest_units = SmallestUnits
drop_and_grow = DropAndGrowSelection


@register("selectors.gradient_drop_and_grow")
@attrs.frozen
class GradientDropAndGrowSelection:
    """RigL's exchange step: drop the smallest |w|, grow at the largest |gradient|.

    Picks `k = round(amount * active)` of the active (non-zero, finite)
    entries with the smallest |w| to drop, and the `k` entries that are
    exactly zero with the largest |gradient| to grow (Evci et al. 2020,
    "Rigging the Lottery"). If fewer than `k` zero entries have a finite
    gradient, both sides shrink to that number, so the number of non-zero
    entries is unchanged. Ties at either threshold are broken at random from
    `seed`; a NaN or infinite gradient is never grown, a NaN or infinite
    weight never dropped. Use with `mutators.drop_and_grow`, which zeroes the
    dropped entries and gives the grown ones new values.

    It declares `inputs = ("gradient",)`: the engine passes the gradient of
    the loss with respect to the weights (on the callback's `probe` batch)
    as `gradient=`, an array of the weights' shape.

    Example:
    >>> import numpy as np
    >>> w = np.array([0.0, 0.9, 0.0, -0.05, 0.4, 0.0], "float32")
    >>> g = np.array([0.1, 0.0, -3.0, 0.0, 0.0, 0.2], "float32")
    >>> gradient_drop_and_grow()(w, 0.34, seed=0, gradient=g).tolist()
    [False, False, True, True, False, False]
    """

    inputs = ("gradient",)

    def __call__(self, weights, amount, seed, *, gradient):
        w, g = arrays.tensor(weights), arrays.tensor(gradient)
        if arrays.shape(g) != arrays.shape(w):
            raise ValueError(
                f"`gradient` must have the weights' shape {arrays.shape(w)}. "
                f"Received: gradient of shape {arrays.shape(g)}"
            )
        return _single(lambda batch, a, keys: self.select_batch(batch, a, keys, gradient=ops.expand_dims(g, 0)),
                       weights, amount, seed)

    def select_batch(self, weights, amount, keys, *, gradient):
        empty = arrays.is_zero(weights)  # by bit pattern: a subnormal is not empty
        active = ops.logical_and(ops.isfinite(weights), ops.logical_not(empty))
        growable = ops.logical_and(empty, ops.isfinite(gradient))
        active_count, growable_count = picking.counts(active, growable)
        k = ops.minimum(picking.to_pick(amount, active_count), growable_count)
        drop = picking.smallest(magnitude(weights), active, k, hashing.derive(keys, "drop"))
        # The largest |g| are the smallest negated magnitude keys.
        grow = picking.smallest(ops.negative(magnitude(gradient)), growable, k, hashing.derive(keys, "grow"))
        return ops.logical_or(drop, grow)


gradient_drop_and_grow = GradientDropAndGrowSelection

# -- Scores in, mask out: one score per unit (an activity, a utility), as the
# unit-recycling presets rank them.


def _score_keys(scores):
    """Integer keys ordered exactly like float scores (-0.0 ties 0.0), int32 or int64."""
    keys, _ = arrays.order_keys(scores)
    return ops.cast(keys, "int32") if arrays.dtype_name(keys) == "int16" else keys


def lowest_count(scores, k, seed, eligible=None):
    """Boolean mask of the `k` eligible entries with the lowest scores.

    Entries tied with the k-th lowest score are picked at random from `seed`,
    so exactly `min(k, eligible)` entries are True. NaN and infinite scores
    are never eligible. In `keras.ops` throughout; `k` may be a tensor.

    Args:
        scores: Float tensor or array of any shape (one score per unit).
        k: Int (Python or scalar tensor) >= 0, the number of entries to pick.
        seed: Python int.
        eligible: Optional boolean tensor of the scores' shape; None means
            every finite score.

    Returns:
        A boolean backend tensor of the scores' shape.

    Example:
    >>> import numpy as np
    >>> s = np.array([0.3, 0.0, 0.9, 0.0, 0.1], "float32")
    >>> np.asarray(lowest_count(s, 2, seed=0)).tolist()
    [False, True, False, True, False]
    """
    scores = arrays.tensor(scores)
    batch = ops.reshape(scores, (1, -1))
    allowed = ops.isfinite(batch)
    if eligible is not None:
        allowed = ops.logical_and(allowed, ops.reshape(arrays.tensor(eligible, "bool"), (1, -1)))
    k = ops.reshape(ops.maximum(ops.cast(k, "int32"), 0), (1,))
    picked = picking.smallest(_score_keys(batch), allowed, k, hashing.keys_of([seed]))
    return ops.reshape(picked, arrays.shape(scores))

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
        return _single(self.select_batch, weights, amount, seed)

    def select_batch(self, weights, amount, keys):
        if self.threshold is None:
            eligible = ops.isfinite(weights)
        else:
            eligible = arrays.in_range(weights, -np.inf, self.threshold)
        if _is_full(amount):
            return eligible
        k = picking.to_pick(amount, picking.count(eligible))
        return picking.smallest(_score_keys(weights), eligible, k, keys)


lowest = Lowest
