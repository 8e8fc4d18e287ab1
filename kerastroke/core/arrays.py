"""Tensor helpers on the Keras backend, shared by the pieces and the engine.

Everything here is pure: tensors in, new tensors out. NumPy arrays are
accepted anywhere a tensor is. Floats are compared, merged and clamped on
their bit patterns where a backend's float kernels would not be exact.
"""

import functools
import math

import keras
import ml_dtypes
import numpy as np
from keras import ops



def tensor(x, dtype=None):
    """`x` as a backend tensor (NumPy arrays and Python scalars included).

    Raises:
        TypeError: for float64 on JAX without 64-bit mode, which JAX would
            silently turn into float32 (and so compare and draw wrongly).
    """
    if keras.backend.backend() == "jax":
        wanted = dtype if dtype is not None else getattr(x, "dtype", None)
        if wanted is not None and keras.backend.standardize_dtype(wanted) == "float64":
            import jax

            if not jax.config.jax_enable_x64:
                raise TypeError(
                    "float64 weights on the JAX backend need 64-bit mode: set "
                    "JAX_ENABLE_X64=1 (or jax.config.update('jax_enable_x64', True))."
                )
    if (
        keras.backend.backend() == "torch"
        and isinstance(x, np.ndarray)
        and x.dtype == ml_dtypes.bfloat16
        and dtype in (None, "bfloat16")
    ):
        return _torch_bfloat16(x)
    return ops.convert_to_tensor(x, dtype=dtype)


def _torch_bfloat16(x):
    """A torch bfloat16 tensor with the bits of the NumPy array `x`.

    Keras converts through float32, and PyTorch's float32 -> bfloat16
    conversion turns every NaN into one pattern (0xffff in PyTorch 2.13);
    the bits travel as int16 instead.
    """
    import torch

    from keras.src.backend.torch.core import get_device

    bits = torch.from_numpy(np.array(x, order="C").view(np.int16))
    return bits.view(torch.bfloat16).to(get_device())


def to_numpy(x):
    """`x` as a NumPy array with the same bits (a view of CPU memory where the backend allows).

    Keras hands a torch bfloat16 tensor to NumPy through float32, which
    changes the bits of NaNs; here the bits travel as int16. TensorFlow
    cannot hand over a 0-d bfloat16 tensor; a flat one it can.
    """
    if not isinstance(x, np.ndarray) and shape(x) == ():
        return to_numpy(ops.reshape(x, (1,))).reshape(())
    if keras.backend.backend() == "torch" and not isinstance(x, np.ndarray):
        import torch

        if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16:
            return ops.convert_to_numpy(x.view(torch.int16)).view(ml_dtypes.bfloat16)
    return ops.convert_to_numpy(x)


def weights_and_mask(weights, mask):
    """A mutator's inputs as tensors; a mask of another shape is a ValueError."""
    w = tensor(weights)
    m = tensor(mask, "bool")
    if shape(m) != shape(w):
        raise ValueError(
            f"`mask` must have the weights' shape {shape(w)}. Received: mask.shape={shape(m)}"
        )
    return w, m


def scalar(value, dtype):
    """A 0-d tensor holding `value` in `dtype`, with exactly the bits NumPy gives it.

    TensorFlow caches scalar constants by value, so -0.0 converted after 0.0
    would come back as 0.0; a one-element array is not cached.
    """
    return ops.reshape(tensor(np.asarray([value], dtype=numpy_dtype(dtype)), dtype), ())


def number(value, dtype):
    """`value` in `dtype`: a Python or NumPy number rounded once by NumPy, a tensor cast.

    `ops.cast` of a Python float converts it to float32 first on TensorFlow
    (0.1 cast to float64 is 0.10000000149011612 there, and a float32
    subnormal becomes 0.0), where JAX and PyTorch keep it exact.

    Example:
    >>> float(keras.ops.convert_to_numpy(number(0.1, "float64")))
    0.1
    """
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return scalar(value, dtype)
    return ops.cast(value, dtype)


def shape(x):
    """The static shape of a Keras variable, tensor or array, as a tuple of ints.

    Read from the shape tuple a Keras variable keeps, else from `x.shape`
    (never `ops.shape`: in TensorFlow's eager mode it runs an op that waits
    for the pending work on `x`). On TensorFlow `variable.shape` builds a
    `tf.TensorShape`, about 6 us, which an application did for hundreds of
    variables.
    """
    dims = x._shape if isinstance(x, keras.Variable) else x.shape
    return tuple(int(dim) for dim in dims)


def size(x):
    """The number of entries of a Keras variable, tensor or array, as an int."""
    return math.prod(shape(x))


