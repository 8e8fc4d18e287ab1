"""The CPU path: selections and new values computed in host memory by Numba loops.

On the CPU, each `keras.ops` op of an application is a pass over memory of
its own on TensorFlow's graph and on PyTorch (hashing a position is about 24
integer ops; an exact threshold 32 compare-and-count passes). These loops do
the same arithmetic in one pass per step, on NumPy arrays that hold the
weights as 32-bit floats, and give the same bits as the `keras.ops` forms:

- `choose`: `kerastroke.core.picking.choose_count` (random ranks).
- `smallest`: `kerastroke.core.picking.smallest` of magnitudes (random
  tie-breaks).
- `finite`, `zeros`, `in_range`, `count`, `to_pick`: eligibility and counts
  as `kerastroke.core.arrays` and `picking` compute them.
- `uniform`: `kerastroke.core.hashing.uniform` for float32, optionally
  clamped as `arrays.clamp` clamps, drawn only where the mask is set.
- `fill`, `drop_and_grow`, `shrink_perturb`: `arrays.merge` with a constant,
  drop-and-grow's combination, and shrink-and-perturb's (with the backend's
  handling of subnormals).
- `introduced`, `summary`: the writer's checks and account (non-finite
  values introduced; entries changed, zeros and the masks holding them).

Exact thresholds are found by a radix selection (digits of 11, 11 and 10
bits, a histogram per digit) instead of 32 bisection passes.

The loops write into outputs and scratch given to them, taken from
`kerastroke.accel.memory`, which reuses a block once nothing holds it:
fresh memory of a batch's size costs more than a pass over it (on
TensorFlow, MagnitudePruning on 4 x 1024^2 29 to 20 ms, SET 70 to 48).

Built-in pieces reach these through their `select_host` / `mutate_host`
forms (the piece protocol's declared capability, see
`kerastroke.engine.writer`); the engine itself calls only `introduced`
and `summary`.
`available()` is False when Numba cannot be imported: the engine then
takes the compiled path. The loops compile on first use and are cached
beside this module, in `__pycache__`.
"""

import concurrent.futures
import functools
import os

import numpy as np

from kerastroke.accel import memory
from kerastroke.core import hashing


