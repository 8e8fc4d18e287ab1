"""Counter-based random bits in 32-bit integer `keras.ops`, traceable on every backend.

Draw `c` of key `(k0, k1)` is `mix(mix(c ^ k0) + k1)`: a pure function of the
key and the counter, so draws trace under `jax.jit` and `tf.function` (with or
without XLA), run eagerly on PyTorch, and give the same bits on TensorFlow,
JAX (with or without `JAX_ENABLE_X64`) and PyTorch.

Everything is int32 arithmetic that every backend has and wraps the same way:
xor, and, arithmetic right shift (made logical with a mask), and
multiplication, which wraps modulo 2**32 on all three backends. Constants are
written as signed int32, because JAX without x64 refuses Python ints of
2**31 and above.

Keys are pairs of int32 words, shape `(..., 2)`: a leading batch axis gives
each of a batch of variables its own key. `key_words` turns the 64-bit keys of
`kerastroke.core.seeds.key` into such pairs on the host.

Example:
>>> import numpy as np
>>> from kerastroke.core import seeds
>>> key = key_words(seeds.key(7, "select"))
>>> draws = np.asarray(keras.ops.convert_to_numpy(bits(key, np.arange(4, dtype="int32"))))
>>> str(draws.dtype), len(set(draws.tolist()))
('int32', 4)
"""

import functools
import hashlib

import keras
import numpy as np
from keras import ops

from kerastroke.core import arrays

# lowbias32, a two-round xor-shift-multiply mixer found by Chris Wellons' hash
# prospector (public domain): shifts 16, 15, 16; multipliers below.
_MULTIPLIER_1 = np.int32(0x7FEB352D)
_MULTIPLIER_2 = np.int32(0x846CA68B - 2**32)  # as signed int32


def _signed(value):
    """The int32 with the low 32 bits of a Python int, as a Python int."""
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def _shift_right(x, shift):
    """Logical right shift of int32 `x`: the arithmetic shift, sign bits masked off."""
    return ops.bitwise_and(ops.right_shift(x, shift), np.int32((1 << (32 - shift)) - 1))


def _add(x, y):
    """`x + y` (wrapping), broadcast as NumPy would.

    Written as `x - (-y)`, which is the same bits for ints and floats:
    `keras.ops.add` on TensorFlow treats a (R, 1) operand added to a (R, R)
    one as a bias of the last axis (`tf.nn.bias_add`) and broadcasts it wrongly.
    """
    return ops.subtract(x, ops.negative(y))


def _int32(x):
    x = ops.convert_to_tensor(x)
    return x if keras.backend.standardize_dtype(x.dtype) == "int32" else ops.cast(x, "int32")


def mix(x):
    """A bijective mixer of 32-bit integers: every output bit depends on every input bit.

    Two xor-shift-multiply rounds (lowbias32). Each step (`x ^= x >>> s` and
    multiplication by an odd constant modulo 2**32) is invertible, so distinct
    inputs always give distinct outputs.

    Args:
        x: int32 tensor (or array) of any shape.

    Returns:
        An int32 tensor of the same shape.

    Example:
    >>> import numpy as np
    >>> y = keras.ops.convert_to_numpy(mix(np.array([0, 1, 2], dtype="int32")))
    >>> [int(v) for v in y]
    [0, 1753845952, -787275391]
    """
    x = _int32(x)
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, _MULTIPLIER_1)
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, _MULTIPLIER_2)
    return ops.bitwise_xor(x, _shift_right(x, 16))


def key_words(key):
    """The two int32 words of a 64-bit key (host side, before tracing).

    Args:
        key: A Python int in [0, 2**64), as `kerastroke.core.seeds.key` returns.

    Returns:
        A NumPy int32 array `[low word, high word]` of shape (2,); stack several
        with `np.stack` for a batch of keys.

    Raises:
        ValueError: If `key` is outside [0, 2**64).
        TypeError: If `key` is not an integer.

    Example:
    >>> key_words(2**32 + 5).tolist()
    [5, 1]
    >>> key_words(2**64 - 1).tolist()
    [-1, -1]
    """
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"`key` must be an integer. Received: key={key!r}")
    key = int(key)
    if not 0 <= key < 2**64:
        raise ValueError(f"`key` must be in [0, 2**64). Received: key={key!r}")
    return np.array([_signed(key), _signed(key >> 32)], dtype=np.int32)