def dtype_name(x):
    """The standard Keras name of `x`'s dtype, e.g. "float32" or "bfloat16"."""
    return keras.backend.standardize_dtype(x.dtype)


def numpy_dtype(name):
    """The NumPy dtype for a Keras dtype name (bfloat16 through ml_dtypes)."""
    if name == "bfloat16":

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def like(result, original):
    """Returns NumPy for NumPy input, the backend tensor otherwise."""
    if isinstance(original, np.ndarray):
        return to_numpy(result)
    return result


def count(mask):
    """The number of True entries of a boolean tensor, as a Python int.

    Counted by NumPy: the count is needed on the host anyway (it sizes the
    draws), reading a CPU tensor into NumPy shares its buffer, and
    `np.count_nonzero` is many times faster than the backends' casting
    reductions (measured 1 ms against 120 ms for 16.8M entries in
    TensorFlow on 2 cores).
    """
    return int(np.count_nonzero(ops.convert_to_numpy(mask)))


def _next_toward(x, upward):
    """The neighbour of the NumPy scalar `x` in its own dtype, up or down."""
    target = np.asarray(np.inf if upward else -np.inf, dtype=x.dtype)
    return np.nextafter(x, target)


def _rounded(bound, dtype):
    # A bound beyond the dtype's range rounds to +-inf; the callers step back from it.
    with np.errstate(over="ignore"):
        return np.asarray(bound, dtype=numpy_dtype(dtype))


def at_least(bound, dtype):
    """The smallest value of `dtype` that is >= `bound`, as a NumPy scalar."""
    value = _rounded(bound, dtype)
    if float(value) < bound:
        value = _next_toward(value, upward=True)
    return value


def at_most(bound, dtype, strict=False):
    """The largest value of `dtype` that is <= `bound` (< `bound` if strict)."""
    value = _rounded(bound, dtype)
    if float(value) > bound or (strict and float(value) == bound):
        value = _next_toward(value, upward=False)
    return value


# Float comparisons and arithmetic on device may treat subnormals as zero
# (TensorFlow's CPU kernels set flush-to-zero), which would select or produce
# values outside a range. Integer keys of the bit patterns order floats
# exactly, whatever the floating-point mode.
_BITS = {"float16": "int16", "bfloat16": "int16", "float32": "int32", "float64": "int64"}


