"""Exact selection of the k smallest keys per row, in traceable `keras.ops`.

`smallest` finds each row's k-th smallest eligible key by bisection over the
key's bits (one count per bit, unrolled in Python, static shapes only), then
takes every eligible key below it and, among the keys equal to it, those with
the smallest tie-breakers. Counts are exact: never a full sort, never a
data-dependent shape, so it runs under `jax.jit` and `tf.function` (with or
without XLA) as well as eagerly.

Example:
>>> import numpy as np
>>> keys = np.array([[5, 1, 4, 1, 3]], dtype="int32")
>>> eligible = np.ones((1, 5), dtype=bool)
>>> mask = smallest(keys, eligible, np.array([2], dtype="int32"))
>>> keras.ops.convert_to_numpy(mask).astype(int).tolist()
[[0, 1, 0, 1, 0]]
"""

import keras
import numpy as np
from keras import ops

from kerastroke import accel

_LIMITS = {
    "int32": (np.int32(-(2**31)), np.int32(2**31 - 1)),
    "int64": (np.int64(-(2**63)), np.int64(2**63 - 1)),
}


def count(mask):
    """The number of True entries of each row (the last axis) of a mask, as int32.

    Example:
    >>> import numpy as np
    >>> c = count(np.array([[True, False, True], [False, False, False]]))
    >>> keras.ops.convert_to_numpy(c).tolist()
    [2, 0]
    """
    return accel.count(ops.convert_to_tensor(mask, "bool"))


def counts(masks):
    """`count` of several masks of one shape (R, N), computed together (see `accel.counts`)."""
    return accel.counts(masks)


def _kth(values, k, dtype, width=None):
    """Each row's k-th smallest value (1 <= k <= N), by bisection over the bits.

    Builds the largest `t` with `count(values < t) < k`, most significant bit
    first. Over all `width` bits of the dtype it starts from the minimum (the
    top bit is the sign: adding it wraps the minimum to 0); over fewer bits,
    for values known to lie in [0, 2**width) apart from left-out entries, it
    starts from 0. Entries equal to the dtype's maximum never count as below
    a candidate, which is how callers leave entries out. The bits are visited
    in a `fori_loop` (a compiled loop under XLA and in TensorFlow's graph) so
    the traced program stays small. A backend with a native selection
    (`kerastroke.accel.kth_smallest`: PyTorch, and JAX's two bits per pass)
    gives the same value directly.
    """
    low, _ = _LIMITS[dtype]
    full = 32 if dtype == "int32" else 64
    width = full if width is None else width
    start = low if width == full else 0
    native = accel.kth_smallest(values, k, width, start)
    if native is not None:
        return native
    one = ops.ones((), dtype=dtype)

    def step(i, threshold):
        bit = ops.cast(width - 1 - i, dtype)
        candidate = ops.add(threshold, ops.left_shift(one, bit))  # wraps at the top bit
        below = count(ops.less(values, ops.expand_dims(candidate, 1)))
        return ops.where(ops.less(below, k), candidate, threshold)

    return ops.fori_loop(0, width, step, ops.full(ops.shape(k), start, dtype=dtype))


