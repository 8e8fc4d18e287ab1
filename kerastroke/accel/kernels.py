"""Compiled loops for the built-in rules on weights in host memory.

A rule made of built-in pieces (`random_fraction` or `value_range` at amount
1, with `constant` or `uniform`) is applied here in one pass over the
weights, compiled by Numba: select, draw, write into a new buffer, and count
the entries changed and the entries zero, where the composed pure pieces
take one backend op per step. The results are the same bits as the pure
pieces' (property-tested against them): the comparisons are exact IEEE
comparisons against bounds of the weights' dtype, and the draws are
`kerastroke.core.draws` computed operation for operation in the weights'
dtype, clamped as `Uniform.values_at` clamps them.

`available()` is False when Numba cannot be imported; `write` then composes
the pure pieces. The loops (in `loops.py`) are compiled on first use and
cached beside it, in `__pycache__`.
"""

import concurrent.futures
import functools
import os

import numpy as np

from kerastroke.accel import host
from kerastroke.core import seeds

# Tests switch this off to compare the compiled loops with the pure pieces.
enabled = True

# Weights the loops take: Numba has no float16 or bfloat16 arithmetic.
DTYPES = ("float32", "float64")


@functools.cache
def _compiled():
    """The compiled loops' module (compiled on first call, or loaded from the cache); None without Numba."""
    try:
        from kerastroke.accel import loops
    except ImportError:
        return None
    return loops


def available():
    """True when the compiled loops can run (Numba imports and `enabled`)."""
    return enabled and _compiled() is not None


def distinct_marks(size, want, key):
    """The positions `draws.distinct(size, want, key)` marks, as a bitmap.

    Returns:
        A NumPy uint64 array of `ceil(size / 64)` words, bit `p % 64` of
        word `p // 64` set for each position `p` hit (`unpack` gives
        `draws.distinct`'s mask).
    """
    limit = (2**64 // size) * size if size else 0
    return _compiled().distinct_marks(size, want, np.uint64(key), np.uint64(limit % 2**64))


def unpack(marks, size):
    """A `distinct_marks` bitmap as a boolean (size,) NumPy array."""
    as_bytes = marks.astype("<u8", copy=False).view(np.uint8)  # bit p % 8 of byte p // 8
    return np.unpackbits(as_bytes, count=size, bitorder="little").view(bool)


class Fill:
    """What the selected entries become, as the loops take it.

    Args:
        mutator: A built-in `constant` or `uniform` (see `fills`).
        dtype: The weights' dtype, one of `DTYPES`.
        seed: The mutator's seed.

    Raises:
        ValueError: As the mutator raises it, for bounds or a value the
            dtype cannot hold.
    """

    def __init__(self, mutator, dtype, seed):
        from kerastroke import mutators

        self.uniform = isinstance(mutator, mutators.Uniform)
        scalar = np.dtype(dtype).type  # the loops compile for scalars of the weights' dtype
        self.constant = scalar(0.0)
        self.key, self.bounds = np.uint64(0), (scalar(0.0),) * 4
        if self.uniform:
            self.key = np.uint64(seeds.key(seed, "uniform"))
            self.bounds = tuple(map(scalar, mutator.draw_bounds(dtype) + mutator.bounds(dtype)))
        else:
            self.constant = scalar(mutator.rounded(dtype))

    def arguments(self):
        """`constant, key, low, high, lo, hi`, as the loops take them after `uniform`."""
        return (self.constant, self.key) + self.bounds


def fills(mutator):
    """Whether the loops know `mutator`: the built-in `constant` and `uniform`."""
    from kerastroke import mutators

    return type(mutator) in (mutators.Constant, mutators.Uniform)


def marked(weights, marks, fill):
    """A copy of `weights` (a flat host array) with `fill` where `marks` has a bit.

    Args:
        marks: A `distinct_marks` bitmap.

    Returns:
        `(new, changed, zeros)`: the copy in a new buffer `host.lend`
        can share, the entries whose value changed, the entries zero.
    """
    loops = _compiled()
    new = host.aligned_empty(weights.shape, weights.dtype)
    size = weights.size

    def part(first, stop):  # words [first, stop) and their entries
        zeros = loops.copy_counting_zeros(weights[first * 64:stop * 64], new[first * 64:stop * 64])
        changed, gained = loops.patch_marked(new, marks, first, stop, fill.uniform, *fill.arguments())
        return changed, zeros + gained

    return _summed(new, _in_parts(part, marks.size, size, fresh=(new,)))


def in_range(weights, low, high, fill):
    """A copy of `weights` (a flat host array) with `fill` where `low <= w <= high`.

    Args:
        low, high: The bounds as `arrays.in_range` moves them into the
            weights' dtype. NaN and infinities are never in range.

    Returns:
        `(new, changed, zeros)`, as `marked`.
    """
    loops = _compiled()
    # Infinite bounds become the dtype's largest finite values, which leave
    # out the infinities as `arrays.in_range` does.
    scalar, largest = weights.dtype.type, np.finfo(weights.dtype).max
    low, high = max(scalar(low), -largest), min(scalar(high), largest)
    new = host.aligned_empty(weights.shape, weights.dtype)

    def part(first, stop):
        return loops.fill_in_range(
            weights[first:stop], new[first:stop], first, low, high, fill.uniform, *fill.arguments()
        )

    return _summed(new, _in_parts(part, weights.size, weights.size, fresh=(new,)))


def _summed(new, counts):
    return new, sum(int(changed) for changed, _ in counts), sum(int(zeros) for _, zeros in counts)


# Below this many entries per part a second thread costs more than it saves.
_MIN_PART = 2**20


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _pool():
    return _pool_of_process(os.getpid())


@functools.cache
def _pool_of_process(pid):
    # One per process: a pool inherited through fork has no threads.
    return concurrent.futures.ThreadPoolExecutor(_cores() - 1, thread_name_prefix="kerastroke")


def _touch(array):
    """Writes one entry per 4 KiB page of a new array, so its pages exist.

    Threads taking their first-touch page faults at once in one new buffer
    were measured stalling in the kernel (100-150 ms of system time for 64
    MiB, against 5-10 ms from one thread); faulted from one thread first,
    the pages are then only written.
    """
    flat = array.reshape(-1)
    flat[:: max(1, 4096 // flat.itemsize)] = 0


def _in_parts(work, length, entries, fresh=()):
    """`work(first, stop)` over contiguous parts of `range(length)`, one per core.

    The loops release the GIL and write disjoint parts of their output, and
    their counts add up, so the result does not depend on the split. The
    last part runs on the calling thread. `entries` (the weights behind the
    `length` units) decides how many parts are worth a thread. `fresh`
    arrays, new and untouched, are touched first (see `_touch`).
    """
    count = max(1, min(_cores(), entries // _MIN_PART, length))
    bounds = [length * j // count for j in range(count + 1)]
    parts = list(zip(bounds[:-1], bounds[1:]))
    if count == 1:
        return [work(*parts[0])]
    for array in fresh:
        _touch(array)
    futures = [_pool().submit(work, *part) for part in parts[:-1]]
    try:
        last = work(*parts[-1])
    finally:
        concurrent.futures.wait(futures)  # nothing still writes once this returns or raises
    return [future.result() for future in futures] + [last]