def _words(key, counters):
    """Key words shaped to broadcast against `counters`: a batched key gains a last axis."""
    key = _int32(key)
    if len(key.shape) == 0 or key.shape[-1] != 2:
        raise ValueError(f"`key` must have shape (..., 2). Received: shape={tuple(key.shape)}")
    k0, k1 = key[..., 0], key[..., 1]
    if len(key.shape) > 1:
        k0, k1 = ops.expand_dims(k0, -1), ops.expand_dims(k1, -1)
    return k0, k1


def bits(key, counters):
    """Uniform int32 draws, one per counter: `mix(mix(counter ^ k0) + k1)`.

    For a fixed key this is a bijection of the counter, so draws of distinct
    counters never tie (random ranks of positions are a random permutation).

    Args:
        key: int32 of shape (2,), or (R, 2) for a batch of R keys.
        counters: int32 counters (e.g. flat positions). With a batched key they
            broadcast against shape (R, 1): pass (N,) or (R, N).

    Returns:
        int32 draws of the broadcast shape.

    Example:
    >>> import numpy as np
    >>> keys = np.stack([key_words(1), key_words(2)])
    >>> tuple(keras.ops.shape(bits(keys, np.arange(5, dtype="int32"))))
    (2, 5)
    """
    k0, k1 = _words(key, counters)
    return mix(_add(mix(ops.bitwise_xor(_int32(counters), k0)), k1))


def _label_words(label):
    """Two int32 words from a static label, computed on the host."""
    return key_words(_label_digest(_label_text(label)))


def _label_text(label):
    if isinstance(label, bool) or not isinstance(label, (str, int, np.integer)):
        raise TypeError(f"`label` must be a str or an int. Received: label={label!r}")
    return repr(label if isinstance(label, str) else int(label))


