"""Vectorised array helpers on the Keras backend, shared by the built-in pieces.

Everything here is pure: tensors in, new tensors out, randomness only from
integer seeds passed in. NumPy arrays are accepted anywhere a tensor is.
"""

import keras
import numpy as np
from keras import ops

from kerastroke.core import seeds


def tensor(x, dtype=None):
    """`x` as a backend tensor (NumPy arrays and Python scalars included)."""
    return ops.convert_to_tensor(x, dtype=dtype)


def dtype_name(x):
    """The standard Keras name of `x`'s dtype, e.g. "float32" or "bfloat16"."""
    return keras.backend.standardize_dtype(x.dtype)


def numpy_dtype(name):
    """The NumPy dtype for a Keras dtype name (bfloat16 through ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def like(result, original):
    """Returns NumPy for NumPy input, the backend tensor otherwise."""
    if isinstance(original, np.ndarray):
        return ops.convert_to_numpy(result)
    return result


def count(mask):
    """The number of True entries of a boolean tensor, as a Python int."""
    return int(ops.convert_to_numpy(ops.count_nonzero(mask)))


def _next_toward(x, upward):
    """The neighbour of the NumPy scalar `x` in its own dtype, up or down."""
    target = np.asarray(np.inf if upward else -np.inf, dtype=x.dtype)
    return np.nextafter(x, target)


def at_least(bound, dtype):
    """The smallest value of `dtype` that is >= `bound`, as a NumPy scalar."""
    value = np.asarray(bound, dtype=numpy_dtype(dtype))
    if float(value) < bound:
        value = _next_toward(value, upward=True)
    return value


def at_most(bound, dtype, strict=False):
    """The largest value of `dtype` that is <= `bound` (< `bound` if strict)."""
    value = np.asarray(bound, dtype=numpy_dtype(dtype))
    if float(value) > bound or (strict and float(value) == bound):
        value = _next_toward(value, upward=False)
    return value


def in_range(weights, low, high):
    """Boolean tensor of `low <= w <= high`, exact in every float dtype.

    The bounds are moved to the nearest values of the weights' own dtype that
    keep the comparison exact, so no entry outside [low, high] is selected by
    rounding. NaN and infinite entries are never in range.
    """
    dtype = dtype_name(weights)
    lo = tensor(at_least(low, dtype), dtype)
    hi = tensor(at_most(high, dtype), dtype)
    inside = ops.logical_and(ops.greater_equal(weights, lo), ops.less_equal(weights, hi))
    return ops.logical_and(inside, ops.isfinite(weights))


def _distinct_positions(size, want, seed):
    """A boolean (size,) tensor with exactly `want` True entries, uniformly at random.

    Draws positions with replacement until `want` distinct ones are hit. Each
    round draws exactly the shortfall, so the process stops the moment the
    `want`-th distinct position appears: by symmetry every subset of that size
    is equally likely. With `want <= size / 2` the shortfall at least halves
    each round, so the cost is O(size) for the bitmap plus O(want) draws.
    """
    index_dtype = "int32" if size < 2**31 else "int64"
    hits = ops.zeros((size,), dtype="bool")
    have, round_ = 0, 0
    while have < want:
        missing = want - have
        draws = keras.random.randint(
            (missing, 1), 0, size, dtype=index_dtype, seed=seeds.derive(seed, "round", round_)
        )
        hits = ops.scatter_update(hits, draws, ops.ones((missing,), dtype="bool"))
        have = count(hits)
        round_ += 1
    return hits


def choose(eligible, amount, seed):
    """Picks `round(amount * eligible)` of the eligible entries uniformly at random.

    Args:
        eligible: Boolean tensor of any shape: the entries that may be picked.
        amount: Float in [0, 1], the fraction of eligible entries to pick.
        seed: Python int. The same seed picks the same entries.

    Returns:
        A boolean tensor of `eligible`'s shape with exactly
        `round(amount * count(eligible))` True entries, all eligible.
    """
    eligible = tensor(eligible, "bool")
    shape = ops.shape(eligible)
    flat = ops.reshape(eligible, (-1,))
    total = count(flat)
    k = round(amount * total)
    if k == total:
        return eligible
    if k == 0:
        return ops.zeros(shape, dtype="bool")
    # Drawing the smaller side keeps the rejection rounds few.
    invert = 2 * k > total
    picked = _distinct_positions(total, total - k if invert else k, seed)
    if invert:
        picked = ops.logical_not(picked)
    size = ops.shape(flat)[0]
    if total < size:
        # Map the picked ranks back onto the eligible entries: the r-th eligible
        # entry (in flat order) takes picked[r].
        rank = ops.cumsum(ops.cast(flat, "int32" if size < 2**31 else "int64")) - 1
        picked = ops.logical_and(flat, ops.take(picked, ops.maximum(rank, 0)))
    return ops.reshape(picked, shape)


def put(weights, mask, values):
    """Writes `values` into the True entries of `mask`, in flat (row-major) order.

    Returns a new tensor; entries outside the mask keep their exact bits.
    """
    shape = ops.shape(weights)
    flat = ops.reshape(weights, (-1,))
    positions = ops.nonzero(ops.reshape(mask, (-1,)))[0]
    updated = ops.scatter_update(flat, ops.expand_dims(positions, 1), values)
    return ops.reshape(updated, shape)