@functools.cache
def _pool():
    """Threads for the rows of a large batch: the loops release the GIL."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=_PARTS - 1, thread_name_prefix="kerastroke")


# A selection or a draw over at least this many entries splits its rows over
# up to _PARTS threads (4 x 1M random ranks: 14 ms on one core, 7 ms on two).
_PARALLEL_FROM = 1 << 18
_PARTS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _by_rows(loop, per_row, *rest, out, scratch=()):
    """`loop(*per_row, *rest, out, *scratch arrays)` with the rows of the
    per-row arrays and of `out` split over threads when the batch is large:
    each row's result depends on that row alone, so the split changes
    nothing but the time. `scratch` gives `(entries, dtype)` of each scratch
    array a loop takes, one set per thread."""
    rows = out.shape[0]
    parts = min(_PARTS, rows) if out.size >= _PARALLEL_FROM else 1

    def scratches():
        return [memory.empty((entries,), dtype) for entries, dtype in scratch]

    if parts < 2:
        loop(*per_row, *rest, out, *scratches())
        return out
    bounds = np.linspace(0, rows, parts + 1).astype(int)
    slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    waiting = [
        _pool().submit(loop, *[x[part] for x in per_row], *rest, out[part], *scratches()) for part in slices[1:]
    ]
    loop(*[x[slices[0]] for x in per_row], *rest, out[slices[0]], *scratches())
    for future in waiting:
        future.result()
    return out


@functools.cache
def _loops():
    try:
        from kerastroke.accel import loops
    except ImportError:  # Numba missing or unusable
        return None
    return loops


def available():
    """True when the loops can run (Numba imports).

    Example:
    >>> isinstance(available(), bool)
    True
    """
    return _loops() is not None


def _words(keys):
    """int32 keys (R, 2) as the unsigned words the loops take."""
    keys = np.ascontiguousarray(keys, dtype=np.int32).view(np.uint32)
    return np.ascontiguousarray(keys[:, 0]), np.ascontiguousarray(keys[:, 1])


def _rows(array):
    return array.reshape(array.shape[0], -1)


def _bits(weights):
    """float32 weights (R, ...) as the rows of their bit patterns (R, N), uint32."""
    return _rows(np.ascontiguousarray(weights, dtype=np.float32)).view(np.uint32)


def _mask(mask):
    """A bool batch (R, ...) as rows (R, N)."""
    return _rows(np.ascontiguousarray(mask, dtype=np.bool_))


def to_pick(amount, total):
    """`picking.to_pick` on the host: `round(amount * total)` in float64, half to even."""
    return np.round(np.float64(amount) * np.asarray(total, dtype=np.float64)).astype(np.int64)


def everything(shape):
    """A bool batch of `shape`, all True: every entry eligible."""
    out = memory.empty(shape, np.bool_)
    out.fill(True)
    return out


def count(mask):
    """True entries per row of a bool batch (R, ...), as int64 (R,)."""
    return _loops().count(_mask(mask))


def choose(eligible, k, keys):
    """`picking.choose_count`: exactly `min(k, eligible)` entries per row at random.

    Args:
        eligible: bool (R, ...).
        k: int (R,) entries to take per row.
        keys: int32 (R, 2), the piece's keys (derived with "pick" here).

    Returns:
        bool of the batch's shape.
    """
    k0, k1 = _words(hashing.derive_on_host(keys, "pick"))
    k = np.asarray(k, dtype=np.int64)
    rows = _mask(eligible)
    size = rows.shape[1]
    out = _by_rows(_loops().choose, (rows, k, k0, k1), out=memory.empty(rows.shape, np.bool_),
                   scratch=((size, np.uint32), (size + 1, np.uint32)))
    return out.reshape(eligible.shape)


def smallest(weights, eligible, k, keys):
    """`picking.smallest` of float32 magnitudes: the `k` smallest |w| per row, random ties.

    Args:
        weights: float32 (R, ...).
        eligible: bool of the same shape.
        k: int (R,).
        keys: int32 (R, 2), the piece's keys (derived with "ties" here).
    """
    t0, t1 = _words(hashing.derive_on_host(keys, "ties"))
    rows = _mask(eligible)
    k = np.asarray(k, dtype=np.int64)
    size = rows.shape[1]
    out = _by_rows(_loops().smallest, (_bits(weights), rows, k, t0, t1), out=memory.empty(rows.shape, np.bool_),
                   scratch=((size, np.uint32), (size, np.uint32), (size + 1, np.uint32)))
    return out.reshape(eligible.shape)


def finite(weights):
    """Entries of float32 `weights` that are finite (read from the bits)."""
    bits = _bits(weights)
    return _loops().finite(bits, memory.empty(bits.shape, np.bool_)).reshape(weights.shape)


def in_range(weights, low_key, high_key):
    """`arrays.in_range` for float32: order keys in [low_key, high_key], finite."""
    bits = _bits(weights)
    out = memory.empty(bits.shape, np.bool_)
    return _loops().in_range(bits, np.int32(low_key), np.int32(high_key), out).reshape(weights.shape)


def fill(weights, mask, value):
    """`arrays.merge(mask, value, weights)` for float32: a new array."""
    word = np.asarray(value, dtype=np.float32).reshape(1).view(np.uint32)[0]
    bits = _bits(weights)
    out = _loops().fill(bits, _mask(mask), word, memory.empty(bits.shape, np.uint32))
    return out.view(np.float32).reshape(weights.shape)


def _pieces(value):
    """A float32 bound as `hashing._split` splits it: head (top 12 significant bits), tail."""
    value = np.float32(value)
    head = (np.asarray(value).reshape(1).view(np.uint32) & np.uint32(0xFFFFF000)).view(np.float32)[0]
    return np.float32(head), np.float32(value - head)


def uniform(weights, mask, keys, low, high, clamp=None):
    """`hashing.uniform(keys, positions, low, high)` for float32, merged into
    `weights` where `mask` is set (drawn only there).

    Args:
        weights: float32 (R, ...).
        mask: bool of the same shape.
        keys: int32 (R, 2), as the draw's keys (already derived).
        low, high: The draw's bounds, rounded to float32 as `ops.cast` rounds.
        clamp: None, or `(lo, hi, keyed)`: then clipped as `arrays.clamp`
            clips to float32 bounds `lo` and `hi`, comparing order keys if
            `keyed` (a bound zero or subnormal), else the floats.
    """
    k0, k1 = _words(keys)
    low, high = np.float32(low), np.float32(high)
    bounds = np.array([*_pieces(low), *_pieces(high), *_pieces(-low), *_pieces(-high)], dtype=np.float32)
    lo, hi, keyed = (-np.inf, np.inf, False) if clamp is None else clamp
    w = _rows(np.ascontiguousarray(weights, dtype=np.float32))
    limits = np.array([lo, hi], dtype=np.float32)
    out = memory.empty(w.shape, np.uint32)
    _by_rows(_loops().uniform, (w, w.view(np.uint32), _mask(mask), k0, k1), bounds, limits, bool(keyed), out=out)
    return out.view(np.float32).reshape(weights.shape)


def shrink_perturb(weights, mask, fresh, shrink, perturb, flushes):
    """`mutators.ShrinkPerturbValues._combine` for float32: `shrink * w +
    perturb * fresh` where `mask` is set, rounded after each operation.

    Args:
        weights, fresh: float32 (R, ...).
        mask: bool of the same shape.
        shrink, perturb: The factors, rounded to float32.
        flushes: `(inputs, results)`: whether the backend's arithmetic reads
            subnormal operands as zeros and writes subnormal results as
            zeros (`arrays.flushes_subnormals()`), so the host gives its bits.
    """
    values = _rows(np.ascontiguousarray(weights, dtype=np.float32))
    drawn = _rows(np.ascontiguousarray(fresh, dtype=np.float32))
    flush_inputs, flush_results = flushes
    out = memory.empty(values.shape, np.uint32)
    _by_rows(_loops().shrink_perturb, (values, values.view(np.uint32), _mask(mask), drawn), np.float32(shrink),
             np.float32(perturb), bool(flush_inputs), bool(flush_results), out=out)
    return out.view(np.float32).reshape(weights.shape)


def zeros(weights):
    """`arrays.is_zero` for float32: entries +0.0 or -0.0, read from the bits."""
    bits = _bits(weights)
    return _loops().zeros(bits, memory.empty(bits.shape, np.bool_)).reshape(weights.shape)


def active_and_empty(weights):
    """Drop-and-grow's eligibility for float32 `weights` (R, ...), in one pass:
    the entries finite and not zero, those +0.0 or -0.0 (read from the
    bits), and their counts per row (int64 (R,) each)."""
    bits = _bits(weights)
    active, empty = memory.empty(bits.shape, np.bool_), memory.empty(bits.shape, np.bool_)
    counts = _loops().active_and_empty(bits, active, empty, np.empty((bits.shape[0], 2), np.int64))
    return active.reshape(weights.shape), empty.reshape(weights.shape), counts[:, 0], counts[:, 1]


def drop_and_grow(weights, mask, grow_mask, grown):
    """`mutators.DropAndGrowValues._combine` for float32: selected entries become
    0.0, those of `grow_mask` take `grown` (a grown 0.0 becomes float32's
    smallest normal), the rest keep their bits."""
    bits = _bits(weights)
    out = _loops().drop_and_grow(bits, _mask(mask), _mask(grow_mask), _bits(grown), memory.empty(bits.shape, np.uint32))
    return out.view(np.float32).reshape(weights.shape)


def introduced(mask, new, old):
    """Per row, the entries of `mask` that are finite in `old` and not in `new`."""
    return _loops().introduced(_mask(mask), _bits(new), _bits(old))


def summary(new, original, with_masks, with_keeps, mask=None):
    """The writer's account of float32 rows: changed and zero entries, the
    mask of those changed and the keep mask holding the zeros.

    Args:
        new, original: float32 batches (R, ...).
        with_masks: Whether to return the mask of changed entries.
        with_keeps: Whether to return `persistence.keep_mask(new)`.
        mask: None, or the selection of the one rule that made `new` from
            `original`: then `introduced(mask, new, original)` is counted in
            the same pass.

    Returns:
        `(changed (R,), zeros (R,), differs or None, keeps or None,
        introduced (R,) or None)`: counts as int64; `differs` bool and
        `keeps` int32 (-1 where kept, 0 at a zero), of `new`'s shape;
        changed as the writer's `_differs` counts it (a NaN that stays NaN,
        or a zero that changes sign, has not changed).
    """
    bits = _bits(new)
    differs = memory.empty(bits.shape, np.bool_) if with_masks else None
    keeps = memory.empty(bits.shape, np.int32) if with_keeps else None
    changed, zeros, bad = _loops().summary(bits, _bits(original), differs, keeps, None if mask is None else _mask(mask))
    return (
        changed,
        zeros,
        differs.reshape(new.shape) if with_masks else None,
        keeps.reshape(new.shape) if with_keeps else None,
        bad if mask is not None else None,
    )
