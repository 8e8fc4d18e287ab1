"""The Numba loops behind `kerastroke.accel.host` (imported only through it).

Each loop mirrors a `keras.ops` function elsewhere, step for step, on rows
(R, N) of 32-bit words: float32 weights as their bit patterns (uint32), so
comparisons are exact whatever the floating-point mode, and hash words as
uint32, each step cast back to uint32: Numba computes uint32 arithmetic in
64 bits, and the cast lets the compiler keep 32-bit lanes, which vectorise
twice as wide (hashing 4M positions 2.3 to 1.4 ms).
"""

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)

_MULTIPLIER_1 = np.uint32(0x7FEB352D)
_MULTIPLIER_2 = np.uint32(0x846CA68B)
_8 = np.uint32(8)
_15 = np.uint32(15)
_16 = np.uint32(16)
_SIGN = np.uint32(0x80000000)
_MAGNITUDE = np.uint32(0x7FFFFFFF)
_INFINITY = np.uint32(0x7F800000)
_LEFT_OUT = np.uint32(0xFFFFFFFF)
_HEAD = np.uint32(0xFFFFF000)  # a float32's sign, exponent and top 11 stored bits
_TINY = np.uint32(0x00800000)  # float32's smallest normal, 2**-126, as bits
_SMALLEST_NORMAL = _TINY.view(np.float32)  # and as a float


@_jit
def _mix(x):
    """hashing.mix of a uint32 value, wrapping at 32 bits."""
    x = np.uint32(x ^ (x >> _16))
    x = np.uint32(x * _MULTIPLIER_1)
    x = np.uint32(x ^ (x >> _15))
    x = np.uint32(x * _MULTIPLIER_2)
    return np.uint32(x ^ (x >> _16))


@_jit
def _bits(k0, k1, position):
    """hashing.bits of one counter: mix(mix(position ^ k0) + k1), as uint32
    (`k0` and `k1` uint32)."""
    return _mix(np.uint32(_mix(np.uint32(position) ^ k0) + k1))


@_jit
def _rank(k0, k1, position):
    """The order key (uint32) of the signed int32 draw `hashing.bits` gives."""
    return _bits(k0, k1, position) ^ _SIGN


@_jit
def _bin(histogram, digit):
    """The count of `digit`, summed over the histogram's four copies."""
    return histogram[0, digit] + histogram[1, digit] + histogram[2, digit] + histogram[3, digit]


@_jit
def _digit(histogram, left):
    """The digit where the counts (summed over the copies) reach `left`, and what is left."""
    digit = 0
    while True:
        here = _bin(histogram, digit)
        if here >= left:
            return digit, left
        left -= here
        digit += 1


@_jit
def _kth(keys, k, rest):
    """The k-th smallest of uint32 `keys` (1 <= k <= keys.size), by radix
    selection, with how many keys lie below it and how many equal it;
    `rest` is scratch of keys.size + 1 entries.

    Three digits (bits 21-31, 10-20, 0-9), most significant first: a
    histogram of the top digit, then the keys with the digit where the
    count reaches k are copied out, and the next two digits are found among
    them the same way. Equal to ranking._kth: the largest t with fewer than
    k keys below it. Histograms are kept in four copies, entry i counted in
    copy i % 4: many equal keys (the zeros of a pruned tensor) would
    otherwise wait on one another's increments of a single counter; and
    every loop is free of branches on the keys. The last histogram's count
    at t is the number of keys equal to t, and what is left of k when it
    is reached the number of those among the k smallest, so the keys below
    t number k minus that: a pass fewer for `smallest` (4 x 1M magnitudes,
    5.2 to 4.5 ms).
    """
    histogram = np.zeros((4, 2048), np.int64)
    for i in range(keys.size):
        histogram[i & 3, keys[i] >> np.uint32(21)] += 1
    top, left = _digit(histogram, k)
    count = _bin(histogram, top)
    j = 0
    for i in range(keys.size):
        rest[j] = keys[i]
        j += keys[i] >> np.uint32(21) == np.uint32(top)
    histogram[:] = 0
    for i in range(count):
        histogram[i & 3, (rest[i] >> np.uint32(10)) & np.uint32(2047)] += 1
    middle, left = _digit(histogram, left)
    histogram[:] = 0
    for i in range(count):
        key = rest[i]
        histogram[i & 3, key & np.uint32(1023)] += (key >> np.uint32(10)) & np.uint32(2047) == np.uint32(middle)
    low, left = _digit(histogram, left)
    tied = _bin(histogram, low)
    return (np.uint32(top) << np.uint32(21)) | (np.uint32(middle) << np.uint32(10)) | np.uint32(low), k - left, tied


