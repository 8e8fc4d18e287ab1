"""A NumPy reference of `kerastroke.core.hashing`, written in uint32 arithmetic.

Unsigned 32-bit NumPy arithmetic has logical shifts and wrapping products
built in, so this reads as the textbook definitions and checks the int32
`keras.ops` version (masked shifts, signed constants) bit for bit. It also has
the inverse of `mix`, which shows that `mix` and `bits` are bijections.
"""

import hashlib

import numpy as np

M1 = 0x7FEB352D
M2 = 0x846CA68B


def _u32(x):
    return np.asarray(x).astype(np.int64).astype(np.uint32)


def _i32(x):
    return np.asarray(x, dtype=np.uint32).view(np.int32)


def mix(x):
    x = _u32(x).copy()
    x ^= x >> np.uint32(16)
    x *= np.uint32(M1)
    x ^= x >> np.uint32(15)
    x *= np.uint32(M2)
    x ^= x >> np.uint32(16)
    return _i32(x)


def _unshift(y, shift):
    """Inverse of `x ^ (x >> shift)` on uint32."""
    x = y.copy()
    for _ in range(32 // shift + 1):
        x = y ^ (x >> np.uint32(shift))
    return x


def unmix(y):
    """The inverse of `mix`."""
    y = _u32(y)
    y = _unshift(y, 16)
    y = y * np.uint32(pow(M2, -1, 2**32))
    y = _unshift(y, 15)
    y = y * np.uint32(pow(M1, -1, 2**32))
    return _i32(_unshift(y, 16))


def key_words(key):
    return _i32(np.array([key & 0xFFFFFFFF, key >> 32], dtype=np.uint32))


def _split(key):
    key = np.asarray(key, dtype=np.int32)
    k0, k1 = _u32(key[..., 0]), _u32(key[..., 1])
    if key.ndim > 1:
        k0, k1 = k0[..., None], k1[..., None]
    return k0, k1


def bits(key, counters):
    k0, k1 = _split(key)
    return mix(_u32(mix(_u32(counters) ^ k0)) + k1)


def unbits(key, draws):
    """The counters whose draws are `draws`: the inverse of `bits` for a key."""
    k0, k1 = _split(key)
    return _i32(_u32(unmix(_u32(unmix(draws)) - k1)) ^ k0)


def derive(key, label):
    text = repr(label).encode()
    digest = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    l0, l1 = (np.uint32(w) for w in key_words(digest).view(np.uint32))
    key = np.asarray(key, dtype=np.int32)
    k0, k1 = _u32(key[..., 0]), _u32(key[..., 1])
    a = _u32(mix(k0 ^ l0))
    b = _u32(mix((k1 ^ l1) + a))
    a = _u32(mix(a + b))
    return np.stack([_i32(a), _i32(b)], axis=-1)


def unit(key, counters, dtype="float32"):
    if np.dtype(dtype) == np.float32:
        return (_u32(bits(key, counters)) >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
    high = (_u32(bits(key, counters)) >> np.uint32(5)).astype(np.uint64)
    low = (_u32(bits(derive(key, "low bits"), counters)) >> np.uint32(6)).astype(np.uint64)
    return ((high << np.uint64(26)) | low).astype(np.float64) * 2.0**-53


def _pieces(x, widths):
    """Pieces of a float array: each keeps the top `width` significant bits of the rest."""
    mantissa, unsigned = (23, np.uint32) if x.dtype == np.float32 else (52, np.uint64)
    pieces = []
    for width in widths:
        mask = unsigned(~((1 << (mantissa - width + 1)) - 1) & np.iinfo(unsigned).max)
        head = (x.view(unsigned) & mask).view(x.dtype)
        pieces.append(head)
        x = x - head
    return pieces + [x]


def uniform(key, counters, low, high, dtype="float32"):
    """`low*(1-u) + high*u` as a fixed-order sum of exact products of pieces."""
    work = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    bound, draw = ((12,), (12,)) if work == np.float32 else ((26,), (18, 18))
    u = np.asarray(unit(key, counters, work))
    rest = work(1.0) - u
    lows = _pieces(np.full(u.shape, low, work), bound)
    highs = _pieces(np.full(u.shape, high, work), bound)
    rests, draws = _pieces(rest, draw), _pieces(u, draw)
    value = None
    with np.errstate(over="ignore", invalid="ignore"):
        for lo, hi in zip(lows, highs):
            for r, d in zip(rests, draws):
                term = lo * r + hi * d
                value = term if value is None else value + term
        return value.astype(dtype)  # float16 may overflow, as on the backends
