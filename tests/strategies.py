"""Hypothesis strategies and helpers shared by the property tests of the pieces.

Weights come in every float dtype the pieces support, as NumPy arrays or as
backend tensors, in small shapes. Comparisons are made on NumPy copies, bit
for bit where a property is about exact values.
"""

import math

import keras
import ml_dtypes
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def examples(factor):
    """Settings with `factor` times the loaded profile's examples.

    Cheap properties run more examples and slow ones fewer, while
    `HYPOTHESIS_PROFILE=thorough` still deepens every one of them.
    """
    return settings(max_examples=max(1, round(settings().max_examples * factor)))


# Hypothesis has no bfloat16 elements: draw float32 values and round them, which
# still yields bfloat16 subnormals, signed zeros, infinities and NaN.
_ELEMENT_SOURCE = {
    "float16": "float16",
    "bfloat16": "float32",
    "float32": "float32",
    "float64": "float64",
}

_UNSIGNED = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def numpy_dtype(name):
    """The NumPy dtype for a dtype name, bfloat16 through ml_dtypes."""
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def finfo(name):
    """Float limits for a dtype name; NumPy's finfo does not know bfloat16."""
    return ml_dtypes.finfo(numpy_dtype(name))


def bits(array):
    """The bit patterns of a float array, so NaN payloads and -0.0 compare exactly."""
    array = np.asarray(array)
    return array.view(_UNSIGNED[array.dtype.itemsize])


def to_numpy(x):
    """A NumPy copy of a NumPy array or backend tensor, with the same bits.

    Flattened first: TensorFlow cannot convert a 0-d bfloat16 tensor to
    NumPy. bfloat16 travels as int16: Keras hands a PyTorch bfloat16 tensor
    to NumPy through float32, which rewrites NaN payloads.
    """
    if isinstance(x, np.ndarray):
        return x.copy()
    shape = tuple(keras.ops.shape(x))
    flat = keras.ops.reshape(x, (-1,))
    if keras.backend.standardize_dtype(flat.dtype) == "bfloat16":
        ints = np.array(keras.ops.convert_to_numpy(keras.ops.view(flat, "int16")))
        return ints.view(ml_dtypes.bfloat16).reshape(shape)
    return np.array(keras.ops.convert_to_numpy(flat)).reshape(shape)


def shapes(min_dims=1, max_dims=4, min_side=1, max_side=8):
    """Small array shapes: up to 4 dimensions of up to 8 entries."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def float_elements(dtype, allow_nan=True, allow_infinity=True, min_value=None, max_value=None):
    """Elements of `dtype` drawn at the dtype's width (before rounding to bfloat16)."""
    source = np.dtype(_ELEMENT_SOURCE[dtype])
    return st.floats(
        min_value=min_value,
        max_value=max_value,
        allow_nan=allow_nan,
        allow_infinity=allow_infinity,
        width=8 * source.itemsize,
    )


@st.composite
def weight_arrays(
    draw,
    dtypes=FLOAT_DTYPES,
    shape=None,
    allow_nan=True,
    allow_infinity=True,
    min_value=None,
    max_value=None,
    min_dims=1,
    min_side=1,
    max_side=8,
):
    """NumPy weight arrays: small shapes, every float dtype, special values allowed.

    Args:
        dtypes: Dtype names to choose from.
        shape: A fixed shape, or None for `array_shapes(max_dims=4, max_side=8)`.
        allow_nan, allow_infinity, min_value, max_value: Passed to the elements.
        min_dims, min_side, max_side: Passed to the shapes.
    """
    dtype = draw(st.sampled_from(dtypes))
    if shape is None:
        shape = draw(shapes(min_dims=min_dims, min_side=min_side, max_side=max_side))
    source = np.dtype(_ELEMENT_SOURCE[dtype])
    elements = float_elements(
        dtype,
        allow_nan=allow_nan,
        allow_infinity=allow_infinity,
        min_value=min_value,
        max_value=max_value,
    )
    array = draw(hnp.arrays(source, shape, elements=elements))
    return array.astype(numpy_dtype(dtype))


def masks(shape):
    """Boolean masks of a given shape."""
    return hnp.arrays(np.bool_, shape, elements=st.booleans())


# Python ints of any size, negative included: the pieces accept any integer seed.
seeds = st.integers(min_value=-(2**70), max_value=2**70)

amounts = st.floats(min_value=0.0, max_value=1.0)

# Whether a test passes the weights as a backend tensor instead of a NumPy array.
on_backend = st.booleans()


def as_input(array, backend):
    """`array` itself, or a backend tensor with the same bits.

    bfloat16 travels as int16: Keras hands a NumPy bfloat16 array to PyTorch
    through float32, and PyTorch's float32 -> bfloat16 conversion turns every
    NaN into 0xffff, so the input would differ from `array` before any piece
    ran.
    """
    if not backend:
        return array
    if array.dtype == ml_dtypes.bfloat16:
        ints = keras.ops.convert_to_tensor(np.array(array, order="C").view(np.int16))
        return keras.ops.view(ints, "bfloat16")
    return keras.ops.convert_to_tensor(array)


def check_kind(result, given):
    """NumPy in gives NumPy out; a backend tensor in gives a backend tensor out."""
    if isinstance(given, np.ndarray):
        assert isinstance(result, np.ndarray), type(result)
    else:
        assert keras.ops.is_tensor(result) and not isinstance(result, np.ndarray), type(result)


def finite_values(array):
    """The finite entries of `array` as Python floats (for bounds near the weights)."""
    wide = np.asarray(array).astype(np.float64).ravel()
    return [float(v) for v in wide[np.isfinite(wide)]]


@st.composite
def bounds_near(draw, array, allow_infinity=True):
    """An ordered `(low, high)` pair, often equal to entries of `array` or just beside them.

    Bounds at or one float64 step off the weights' own values are where an
    inexact comparison or a rounded bound would show.
    """
    values = finite_values(array)
    free = st.floats(allow_nan=False, allow_infinity=allow_infinity)
    if values:
        near = st.sampled_from(values).flatmap(
            lambda v: st.sampled_from(
                [v, math.nextafter(v, math.inf), math.nextafter(v, -math.inf)]
            )
        )
        if not allow_infinity:
            near = near.filter(math.isfinite)
        bound = st.one_of(near, free)
    else:
        bound = free
    low, high = sorted([draw(bound), draw(bound)])
    return low, high