@_jit
def _count_row(mask):
    total = 0
    for i in range(mask.size):
        total += mask[i]
    return total


@_jit
def count(mask):
    out = np.zeros(mask.shape[0], np.int64)
    for r in range(mask.shape[0]):
        out[r] = _count_row(mask[r])
    return out


@_jit
def choose(eligible, k, k0, k1, out, keys, rest):
    """picking.choose_count into `out`: the eligible entries with the
    min(k, eligible) smallest ranks. `keys` and `rest` are scratch (N and
    N + 1 words)."""
    rows, size = eligible.shape
    for r in range(rows):
        a, b = np.uint32(k0[r]), np.uint32(k1[r])
        total = 0
        for i in range(size):
            chosen = eligible[r, i]
            keys[i] = _rank(a, b, i) if chosen else _LEFT_OUT
            total += chosen
        want = min(k[r], total)
        if want <= 0:
            out[r, :] = False
            continue
        threshold = _kth(keys, want, rest)[0]
        for i in range(size):
            out[r, i] = eligible[r, i] & (keys[i] <= threshold)


@_jit
def smallest(bits, eligible, k, t0, t1, out, keys, ties, rest):
    """picking.smallest of float32 magnitudes into `out`: below the threshold,
    then the ties with the smallest random ranks (ranking._select and
    _fewest). `keys`, `ties` and `rest` are scratch (N, N and N + 1 words)."""
    rows, size = bits.shape
    for r in range(rows):
        total = 0
        for i in range(size):
            if eligible[r, i]:
                keys[i] = (bits[r, i] & _MAGNITUDE) ^ _SIGN
                total += 1
            else:
                keys[i] = _LEFT_OUT
        want = min(k[r], total)
        if want <= 0:
            out[r, :] = False
            continue
        threshold, below, tied = _kth(keys, want, rest)
        need = want - below
        # At a threshold of _LEFT_OUT, `tied` also counts any left-out
        # entries; then it exceeds `need` and the ties are drawn below
        # among the eligible ones, which is exact.
        if tied == need:
            for i in range(size):
                out[r, i] = eligible[r, i] & (keys[i] <= threshold)
            continue
        a, b = np.uint32(t0[r]), np.uint32(t1[r])
        for i in range(size):
            ties[i] = _rank(a, b, i) if eligible[r, i] and keys[i] == threshold else _LEFT_OUT
        last = _kth(ties, need, rest)[0]
        for i in range(size):
            out[r, i] = eligible[r, i] and (keys[i] < threshold or (keys[i] == threshold and ties[i] <= last))


@_jit
def finite(bits, out):
    flat, done = bits.ravel(), out.ravel()
    for i in range(flat.size):
        done[i] = flat[i] & _MAGNITUDE < _INFINITY
    return out


@_jit
def _key(word):
    """arrays.order_keys of one float32's bits, as int32 (computed without a
    branch: the magnitude, negated where the sign bit is set). Every key
    fits, and 32-bit lanes vectorise twice as wide as 64-bit ones (in_range
    on 4M entries 0.9 to 0.45 ms)."""
    magnitude = np.int32(word & _MAGNITUDE)
    sign = np.int32(np.int32(word) >> np.int32(31))  # -1 where negative, else 0
    return np.int32(np.int32(magnitude ^ sign) - sign)


@_jit
def in_range(bits, low, high, out):
    """arrays.in_range: finite entries whose order key lies in [low, high] (int32)."""
    flat, done = bits.ravel(), out.ravel()
    for i in range(flat.size):
        key = _key(flat[i])
        done[i] = (flat[i] & _MAGNITUDE < _INFINITY) & (low <= key) & (key <= high)
    return out


@_jit
def fill(bits, mask, word, out):
    flat, chosen, done = bits.ravel(), mask.ravel().view(np.uint8), out.ravel()
    for i in range(flat.size):
        select = np.uint32(0) - np.uint32(chosen[i])
        done[i] = (word & select) | (flat[i] & ~select)
    return out


# Entries per step of `uniform`: its arrays of one step stay in the L1 cache.
_CHUNK = 1024


