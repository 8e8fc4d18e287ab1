"""Counter-based random numbers: every draw is a pure function of a key and a counter.

Draw `i` of key `k` is SplitMix64's output function applied to
`k + (i + 1) * GAMMA` (mod 2**64), a Weyl sequence. Nothing is carried from
one draw to the next, so:

- a random value can belong to a *position* (the flat index of a weight):
  the entries a rule picks get the same values whichever order they are
  visited in, and the same values whether one entry is picked or a million;
- the draws are the same bits on every Keras backend and on the host, and
  `kerastroke.accel.kernels` computes them inside its compiled loops too.

Keys are 64-bit ints from `kerastroke.core.seeds.key`. Everything here runs
in NumPy (vectorised, in wrapping unsigned 64-bit arithmetic) and is pure.
"""

import numpy as np

GAMMA = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: the Weyl increment
MIX_1 = 0xBF58476D1CE4E5B9
MIX_2 = 0x94D049BB133111EB
_MASK = 2**64 - 1


def mix_int(z):
    """SplitMix64's output function on a Python int in [0, 2**64)."""
    z = ((z ^ (z >> 30)) * MIX_1) & _MASK
    z = ((z ^ (z >> 27)) * MIX_2) & _MASK
    return z ^ (z >> 31)


def round_key(key, round_):
    """The key of round `round_` of `distinct`, derived from `key` like a draw."""
    return mix_int((key + (round_ + 1) * GAMMA) & _MASK)


def bits(key, counters):
    """Uniform 64-bit draws, one per counter.

    Args:
        key: Python int in [0, 2**64).
        counters: Integer array of non-negative counters (e.g. flat positions).

    Returns:
        A new uint64 array of the counters' shape.

    Example:
    >>> import numpy as np
    >>> a = bits(7, np.array([0, 1, 2]))
    >>> bool(np.array_equal(a[[2, 0]], bits(7, np.array([2, 0]))))
    True
    """
    z = np.asarray(counters).astype(np.uint64)
    z += np.uint64(1)
    z *= np.uint64(GAMMA)
    z += np.uint64(key)
    z ^= z >> np.uint64(30)
    z *= np.uint64(MIX_1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(MIX_2)
    z ^= z >> np.uint64(31)
    return z


def unit(key, counters, dtype="float64"):
    """Uniform draws in [0, 1), one per counter, exact in `dtype`.

    float64 draws are the top 53 bits of a draw times 2**-53; float32 draws
    the top 24 bits times 2**-24.

    Example:
    >>> import numpy as np
    >>> u = unit(3, np.arange(1000), "float32")
    >>> str(u.dtype), bool(0.0 <= u.min() and u.max() < 1.0)
    ('float32', True)
    """
    if np.dtype(dtype) == np.float64:
        return (bits(key, counters) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (bits(key, counters) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def uniform(key, counters, low, high):
    """Uniform draws in [low, high] (rounding may reach `high`), one per counter.

    Computed in the dtype of `low` and `high` (NumPy float32 or float64
    scalars) as the convex combination `low * (1 - u) + high * u`, which
    cannot overflow where `low + (high - low) * u` would for far-apart
    bounds. `kernels` computes the same expression, operation for operation.
    """
    dtype = np.result_type(low, high)
    u = unit(key, counters, dtype)
    with np.errstate(over="ignore"):  # only for bounds near the dtype's limits
        return low * (dtype.type(1.0) - u) + high * u


def below(key, counters, size):
    """Uniform draws in [0, size), exactly uniform: draws past the last whole
    multiple of `size` are rejected (at most `size / 2**64` of them).

    Returns:
        The accepted draws as a uint64 array, in counter order; shorter than
        `counters` by the rejections.
    """
    x = bits(key, counters)
    limit = (2**64 // size) * size  # draws below it fall evenly onto [0, size)
    if limit < 2**64:
        x = x[x < np.uint64(limit)]
    return x % np.uint64(size)


def distinct(size, want, key):
    """A boolean (size,) array with exactly `want` True entries, uniformly at random.

    Round `r` draws exactly the shortfall `want - have` positions with
    replacement (counters 0, 1, ... of `round_key(key, r)`), marking each;
    the process stops the moment the `want`-th distinct position is hit, so
    by symmetry every subset of that size is equally likely. With
    `want <= size / 2` the shortfall at least halves each round: O(want)
    draws in all. `kernels.distinct_marks` visits the same draws.

    Example:
    >>> mask = distinct(10, 3, key=42)
    >>> int(mask.sum()), bool(np.array_equal(mask, distinct(10, 3, key=42)))
    (3, True)
    """
    if not 0 <= want <= size:
        raise ValueError(f"Cannot pick {want!r} distinct positions of {size}.")
    hits = np.zeros(size, dtype=bool)
    have, round_ = 0, 0
    while have < want:
        hits[below(round_key(key, round_), np.arange(want - have), size)] = True
        have = int(np.count_nonzero(hits))
        round_ += 1
    return hits
