"""Exact-count selection of the lowest scores, written in `keras.ops` so it traces.

`lowest_count` picks exactly `k` of the eligible scores, the lowest ones; the
scores tied with the k-th lowest are picked at random. Every step is a sort,
a comparison or an elementwise op, with `k` and `seed` allowed to be tensors,
so the same code runs eagerly, under `tf.function` and under `jax.jit`.

Ties are broken by a random rank per position: a bijective 32-bit mix of
(position, seed), computed in wrapping int32 arithmetic (the same bits on
every backend). Being a bijection of the position, it gives distinct ranks,
so "the `need` tied entries with the smallest rank" is an exact count.
"""

import numpy as np
from keras import ops

from kerastroke.core import arrays, seeds

# Chris Wellons' "lowbias32" multipliers: each mixing step is a bijection of
# the 32-bit integers (xor-shift and multiplication by an odd constant).
_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
_GOLDEN = 0x9E3779B9


def _int32(value):
    """A Python int in [0, 2**32) as the int32 with the same bits."""
    return int(np.array(value, dtype=np.uint32).view(np.int32))


def _shift_right(x, bits):
    """Logical right shift of int32 tensors (`ops.right_shift` is arithmetic)."""
    return ops.bitwise_and(ops.right_shift(x, bits), _int32((1 << (32 - bits)) - 1))


def _mix(x):
    """lowbias32: a bijection of int32 bit patterns that scatters neighbours."""
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, ops.convert_to_tensor(_int32(_MULTIPLIERS[0]), "int32"))
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, ops.convert_to_tensor(_int32(_MULTIPLIERS[1]), "int32"))
    return ops.bitwise_xor(x, _shift_right(x, 16))


def seed_tensor(seed):
    """`seed` as an int32 scalar tensor: a Python int is first derived into
    [0, 2**31 - 1) (any size is accepted); a tensor is used as it is."""
    if ops.is_tensor(seed) and not isinstance(seed, np.ndarray):
        return ops.cast(seed, "int32")
    return ops.convert_to_tensor(seeds.derive(seed, "ties"), "int32")


def tie_ranks(size, seed):
    """Distinct int32 ranks for positions `0 .. size-1`, scrambled by `seed`.

    Example:
    >>> import numpy as np
    >>> r = np.asarray(tie_ranks(1000, 7))
    >>> len(set(r.tolist()))
    1000
    """
    seed = seed_tensor(seed)
    x = ops.add(ops.arange(size, dtype="int32"), ops.multiply(seed, _int32(_GOLDEN)))
    # Two rounds with the seed entering twice; each is a bijection of x.
    return _mix(ops.bitwise_xor(_mix(x), seed))


def _keys(flat):
    """Integer keys ordered exactly like the float scores (-0.0 ties 0.0)."""
    keys, _ = arrays.order_keys(flat)
    if arrays.dtype_name(keys) == "int16":
        keys = ops.cast(keys, "int32")
    return keys


def _kth(sorted_values, k):
    """`sorted_values[k - 1]`, read at index 0 when `k` is 0 (then unused)."""
    return ops.take(sorted_values, ops.maximum(ops.subtract(k, 1), 0))


def lowest_count(scores, k, seed, eligible=None):
    """Boolean mask of the `k` eligible entries with the lowest scores; traces.

    Entries tied with the k-th lowest score are picked at random from `seed`,
    so exactly `min(k, eligible)` entries are True. NaN and infinite scores
    are never eligible.

    Args:
        scores: Float tensor or array of any shape (one score per unit).
        k: Int (Python or scalar tensor) >= 0, the number of entries to pick.
        seed: Python int, or an int scalar tensor inside compiled code.
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
    dims = arrays.shape(scores)
    flat = ops.reshape(scores, (-1,))
    size = arrays.shape(flat)[0]
    if size == 0:
        return ops.zeros(dims, dtype="bool")
    allowed = ops.isfinite(flat)
    if eligible is not None:
        allowed = ops.logical_and(allowed, ops.reshape(arrays.tensor(eligible, "bool"), (-1,)))
    keys = _keys(flat)
    last = np.iinfo(arrays.dtype_name(keys)).max  # above every finite score's key
    keys = ops.where(allowed, keys, ops.convert_to_tensor(last, arrays.dtype_name(keys)))
    available = ops.sum(ops.cast(allowed, "int32"))
    k = ops.minimum(ops.maximum(ops.cast(k, "int32"), 0), available)
    kth = _kth(ops.sort(keys), k)
    below = ops.logical_and(allowed, ops.less(keys, kth))
    ties = ops.logical_and(allowed, ops.equal(keys, kth))
    need = ops.subtract(k, ops.sum(ops.cast(below, "int32")))
    ranks = ops.where(ties, tie_ranks(size, seed), ops.convert_to_tensor(np.iinfo(np.int32).max, "int32"))
    last_rank = _kth(ops.sort(ranks), need)
    # `ranks` are distinct, so `<= last_rank` takes exactly `need` tied entries.
    picked_ties = ops.logical_and(ties, ops.less_equal(ranks, last_rank))
    picked = ops.logical_or(below, ops.logical_and(picked_ties, ops.greater(need, 0)))
    picked = ops.logical_and(picked, ops.greater(k, 0))
    return ops.reshape(picked, dims)