def smallest(keys, eligible, k, tiebreak=None, distinct=False):
    """A mask of each row's `k` smallest eligible keys, exact, ties broken by `tiebreak`.

    Every eligible key strictly below the row's threshold (its k-th smallest
    eligible key) is taken; among the eligible keys equal to the threshold,
    those with the smallest `tiebreak` fill the rest. With random distinct
    tie-breakers (e.g. `hashing.bits` of the positions), ties go uniformly at
    random; without, to the lowest positions.

    Args:
        keys: int32 or int64 of shape (R, N), ordered as signed integers.
        eligible: bool of shape (R, N): the entries that may be chosen.
        k: int of shape (R,): how many to choose in each row. More than a
            row's eligible entries takes all of them; 0 or less takes none.
        tiebreak: int32 of shape (R, N), distinct within each row, or None
            for the positions.
        distinct: True if no two keys of a row are equal (e.g. random ranks,
            `hashing.bits` of the positions): at most one key sits at the
            threshold, so no tie-breaking pass is built (nor `tiebreak`
            used). The result is the same; a compiled selection is smaller
            and traces faster.

    Returns:
        bool of shape (R, N) with exactly `min(k, eligible count)` True
        entries per row (none where `k <= 0`).

    Raises:
        TypeError: If `keys` is not int32 or int64, or `tiebreak` not int32.
        ValueError: If the shapes do not match.

    Example:
    >>> import numpy as np
    >>> keys = np.array([[2, 0, 2, 2], [7, 7, 7, 7]], dtype="int32")
    >>> eligible = np.array([[True, True, True, False], [True, True, True, True]])
    >>> tiebreak = np.array([[0, 0, 5, 0], [3, -1, 2, 9]], dtype="int32")
    >>> mask = smallest(keys, eligible, np.array([2, 3], dtype="int32"), tiebreak)
    >>> keras.ops.convert_to_numpy(mask).astype(int).tolist()
    [[1, 1, 0, 0], [1, 1, 1, 0]]
    """
    keys = ops.convert_to_tensor(keys)
    dtype = keras.backend.standardize_dtype(keys.dtype)
    if dtype not in _LIMITS:
        raise TypeError(f"`keys` must be int32 or int64. Received: dtype={dtype!r}")
    if len(keys.shape) != 2:
        raise ValueError(f"`keys` must have shape (R, N). Received: shape={tuple(keys.shape)}")
    eligible = ops.cast(eligible, "bool")
    if tuple(eligible.shape) != tuple(keys.shape):
        raise ValueError(
            f"`eligible` must have the shape of `keys`, {tuple(keys.shape)}. "
            f"Received: shape={tuple(eligible.shape)}"
        )
    k = ops.cast(k, "int32")
    if tuple(k.shape) != tuple(keys.shape[:1]):
        raise ValueError(
            f"`k` must have shape ({keys.shape[0]},). Received: shape={tuple(k.shape)}"
        )
    if tiebreak is not None:
        tiebreak = ops.convert_to_tensor(tiebreak)
        tiebreak_dtype = keras.backend.standardize_dtype(tiebreak.dtype)
        if tiebreak_dtype != "int32":
            raise TypeError(f"`tiebreak` must be int32. Received: dtype={tiebreak_dtype!r}")
        if tuple(tiebreak.shape) != tuple(keys.shape):
            raise ValueError(
                f"`tiebreak` must have the shape of `keys`, {tuple(keys.shape)}. "
                f"Received: shape={tuple(tiebreak.shape)}"
            )

    if distinct:
        return _select_distinct(keys, eligible, k)
    return _select(keys, eligible, k, tiebreak)


def _threshold(keys, eligible, k):
    """How many to take per row, the candidates (left-out entries at the maximum) and the k-th of them."""
    dtype = keras.backend.standardize_dtype(keys.dtype)
    _, high = _LIMITS[dtype]
    want = ops.maximum(ops.minimum(k, count(eligible)), 0)
    candidates = ops.where(eligible, keys, high)
    return want, candidates, _kth(candidates, ops.maximum(want, 1), dtype)


@accel.staged
def _select_distinct(keys, eligible, k):
    """`smallest` of distinct keys: every eligible key up to the threshold, which is taken."""
    want, candidates, threshold = _threshold(keys, eligible, k)
    taken = ops.logical_and(eligible, ops.less_equal(candidates, ops.expand_dims(threshold, 1)))
    return ops.logical_and(taken, ops.expand_dims(ops.greater(want, 0), 1))


@accel.staged
def _select(keys, eligible, k, tiebreak):
    """`smallest` on checked inputs: one compiled call on JAX, even when called eagerly."""
    want, candidates, threshold = _threshold(keys, eligible, k)
    below = ops.less(candidates, ops.expand_dims(threshold, 1))
    ties = ops.logical_and(eligible, ops.equal(keys, ops.expand_dims(threshold, 1)))
    below_count, tie_count = counts([below, ties])
    need = ops.subtract(want, below_count)
    # Only where some row has more ties than it needs is a second bisection run.
    chosen = ops.cond(
        ops.all(ops.equal(tie_count, need)),
        lambda: ties,
        lambda: _fewest(ties, tiebreak, need),
    )
    taken = ops.logical_or(below, chosen)
    return ops.logical_and(taken, ops.expand_dims(ops.greater(want, 0), 1))


def _fewest(ties, tiebreak, need):
    """The `need` ties of each row with the smallest (distinct) tie-breakers.

    Without tie-breakers the positions break ties: they lie in [0, N), so the
    bisection needs only as many bits as N has.
    """
    _, high = _LIMITS["int32"]
    width = None
    if tiebreak is None:
        size = ties.shape[1]
        tiebreak = ops.expand_dims(ops.arange(size, dtype="int32"), 0)
        width = max(int(size - 1).bit_length(), 1)
    candidates = ops.where(ties, tiebreak, high)
    last = _kth(candidates, ops.maximum(need, 1), "int32", width)
    return ops.logical_and(ties, ops.less_equal(tiebreak, ops.expand_dims(last, 1)))
