"""Mutators: `mutate(weights, mask, seed) -> new weights`, *what* entries become.

A mutator returns an array of the weights' shape and dtype in which every
entry outside `mask` keeps its exact bits. Random mutators draw one value per
selected entry, so their cost grows with the number of selected entries
rather than with the size of the tensor.
"""

import math

import attrs
import numpy as np
from keras import ops

from kerastroke.core import arrays, checks, draws, seeds
from kerastroke.core.serialization import register


@register("mutators.uniform")
@attrs.frozen
class Uniform:
    """New values drawn from U[low, high), each representable in the weights' dtype.

    In a low-precision dtype a draw that rounds to `high` or beyond, or below
    `low`, is clamped to the nearest value of that dtype inside [low, high),
    so the bounds are never silently widened. `low == high` sets every
    selected entry to that value.

    An entry's new value depends only on the seed and its flat position
    (`kerastroke.core.draws`): the same bits on every backend, whichever
    other entries are selected.

    Args:
        low: Finite lower bound, inclusive.
        high: Finite upper bound, exclusive; `high >= low`.

    Example:
    >>> import numpy as np
    >>> w = np.zeros(4, "float32")
    >>> new = uniform(-0.05, 0.05)(w, np.array([True, False, True, False]), seed=1)
    >>> bool(np.all(np.abs(new) < 0.05)), new[[1, 3]].tolist()
    (True, [0.0, 0.0])
    """

    keeps_unselected = True  # entries outside the mask keep their bits (tested)

    low: float
    high: float

    def __attrs_post_init__(self):
        low, high = checks.ordered("low", self.low, "high", self.high)
        checks.finite("low", low)
        checks.finite("high", high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def bounds(self, dtype):
        """The smallest and largest values of `dtype` a draw may take."""
        lo = arrays.at_least(self.low, dtype)
        hi = arrays.at_most(self.high, dtype, strict=self.low < self.high)
        if not lo <= hi:
            closing = ")" if self.low < self.high else "]"
            raise ValueError(
                f"No {dtype} value lies in [low, high{closing} = "
                f"[{self.low!r}, {self.high!r}{closing}: widen the bounds or use a wider dtype."
            )
        return lo, hi

    def __call__(self, weights, mask, seed):
        w, m = arrays.weights_and_mask(weights, mask)
        dtype = arrays.dtype_name(w)
        # Checked before anything is selected, so bounds that fit no value of
        # the dtype fail on the first call rather than on the first selection.
        self.bounds(dtype)
        flat_positions = np.flatnonzero(ops.convert_to_numpy(m))
        if not flat_positions.size:
            return arrays.like(w, weights)
        values = self.values_at(dtype, flat_positions, seed)
        return arrays.like(arrays.put_at(w, arrays.tensor(flat_positions), arrays.tensor(values)), weights)

    def values_at(self, dtype, flat_positions, seed):
        """The new values of the entries at `flat_positions`, as a NumPy array.

        The value of an entry depends only on `seed` and its flat position
        (`kerastroke.core.draws`), so `mutate(w, mask, seed)` puts exactly
        these values at those positions and a writer may compute only them.

        Args:
            dtype: The weights' dtype name.
            flat_positions: NumPy integer array of flat (row-major) indices.
            seed: Python int.
        """
        lo, hi = self.bounds(dtype)
        low, high = self.draw_bounds(dtype)
        values = draws.uniform(seeds.key(seed, "uniform"), flat_positions, low, high)
        with np.errstate(over="ignore"):  # a half-precision overflow is clamped below
            values = values.astype(arrays.numpy_dtype(dtype))
        # Compared, not np.maximum: that may return a bound of -0.0 for a draw of +0.0.
        values = np.where(values < lo, lo, values)
        return np.where(values > hi, hi, values)

    def draw_bounds(self, dtype):
        """The bounds as NumPy scalars of the dtype draws are made in.

        float64 weights draw in float64, every other dtype in float32 (and
        rounds once); bounds beyond float32's range are brought inside it.
        """
        draw_dtype = "float64" if dtype == "float64" else "float32"
        return arrays.at_least(self.low, draw_dtype), arrays.at_most(self.high, draw_dtype)


@register("mutators.constant")
@attrs.frozen
class Constant:
    """Selected entries become `value`.

    Args:
        value: Finite float (0.0 included), stored exactly as the weights'
            dtype rounds it; a value that overflows that dtype is an error.

    Example:
    >>> import numpy as np
    >>> constant(0.5)(np.zeros(3, "float32"), np.array([True, False, True]), 0).tolist()
    [0.5, 0.0, 0.5]
    """

    keeps_unselected = True  # entries outside the mask keep their bits (tested)
    fills_one_value = True  # a writer may merge it with one dense `where`

    value: float = attrs.field(converter=lambda v: checks.finite("value", v))

    def rounded(self, dtype):
        with np.errstate(over="ignore"):  # overflow is reported below, as an error
            rounded = arrays.numpy_dtype(dtype).type(self.value)
        if not math.isfinite(float(rounded)):
            raise ValueError(
                f"`value`={self.value!r} is not representable in {dtype}: it overflows to {rounded}."
            )
        return rounded

    def __call__(self, weights, mask, seed):
        w, m = arrays.weights_and_mask(weights, mask)
        rounded = self.rounded(arrays.dtype_name(w))
        filled = ops.full(arrays.shape(w), arrays.scalar(rounded, arrays.dtype_name(w)), dtype=arrays.dtype_name(w))
        return arrays.like(arrays.merge(m, filled, w), weights)

    def values_at(self, dtype, flat_positions, seed):
        """The value once per position, as a NumPy array, for writers that update by index."""
        return np.full(len(flat_positions), self.rounded(dtype), dtype=arrays.numpy_dtype(dtype))


def zero():
    """Selected entries become 0.0: `constant(0.0)`.

    Example:
    >>> import numpy as np
    >>> zero()(np.ones(3, "float32"), np.array([False, True, False]), 0).tolist()
    [1.0, 0.0, 1.0]
    """
    return Constant(0.0)


uniform = Uniform
constant = Constant

# Re-initialising mutators (distributions, Keras initializers) live in reinit.py.
from kerastroke.strategies.reinit import (  # noqa: E402
    DropAndGrowValues,
    Initializer,
    Normal,
    ShrinkPerturbValues,
    drop_and_grow,
    initializer,
    normal,
    shrink_perturb,
)