@_jit
def uniform(weights, bits, mask, k0, k1, bounds, clamp, keyed, out):
    """hashing.uniform (float32) clamped like arrays.clamp into `out` (uint32
    rows) where `mask` is set; elsewhere `out` takes the weights' `bits`.

    `bounds` holds the float32 pieces of low, high, -low and -high (head,
    tail each); the sum runs in hashing.uniform's order.

    It goes `_CHUNK` entries at a time: the positions under the mask are
    gathered (without a branch), then each step of the draw runs over all
    of them as a loop of its own on arrays, which the compiler vectorises
    (a float's head is taken through an integer view of the array). Drawn
    entry by entry, with a branch on the mask and the head taken through a
    one-float scratch, 4 x 1M draws on one thread took 17.2 ms, now 9.2
    (7.6 and 4.2 ms with 15% of the entries drawn; 1.6 and 3.2 ms with
    none, the gather's pass).
    """
    rows, size = weights.shape
    out_values = out.view(np.float32)
    low0, low1, high0, high1 = bounds[0], bounds[1], bounds[2], bounds[3]
    neg_low0, neg_low1, neg_high0, neg_high1 = bounds[4], bounds[5], bounds[6], bounds[7]
    lo, hi = clamp[0], clamp[1]
    limit_bits = clamp.view(np.uint32)
    lo_key, hi_key = _key(limit_bits[0]), _key(limit_bits[1])
    one = np.float32(1.0)
    scale = np.float32(2.0**-24)
    where = np.empty(_CHUNK, np.int64)
    u, u_head = np.empty(_CHUNK, np.float32), np.empty(_CHUNK, np.float32)
    rest, rest_head = np.empty(_CHUNK, np.float32), np.empty(_CHUNK, np.float32)
    value = np.empty(_CHUNK, np.float32)
    u_bits, u_head_bits = u.view(np.uint32), u_head.view(np.uint32)
    rest_bits, rest_head_bits, value_bits = rest.view(np.uint32), rest_head.view(np.uint32), value.view(np.uint32)
    for r in range(rows):
        a, b = np.uint32(k0[r]), np.uint32(k1[r])
        row_mask, row_out, row_values = mask[r], out[r], out_values[r]
        row_out[:] = bits[r]
        for start in range(0, size, _CHUNK):
            stop = min(start + _CHUNK, size)
            n = 0
            for i in range(start, stop):
                where[n] = i
                n += row_mask[i]
            for j in range(n):
                u[j] = np.float32(np.int32(_bits(a, b, where[j]) >> _8)) * scale
                rest[j] = one - u[j]
            for j in range(n):
                u_head_bits[j] = u_bits[j] & _HEAD
                rest_head_bits[j] = rest_bits[j] & _HEAD
            for j in range(n):
                u_tail, rest_tail = u[j] - u_head[j], rest[j] - rest_head[j]
                v = (low0 * rest_head[j]) - (neg_high0 * u_head[j])
                v = v - ((neg_low0 * rest_tail) - (high0 * u_tail))
                v = v - ((neg_low1 * rest_head[j]) - (high1 * u_head[j]))
                value[j] = v - ((neg_low1 * rest_tail) - (high1 * u_tail))
            if keyed:
                for j in range(n):
                    key = min(max(_key(value_bits[j]), lo_key), hi_key)
                    value_bits[j] = np.uint32(-key) | _SIGN if key < 0 else np.uint32(key)
            else:
                for j in range(n):
                    v = value[j]
                    if v < lo:
                        v = lo
                    if v > hi:
                        v = hi
                    value[j] = v
            for j in range(n):
                row_values[where[j]] = value[j]


_TINY_SCALED = np.float32(2.0**-62)  # float32's smallest normal, 2**-126, times 2**64


@_jit
def _flushed(x):
    """`x` (float32), or a zero of its sign if it is subnormal, as a flushing CPU reads or writes it."""
    return np.float32(math.copysign(0.0, x)) if abs(x) < _SMALLEST_NORMAL else x


@_jit
def _product(a, b, flush):
    """`a * b` in float32, as a CPU that flushes results to zero gives it when `flush`.

    Such a CPU flushes a result that is tiny after rounding to 24 bits with
    an unbounded exponent, which gradual underflow can round up to the
    smallest normal instead. The product is exact in float64; scaled by
    2**64 it rounds to float32 at 24 bits, and is tiny iff below 2**-62.
    """
    exact = np.float64(a) * np.float64(b)
    if flush and abs(np.float32(exact * 2.0**64)) < _TINY_SCALED:
        return np.float32(math.copysign(0.0, exact))
    return np.float32(exact)