@functools.lru_cache(maxsize=1024)
def _label_digest(text):
    """The 64-bit digest of a label's text; labels repeat at every application."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def derive(key, label):
    """A sub-key for a static label, computed in traced ops.

    The label is hashed on the host into two int32 words; the key's words are
    then mixed with them (a Feistel-like sequence of bijections, so distinct
    keys keep distinct sub-keys under one label).

    Args:
        key: int32 of shape (..., 2).
        label: A str or int, fixed at trace time (e.g. "select", "mutate").

    Returns:
        int32 of the key's shape.

    Example:
    >>> import numpy as np
    >>> key = key_words(42)
    >>> a = keras.ops.convert_to_numpy(derive(key, "select"))
    >>> b = keras.ops.convert_to_numpy(derive(key, "mutate"))
    >>> a.shape, bool((a != b).any())
    ((2,), True)
    """
    l0, l1 = (np.int32(word) for word in _label_words(label))
    key = _int32(key)
    k0, k1 = key[..., 0], key[..., 1]
    a = mix(ops.bitwise_xor(k0, l0))
    b = mix(_add(ops.bitwise_xor(k1, l1), a))
    a = mix(_add(a, b))
    return ops.stack([a, b], axis=-1)


# `mix` on the host, of one word as a Python int or of words held in a
# uint64 NumPy array: values below 2**32, so products never overflow (no
# NumPy overflow warnings to silence) and are masked back.
_LOW_32 = 0xFFFFFFFF
_HOST_MULTIPLIERS = (int(_MULTIPLIER_1.view(np.uint32)), int(_MULTIPLIER_2.view(np.uint32)))


def _mix_on_host(x):
    """`mix` of a word in [0, 2**32) (a Python int), or of such words in a
    uint64 NumPy array."""
    x = x ^ x >> 16
    x = x * _HOST_MULTIPLIERS[0] & _LOW_32
    x = x ^ x >> 15
    x = x * _HOST_MULTIPLIERS[1] & _LOW_32
    return x ^ x >> 16


def derive_on_host(key, label):
    """`derive` computed in NumPy on the host: the same words, no traced ops.

    The engine derives each rule's keys before its compiled call, so the
    traced program holds none of these (a derivation is about forty integer
    ops; an application on a model with several groups of variables traced
    dozens of them).

    Args:
        key: int32 NumPy array of shape (..., 2).
        label: A str or int.

    Returns:
        An int32 NumPy array of the key's shape, equal to `derive(key, label)`.

    Example:
    >>> import numpy as np
    >>> key = key_words(42)
    >>> bool((derive_on_host(key, "select") == keras.ops.convert_to_numpy(derive(key, "select"))).all())
    True
    """
    digest = _label_digest(_label_text(label))
    l0, l1 = digest & 0xFFFFFFFF, digest >> 32
    key = np.asarray(key, dtype=np.int32)
    if key.ndim == 0 or key.shape[-1] != 2:
        raise ValueError(f"`key` must have shape (..., 2). Received: shape={key.shape}")
    if key.size == 2:
        # One key, the common case (one variable's): Python ints are ten times
        # quicker than NumPy's per-call overhead on two words.
        k0, k1 = key.reshape(2).view(np.uint32).tolist()
    else:
        words = key.reshape(-1, 2).view(np.uint32).astype(np.uint64)
        k0, k1 = words[:, 0], words[:, 1]
    a = _mix_on_host(k0 ^ l0)
    b = _mix_on_host((k1 ^ l1) + a & _LOW_32)
    a = _mix_on_host(a + b & _LOW_32)
    out = np.array([a, b], np.uint64).T.astype(np.uint32, order="C")
    return out.view(np.int32).reshape(key.shape)


def _has_float64():
    if keras.backend.backend() != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


def unit(key, counters, dtype="float32"):
    """Uniform floats in [0, 1), one per counter, exact in `dtype`.

    float32: the top 24 bits of a draw times 2**-24. float64: 53 bits, the
    top 27 of a draw and the top 26 of a draw of `derive(key, "low bits")`,
    times 2**-53 (its top 24 bits are those of the float32 draw).

    Args:
        key: int32 of shape (2,) or (R, 2), as for `bits`.
        counters: int32 counters, as for `bits`.
        dtype: "float32" or "float64" (float64 only where the backend has it:
            not JAX without `JAX_ENABLE_X64`).

    Returns:
        A tensor of `dtype` in [0, 1).

    Raises:
        ValueError: For another dtype, or float64 where the backend lacks it.

    Example:
    >>> import numpy as np
    >>> u = keras.ops.convert_to_numpy(unit(key_words(3), np.arange(1000, dtype="int32")))
    >>> str(u.dtype), bool(0.0 <= u.min() and u.max() < 1.0)
    ('float32', True)
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == "float32":
        high = _shift_right(bits(key, counters), 8)
        return ops.multiply(ops.cast(high, "float32"), np.float32(2.0**-24))
    if dtype != "float64":
        raise ValueError(f"`dtype` must be 'float32' or 'float64'. Received: dtype={dtype!r}")
    if not _has_float64():
        raise ValueError(
            "`dtype` 'float64' needs a backend with float64 (on JAX, set JAX_ENABLE_X64=1). "
            f"Received: dtype={dtype!r}"
        )
    high = ops.cast(_shift_right(bits(key, counters), 5), "float64")
    low = ops.cast(_shift_right(bits(derive(key, "low bits"), counters), 6), "float64")
    # Both products and the sum are exact: the total is below 2**53.
    return ops.multiply(_add(ops.multiply(high, np.float64(2.0**26)), low), np.float64(2.0**-53))


# Significand pieces for exact products (see `uniform`): float32 values in
# pieces of at most 12 bits, float64 bounds in 2 pieces of at most 27 bits and
# float64 draws in 3 pieces of at most 18 bits.
_PIECES = {
    "float32": {"bound": (12,), "draw": (12,), "int": "int32", "mantissa": 23},
    "float64": {"bound": (26,), "draw": (18, 18), "int": "int64", "mantissa": 52},
}


def _split(x, dtype, widths):
    """`x` as a sum of pieces: each of the first ones keeps the top `width` significant bits
    of what is left (by masking the bit pattern), the last one is the exact remainder."""
    spec = _PIECES[dtype]
    kind = np.int32 if spec["int"] == "int32" else np.int64
    pieces = []
    for width in widths:
        mask = kind(-(1 << (spec["mantissa"] - width + 1)))
        head = ops.view(ops.bitwise_and(ops.view(x, spec["int"]), mask), dtype)
        pieces.append(head)
        x = ops.subtract(x, head)  # exact: `head` is `x` with low bits cleared
    return pieces + [x]