def flushes_subnormals():
    """Whether the backend's float32 arithmetic flushes subnormals, as
    `(inputs, results)`: operands read as zeros, results written as zeros.

    TensorFlow's and XLA's CPU kernels flush both, always: asked once per
    backend. PyTorch flushes neither unless `torch.set_flush_denormal(True)`
    was called, which can happen at any time: asked on every call (about
    10 us).

    Example:
    >>> inputs, results = flushes_subnormals()
    >>> isinstance(inputs, bool) and isinstance(results, bool)
    True
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        # 2**-140 (subnormal) times 1, and 2**-126 (the smallest normal) times 0.5.
        products = torch.tensor([2.0**-140, 2.0**-126]) * torch.tensor([1.0, 0.5])
        return bool(products[0] == 0), bool(products[1] == 0)
    return _flushes_on(backend)


@functools.cache
def _flushes_on(backend):
    operands = tensor(np.array([2.0**-140, 2.0**-126], np.float32))
    products = to_numpy(ops.multiply(operands, tensor(np.array([1.0, 0.5], np.float32))))
    return bool(products[0] == 0), bool(products[1] == 0)


def bits_dtype(dtype):
    """The signed integer dtype as wide as the float `dtype`, e.g. "int32" for "float32"."""
    return _BITS[keras.backend.standardize_dtype(dtype)]


def merge(mask, new, old):
    """`new` where `mask` is True, else `old`, every entry with its bits unchanged.

    Selected on the integer bit patterns: XLA on the CPU selects 16-bit floats
    through float32, which quiets a signalling NaN.
    """
    int_dtype = _BITS[dtype_name(old)]
    merged = ops.where(mask, ops.view(new, int_dtype), ops.view(old, int_dtype))
    return ops.view(merged, dtype_name(old))


def is_zero(x):
    """Boolean tensor of the entries of the float tensor `x` that are exactly +0.0 or -0.0.

    Read from the bit patterns: TensorFlow's CPU kernels compare a subnormal
    as equal to zero.
    """
    int_dtype = _BITS[dtype_name(x)]
    magnitude = ops.bitwise_and(ops.view(x, int_dtype), tensor(np.iinfo(int_dtype).max, int_dtype))
    return ops.equal(magnitude, tensor(0, int_dtype))


def _key_of_bits(bits, width):
    # Sign-magnitude bits to a two's-complement key: -0.0 and 0.0 both map to 0.
    magnitude = bits & (2 ** (width - 1) - 1)
    return -magnitude if bits < 0 else magnitude


def scalar_key(value):
    """The order key of a NumPy float scalar, as a Python int: -|x| for
    negative values, |x| otherwise, in units of the dtype's bit pattern
    (-0.0 and 0.0 both 0)."""
    value = np.asarray(value)
    int_dtype = np.dtype(_BITS[value.dtype.name])  # NumPy's name, without Keras's lookup
    bits = int(value.reshape(1).view(int_dtype)[0])
    return _key_of_bits(bits, 8 * int_dtype.itemsize)


def order_keys(x):
    """Order keys and magnitudes (bits without the sign) of a float tensor."""
    int_dtype = _BITS[dtype_name(x)]
    width = 8 * np.dtype(int_dtype).itemsize
    bits = ops.view(x, int_dtype)
    magnitude = ops.bitwise_and(bits, tensor(2 ** (width - 1) - 1, int_dtype))
    negative = ops.less(bits, tensor(0, int_dtype))
    return ops.where(negative, ops.negative(magnitude), magnitude), magnitude


def _finite(magnitude, dtype):
    # Infinity has the largest finite magnitude's bits plus one; NaNs lie above it.
    inf = np.asarray(np.inf, dtype=numpy_dtype(dtype))
    return ops.less(magnitude, tensor(scalar_key(inf), _BITS[dtype]))


def in_range(weights, low, high):
    """Boolean tensor of `low <= w <= high`, exact in every float dtype.

    The bounds are moved to the nearest values of the weights' own dtype that
    keep the comparison exact, so no entry outside [low, high] is selected by
    rounding, and the comparison runs on the bit patterns, so subnormal
    weights are compared exactly too. NaN and infinite entries are never in
    range.
    """
    dtype = dtype_name(weights)
    lo, hi = at_least(low, dtype), at_most(high, dtype)
    if _flush_proof(lo) and _flush_proof(hi):
        # A subnormal weight and zero lie on the same side of a normal bound,
        # so flushing cannot change the answer: compare the floats directly.
        inside = ops.logical_and(
            ops.greater_equal(weights, tensor(lo, dtype)), ops.less_equal(weights, tensor(hi, dtype))
        )
        return ops.logical_and(inside, ops.isfinite(weights))
    int_dtype = _BITS[dtype]
    key, magnitude = order_keys(weights)
    lo = tensor(scalar_key(lo), int_dtype)
    hi = tensor(scalar_key(hi), int_dtype)
    inside = ops.logical_and(ops.greater_equal(key, lo), ops.less_equal(key, hi))
    return ops.logical_and(inside, _finite(magnitude, dtype))


def _flush_proof(bound):
    """True for a bound that is infinite or a normal number of its dtype."""
    value = float(bound)
    if not np.isfinite(value):
        return True
    return abs(value) >= float(ml_dtypes.finfo(bound.dtype).tiny)


def clips_floats(low, high):
    """True where `clamp(values, low, high)` clips the floats, False where it
    compares order keys (a bound that is zero or subnormal)."""
    return _flush_proof(low) and _flush_proof(high) and float(low) != 0.0 and float(high) != 0.0


def clamp(values, low, high):
    """`values` clipped to [low, high], compared exactly on the bit patterns.

    Args:
        values: Float tensor; infinities are clipped too (NaN is not expected).
        low: NumPy scalar of the values' dtype, the smallest value allowed.
        high: NumPy scalar of the values' dtype, the largest value allowed.

    Returns:
        A tensor of the same shape and dtype.
    """
    dtype = dtype_name(values)
    if clips_floats(low, high):
        # With normal, non-zero bounds a float clip is exact: an entry inside
        # them comes back bit for bit, one outside becomes the bound itself,
        # and a subnormal entry (flushed to zero or not) lies on the same side
        # of each bound as zero.
        return ops.clip(values, tensor(low, dtype), tensor(high, dtype))
    int_dtype = _BITS[dtype]
    width = 8 * np.dtype(int_dtype).itemsize
    key, _ = order_keys(values)
    key = ops.clip(key, tensor(scalar_key(low), int_dtype), tensor(scalar_key(high), int_dtype))
    sign = tensor(-(2 ** (width - 1)), int_dtype)
    bits = ops.where(
        ops.less(key, tensor(0, int_dtype)), ops.bitwise_or(ops.negative(key), sign), key
    )
    return ops.view(bits, dtype)