@_jit
def shrink_perturb(values, bits, mask, fresh, shrink, perturb, flush_inputs, flush_results, out):
    """`shrink * w + perturb * fresh` into `out` (uint32 rows) where `mask`
    is set (float32, rounded after each operation as `keras.ops` rounds it),
    elsewhere the weights' `bits`.

    With `flush_inputs`, subnormal operands count as zeros of their sign;
    with `flush_results`, subnormal results become zeros of their sign: what
    TensorFlow's and XLA's CPU kernels do.
    """
    rows, size = values.shape
    out_values = out.view(np.float32)
    if flush_inputs:
        shrink, perturb = _flushed(shrink), _flushed(perturb)
    for r in range(rows):
        for i in range(size):
            if not mask[r, i]:
                out[r, i] = bits[r, i]
                continue
            w, f = values[r, i], fresh[r, i]
            if flush_inputs:
                w, f = _flushed(w), _flushed(f)
            total = _product(shrink, w, flush_results) + _product(perturb, f, flush_results)
            if flush_results:  # a sum of two floats that is tiny is exact: a subnormal
                total = _flushed(total)
            out_values[r, i] = total


@_jit
def zeros(bits, out):
    flat, done = bits.ravel(), out.ravel()
    for i in range(flat.size):
        done[i] = flat[i] & _MAGNITUDE == 0
    return out


@_jit
def active_and_empty(bits, active, empty, counts):
    """Per row: entries finite and not zero (`active`), entries +0.0 or -0.0
    (`empty`), and how many of each (`counts`, (R, 2)), in one pass."""
    for r in range(bits.shape[0]):
        row, on, off = bits[r], active[r], empty[r]
        actives, empties = 0, 0
        for i in range(row.size):
            magnitude = row[i] & _MAGNITUDE
            zero, alive = magnitude == 0, magnitude != 0 and magnitude < _INFINITY
            off[i], on[i] = zero, alive
            empties += zero
            actives += alive
        counts[r, 0], counts[r, 1] = actives, empties
    return counts


@_jit
def drop_and_grow(bits, mask, grow_mask, grown, out):
    """DropAndGrowValues._combine on float32 bits."""
    flat, chosen, growing, drawn, done = bits.ravel(), mask.ravel(), grow_mask.ravel(), grown.ravel(), out.ravel()
    for i in range(flat.size):
        if growing[i]:
            done[i] = _TINY if drawn[i] & _MAGNITUDE == 0 else drawn[i]
        elif chosen[i]:
            done[i] = 0
        else:
            done[i] = flat[i]
    return out


@_jit
def _introduced_row(mask, new, old):
    total = 0
    for i in range(mask.size):
        total += mask[i] & (new[i] & _MAGNITUDE >= _INFINITY) & (old[i] & _MAGNITUDE < _INFINITY)
    return total


@_jit
def introduced(mask, new, old):
    """Per row: entries of `mask` finite in `old` and not finite in `new`."""
    out = np.zeros(mask.shape[0], np.int64)
    for r in range(mask.shape[0]):
        out[r] = _introduced_row(mask[r], new[r], old[r])
    return out


@_jit
def _same(x, y):
    """Not writer._differs: equal bits, both NaN, or both zero."""
    mx, my = x & _MAGNITUDE, y & _MAGNITUDE
    return (x == y) | ((mx > _INFINITY) & (my > _INFINITY)) | ((mx == 0) & (my == 0))


@_jit
def _summary_row(new, old, differs, keeps, mask):
    changes = 0
    zero_count = 0
    introduced = 0
    for i in range(new.size):
        x, y = new[i], old[i]
        zero = x & _MAGNITUDE == 0
        zero_count += zero
        differ = not _same(x, y)
        changes += differ
        if differs is not None:
            differs[i] = differ
        if keeps is not None:
            keeps[i] = np.int32(zero) - 1
        if mask is not None:
            introduced += mask[i] & (x & _MAGNITUDE >= _INFINITY) & (y & _MAGNITUDE < _INFINITY)
    return changes, zero_count, introduced


@_jit
def _row(array, r):
    return None if array is None else array[r]


@_jit
def summary(new, old, differs, keeps, mask):
    """writer._differs of float32 bits into `differs`, and
    persistence.keep_mask into `keeps` (int32), with the counts of changed
    and zero entries per row; and `introduced(mask, new, old)` in the same
    pass. Each of `differs`, `keeps` and `mask` may be None: Numba compiles
    a loop for each combination, without the arrays left out (as empty
    placeholders, they made the compiler's run-time overlap checks fail
    now and then, depending on where they lay in memory, and the loop ran
    unvectorised: 1.5 to 6.5 or 26 ms on 4M entries)."""
    rows = new.shape[0]
    changed = np.zeros(rows, np.int64)
    zeros = np.zeros(rows, np.int64)
    bad = np.zeros(rows, np.int64)
    for r in range(rows):
        changed[r], zeros[r], bad[r] = _summary_row(new[r], old[r], _row(differs, r), _row(keeps, r), _row(mask, r))
    return changed, zeros, bad
