"""The Numba loops behind `kerastroke.accel.kernels` (imported only through it).

Each loop mirrors NumPy code elsewhere operation for operation; the
docstrings name it. Arithmetic on draws is wrapping uint64; on values it is
in the weights' own dtype (float32 or float64), as `Uniform.values_at` draws;
the loops compile once per dtype, from the types of their arguments.
Each loop runs on the thread that calls it (Numba's own parallel loops
stalled for up to 150 ms on 2 cores); `kernels` splits a large tensor into
parts and runs them on Python threads, which the loops let run at once by
releasing the GIL.
"""

import numba
import numpy as np
from numba.extending import overload

from kerastroke.core import draws

_jit = numba.njit(cache=True, nogil=True)
_inline = numba.njit(inline="always")

_GAMMA = np.uint64(draws.GAMMA)
_MIX_1 = np.uint64(draws.MIX_1)
_MIX_2 = np.uint64(draws.MIX_2)
_ONE = np.uint64(1)


@_inline
def draw(key, counter):
    """draws.bits for one counter."""
    z = key + (counter + _ONE) * _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@_jit
def distinct_marks(size, want, key, limit):
    """draws.distinct's rounds, visiting the same draws in the same order.

    Returns the positions hit as a bitmap of 64-bit words: bit `p % 64` of
    word `p // 64`. `limit` 0 stands for 2**64 (no draw rejected).
    """
    marks = np.zeros((size + 63) // 64, np.uint64)
    n = np.uint64(size)
    have = 0
    round_ = 0
    while have < want:
        round_key = draw(key, np.uint64(round_))
        for j in range(want - have):
            x = draw(round_key, np.uint64(j))
            if limit != 0 and x >= limit:
                continue
            p = x % n
            word = p >> np.uint64(6)
            bit = _ONE << (p & np.uint64(63))
            if not marks[word] & bit:
                marks[word] |= bit
                have += 1
        round_ += 1
    return marks


# The index of a word's lowest set bit from a de Bruijn multiply: the top 6
# bits of (lowest bit * _DE_BRUIJN) are distinct for each of the 64 bits.
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.zeros(64, np.int64)
for _bit in range(64):
    _LOWEST_BIT[((1 << _bit) * int(_DE_BRUIJN) % 2**64) >> 58] = _bit


def as_type_of(x, like):
    """`x` converted to the float type of `like` (compiled only)."""
    raise NotImplementedError("compiled by Numba through its overload")


@overload(as_type_of, inline="always")
def _as_type_of(x, like):
    scalar = numba.np.numpy_support.as_dtype(like).type
    return lambda x, like: scalar(x)


def unit(bits, like):
    """draws.unit for one draw, in the float type of `like` (compiled only)."""
    raise NotImplementedError("compiled by Numba through its overload")


@overload(unit, inline="always")
def _unit(bits, like):
    # Resolved when a loop compiles, for the type of `like`: the top 24 bits
    # of a draw for float32, 53 for float64, as draws.unit takes them. The
    # bits convert through the narrowest signed integer that holds them
    # (exactly either way; int32 conversions vectorise).
    scalar = numba.np.numpy_support.as_dtype(like).type
    width = np.finfo(scalar).nmant + 1
    shift, scale = np.uint64(64 - width), scalar(2.0**-width)
    integer = np.int32 if width < 32 else np.int64
    return lambda bits, like: scalar(integer(bits >> shift)) * scale


@_inline
def value(position, key, low, high, lo, hi):
    """draws.uniform for one position, then Uniform.values_at's clamp, in low's type."""
    u = unit(draw(key, np.uint64(position)), low)
    y = low * (as_type_of(1.0, low) - u) + high * u
    if y < lo:
        y = lo
    if y > hi:
        y = hi
    return y


@_jit
def copy_counting_zeros(w, out):
    """np.copyto(out, w); returns the number of zeros."""
    zeros = 0
    for i in range(w.size):
        x = w[i]
        out[i] = x
        if x == 0:
            zeros += 1
    return zeros


@_jit
def patch_marked(out, marks, first, stop, uniform, constant, key, low, high, lo, hi):
    """The fill where words `first` to `stop` of `marks` (a distinct_marks
    bitmap) have a bit, in place in `out`.

    The fill is `value(...)` if `uniform`, else `constant`. Visits the marked
    positions in ascending order, so the writes stream, and finds them a set
    bit at a time. Returns (changed, zeros gained), changed as
    write._differs counts it: the new values are finite, so a marked NaN
    counts as changed.
    """
    changed = 0
    zeros = 0
    for word in range(first, stop):
        bits = marks[word]
        while bits:
            lowest = bits & (~bits + _ONE)
            p = word * 64 + _LOWEST_BIT[(lowest * _DE_BRUIJN) >> np.uint64(58)]
            bits ^= lowest
            old = out[p]
            new = value(p, key, low, high, lo, hi) if uniform else constant
            out[p] = new
            if new != old:
                changed += 1
            if new == 0:
                zeros += 1
            if old == 0:
                zeros -= 1
    return changed, zeros


@_jit
def fill_in_range(w, out, offset, range_lo, range_hi, uniform, constant, key, low, high, lo, hi):
    """`w` into `out`, with the fill where `range_lo <= w <= range_hi`.

    `w` and `out` are entries `offset`, `offset + 1`, ... of the weights
    (a value belongs to its position in the whole tensor).

    value_range at amount 1: the bounds are finite values of w's dtype, so
    NaN and infinities are never in range. The fill is `value(...)` if
    `uniform`, else `constant`. Returns (changed, zeros), changed as
    write._differs counts it.
    """
    changed = 0
    zeros = 0
    for i in range(w.size):
        x = w[i]
        if x >= range_lo and x <= range_hi:
            y = value(offset + i, key, low, high, lo, hi) if uniform else constant
            if y != x:
                changed += 1
            x = y
        out[i] = x
        if x == 0:
            zeros += 1
    return changed, zeros