def uniform(key, counters, low, high, dtype="float32"):
    """Uniform floats in [low, high] (rounding may reach `high`): `low*(1-u) + high*u`.

    The convex combination cannot overflow where `low + (high - low) * u`
    would for far-apart bounds. It is evaluated so that compilers cannot
    change its bits: XLA contracts a product and a sum into one fused
    multiply-add (TensorFlow's XLA does on CPUs; GPUs do), which rounds once
    where NumPy rounds twice. So every product here is exact: the bounds, `u`
    and `1 - u` are split into pieces of few significant bits (bit masks and
    exact subtractions), their pairwise products need no rounding, and the sum
    `sum over (i, j) of (low_i * (1-u)_j + high_i * u_j)` is taken in a fixed
    order (bound pieces outer, draw pieces inner). The result is within an ulp
    or two of `low*(1-u) + high*u` and the same bits on every backend, compiled
    or not, for finite bounds that are zero or at least 2**48 times float32's
    smallest normal (about 3e-24; in float64, 2**106 times float64's, about
    2e-276): nearer, a product of the smallest pieces is subnormal, and XLA
    on the CPU flushes subnormals to zero.

    It is computed in float32 or float64; for float16 and bfloat16 in float32
    and rounded once at the end.

    Args:
        key: int32 of shape (2,) or (R, 2), as for `bits`.
        counters: int32 counters, as for `bits`.
        low, high: Finite Python floats or scalar (or broadcastable) tensors.
        dtype: A float dtype name.

    Returns:
        A tensor of `dtype`.

    Raises:
        ValueError: For a dtype that is not a float dtype.

    Example:
    >>> import numpy as np
    >>> x = keras.ops.convert_to_numpy(uniform(key_words(3), np.arange(100, dtype="int32"), -2.0, 2.0))
    >>> bool(-2.0 <= x.min() and x.max() <= 2.0)
    True
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise ValueError(f"`dtype` must be a float dtype. Received: dtype={dtype!r}")
    work = "float64" if dtype == "float64" else "float32"
    u = unit(key, counters, work)
    rest = ops.subtract(np.array(1.0, work), u)  # exact: u is a multiple of 2**-24 (2**-53)
    widths = _PIECES[work]
    low, high = arrays.number(low, work), arrays.number(high, work)
    lows = _split(low, work, widths["bound"])
    highs = _split(high, work, widths["bound"])
    # Negated bounds split into the negated pieces (masks keep the sign).
    negative_lows = _split(ops.negative(low), work, widths["bound"])
    negative_highs = _split(ops.negative(high), work, widths["bound"])
    rests = _split(rest, work, widths["draw"])
    draws = _split(u, work, widths["draw"])
    # Only subtractions of products, never additions or negations of them: Grappler
    # (tf.function) turns `a - (-b)` into `a + b` and then a chain of additions into
    # one AddN, which sums in another order. `a - (-b)` is `a + b` bit for bit.
    value = None
    for i in range(len(lows)):
        for rest_piece, draw_piece in zip(rests, draws):
            if value is None:  # (low * rest) - (-high * draw)
                value = ops.subtract(
                    ops.multiply(lows[i], rest_piece), ops.multiply(negative_highs[i], draw_piece)
                )
            else:  # value - ((-low * rest) - (high * draw))
                value = ops.subtract(
                    value,
                    ops.subtract(
                        ops.multiply(negative_lows[i], rest_piece),
                        ops.multiply(highs[i], draw_piece),
                    ),
                )
    return value if work == dtype else ops.cast(value, dtype)


def keys_of(seeds_):
    """One key per integer seed, as an int32 tensor (len(seeds_), 2), made on the host.

    The key of seed `s` is `key_words(seeds.key(s))`: a selector called on one
    tensor with seed `s` draws what the engine draws for a variable whose
    seed is `s`.

    Example:
    >>> tuple(keys_of([0, 1, 2]).shape)
    (3, 2)
    """
    return ops.convert_to_tensor(words_of(seeds_))


def words_of(seeds_):
    """`keys_of` as an int32 NumPy array, without making a tensor.

    Example:
    >>> words_of([0, 1]).shape
    (2, 2)
    """
    from kerastroke.core import seeds

    # Each 64-bit key as its low and high words: little-endian uint64 viewed as int32 pairs.
    keys = np.array([seeds.key(seed) for seed in seeds_], dtype="<u8")
    return keys.view("<i4").astype(np.int32).reshape(-1, 2)
