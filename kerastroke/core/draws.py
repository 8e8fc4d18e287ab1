"""Distributions drawn from counter-based bits, in `keras.ops`, so they trace.

Every draw is a pure function of a key and an entry's flat position
(`kerastroke.core.hashing`): a batch of R variables of one shape draws
(R, N) values from keys of shape (R, 2) and positions 0..N-1.

- Uniform draws are exact and the same bits on every backend.
- Normal draws go through the inverse of the normal CDF (`erfinv`) from one
  uniform per entry; `erfinv` is each backend's own, so they agree across
  backends to a rounding.
- `of_initializer` draws what a Keras initializer would (same distribution,
  not the same numbers) for the initializers whose distribution is known.
"""

import json
import math

import keras
import numpy as np
from keras import ops

from kerastroke.core import arrays, hashing

# erf(2 / sqrt(2)): the probability mass of N(0, 1) within 2 standard deviations.
_WITHIN_TWO = 0.9544997361036416
# The standard deviation of N(0, 1) truncated to [-2, 2] (Keras's VarianceScaling).
_TRUNCATED_STDDEV = 0.87962566103423978


def _centred(keys, counters, dtype):
    """Uniform draws in the open interval (-1, 1), symmetric around 0, exact."""
    u = hashing.unit(keys, counters, dtype)  # multiples of 2**-b in [0, 1)
    step = 2.0**-24 if dtype != "float64" else 2.0**-53
    return ops.add(
        ops.multiply(ops.subtract(u, arrays.number(0.5, dtype)), arrays.number(2.0, dtype)), arrays.number(step, dtype)
    )


def standard_normal(keys, counters, dtype="float32", truncated=False):
    """Draws of N(0, 1) (or N(0, 1) truncated to [-2, 2]), one per counter.

    Example:
    >>> import numpy as np
    >>> z = ops.convert_to_numpy(standard_normal(hashing.keys_of([3]), np.arange(4096, dtype="int32")))
    >>> bool(abs(float(np.mean(z))) < 0.1), bool(0.9 < float(np.std(z)) < 1.1)
    (True, True)
    """
    p = _centred(keys, counters, dtype)
    if truncated:
        p = ops.multiply(p, arrays.number(_WITHIN_TWO, dtype))
    return ops.multiply(ops.erfinv(p), arrays.number(math.sqrt(2.0), dtype))


def _fans(shape):
    """Keras's fan-in and fan-out of a variable of `shape`."""
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(low, high):
    def draw(shape, dtype, keys, rows):
        wide = "float64" if dtype == "float64" else "float32"
        counters = ops.arange(math.prod(shape), dtype="int32")
        values = hashing.uniform(keys, counters, low, high, wide)
        return ops.reshape(ops.cast(values, dtype), (rows, *shape))

    return draw


def _normal(mean, stddev, truncated):
    def draw(shape, dtype, keys, rows):
        wide = "float64" if dtype == "float64" else "float32"
        counters = ops.arange(math.prod(shape), dtype="int32")
        z = standard_normal(keys, counters, wide, truncated=truncated)
        values = ops.add(ops.multiply(z, arrays.number(stddev, wide)), arrays.number(mean, wide))
        return ops.reshape(ops.cast(values, dtype), (rows, *shape))

    return draw


def _filled(value):
    def draw(shape, dtype, keys, rows):
        return ops.full((rows, *shape), value, dtype=dtype)

    return draw


def describe(identifier, shape):
    """The distribution `of_initializer` draws for a variable of `shape`, as data.

    Returns:
        `("uniform", low, high)`, `("normal", mean, stddev, truncated)` or
        `("filled", value)`, with Python floats; None for an initializer
        whose distribution is not known here. A host implementation (the CPU
        path's `mutate_host`) draws from this the same bits as the traced draw.

    Example:
    >>> describe("zeros", (3, 4))
    ('filled', 0.0)
    >>> kind, low, high = describe("glorot_uniform", (3, 5))
    >>> kind, round(high, 6), low == -high
    ('uniform', 0.866025, True)
    """
    # Deserialising an initializer costs about 25 us, and the CPU path asks
    # for each variable at each application: names and JSON configs are
    # remembered by their text (the answer is plain data).
    try:
        key = (json.dumps(identifier, sort_keys=True), tuple(int(n) for n in shape))
    except TypeError:
        key = None
    if key is not None and key in _DESCRIBED:
        return _DESCRIBED[key]
    described = _describe(keras.initializers.get(identifier), shape)
    if key is not None:
        if len(_DESCRIBED) >= _DESCRIBED_AT_MOST:
            _DESCRIBED.clear()
        _DESCRIBED[key] = described
    return described


_DESCRIBED = {}
_DESCRIBED_AT_MOST = 4096


def _describe(init, shape):
    kind = type(init)
    # Exact types: a subclass may draw differently.
    if kind in _VARIANCE_SCALING:
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[init.mode]
        variance = float(init.scale) / max(1.0, fan)
        if init.distribution == "truncated_normal":
            return ("normal", 0.0, math.sqrt(variance) / _TRUNCATED_STDDEV, True)
        if init.distribution == "untruncated_normal":
            return ("normal", 0.0, math.sqrt(variance), False)
        limit = math.sqrt(3.0 * variance)
        return ("uniform", -limit, limit)
    if kind is keras.initializers.RandomUniform:
        return ("uniform", float(init.minval), float(init.maxval))
    if kind is keras.initializers.RandomNormal:
        return ("normal", float(init.mean), float(init.stddev), False)
    if kind is keras.initializers.TruncatedNormal:
        return ("normal", float(init.mean), float(init.stddev), True)
    if kind is keras.initializers.Zeros:
        return ("filled", 0.0)
    if kind is keras.initializers.Ones:
        return ("filled", 1.0)
    if kind is keras.initializers.Constant and np.ndim(init.value) == 0:
        return ("filled", float(init.value))
    return None


def of_initializer(identifier):
    """A traced draw with the distribution of a Keras initializer, or None.

    Args:
        identifier: A Keras initializer name or config.

    Returns:
        `draw(shape, dtype, keys, rows) -> tensor (rows, *shape)`, one
        variable of `shape` per key; None for an initializer whose
        distribution is not known here (`Orthogonal`, `Identity`, a user's).

    Example:
    >>> draw = of_initializer("glorot_uniform")
    >>> values = ops.convert_to_numpy(draw((4, 6), "float32", hashing.keys_of([1, 2]), rows=2))
    >>> values.shape, bool(abs(values).max() <= 1.0)
    ((2, 4, 6), True)
    """
    if describe(identifier, (1, 1)) is None:
        return None

    def draw(shape, dtype, keys, rows):
        kind, *parameters = describe(identifier, shape)
        if kind == "uniform":
            return _uniform(*parameters)(shape, dtype, keys, rows)
        if kind == "normal":
            return _normal(*parameters)(shape, dtype, keys, rows)
        return _filled(*parameters)(shape, dtype, keys, rows)

    return draw


_VARIANCE_SCALING = (
    keras.initializers.VarianceScaling,
    keras.initializers.GlorotUniform,
    keras.initializers.GlorotNormal,
    keras.initializers.HeUniform,
    keras.initializers.HeNormal,
    keras.initializers.LecunUniform,
    keras.initializers.LecunNormal,
)
