"""Mutators: `mutate(weights, mask, seed) -> new weights`, *what* entries become.

A mutator returns an array of the weights' shape and dtype in which every
entry outside `mask` keeps its exact bits. Random mutators draw one value per
selected entry, so their cost grows with the number of selected entries
rather than with the size of the tensor.
"""

import math

import attrs
import keras
import ml_dtypes
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


# -- Re-initialising mutators: from a distribution or a Keras initializer.
# `initializer()` and `shrink_perturb()` without an explicit initializer draw
# from the initializer of the layer that owns the variable: PlasticityCallback
# fills it in through `with_default_initializer` before it applies them.

def _identifier(value):
    """Keeps initializers JSON-ready: a name, a config dict, or None."""
    if value is None or isinstance(value, (str, dict)):
        if isinstance(value, str):
            keras.initializers.get(value)  # Fails now, with Keras's message, if unknown.
        return value
    if isinstance(value, keras.initializers.Initializer):
        return keras.initializers.serialize(value)
    raise TypeError(
        "`initializer` must be None, a Keras initializer, its name or its config. "
        f"Received: initializer={value!r}"
    )


def draw_initializer(identifier, shape, dtype, seed):
    """A full tensor from a Keras initializer, drawn with the integer `seed`."""
    initializer = keras.initializers.get(identifier)
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
        initializer = type(initializer).from_config(config)
    return ops.cast(initializer(shape, dtype=dtype), dtype)


class _NeedsInitializer:
    """Shared by mutators whose draw may come from the owning layer's initializer."""

    def with_default_initializer(self, initializer):
        """This mutator, drawing from `initializer` unless one was given."""
        if self.initializer is not None:
            return self
        return attrs.evolve(self, initializer=_identifier(initializer))

    def _fresh(self, w, seed):
        if self.initializer is None:
            raise ValueError(
                f"{type(self).__name__} has no initializer: run it through a "
                "PlasticityCallback (which uses the layer's own), or pass one, "
                "e.g. initializer='glorot_uniform'."
            )
        dtype = arrays.dtype_name(w)
        return draw_initializer(self.initializer, arrays.shape(w), dtype, seed)


@register("mutators.normal")
@attrs.frozen
class Normal:
    """New values drawn from N(mean, stddev**2), one per selected entry.

    Args:
        stddev: Standard deviation (finite, >= 0).
        mean: Mean (finite).

    Example:
    >>> import numpy as np
    >>> new = normal(0.01)(np.zeros(3, "float32"), np.array([True, False, True]), 0)
    >>> bool(new[1] == 0.0), bool(new[0] != 0.0)
    (True, True)
    """

    keeps_unselected = True  # entries outside the mask keep their bits (tested)

    stddev: float = attrs.field(converter=lambda v: checks.non_negative("stddev", v))
    mean: float = attrs.field(default=0.0, converter=lambda v: checks.finite("mean", v))

    def __call__(self, weights, mask, seed):
        w, m = arrays.weights_and_mask(weights, mask)
        selected = arrays.count(m)
        if selected == 0:
            return arrays.like(w, weights)
        dtype = arrays.dtype_name(w)
        wide = "float64" if dtype == "float64" else "float32"
        draws = keras.random.normal((selected,), self.mean, self.stddev, dtype=wide, seed=seed)
        return arrays.like(arrays.put(w, m, ops.cast(draws, dtype)), weights)


@register("mutators.initializer")
@attrs.frozen
class Initializer(_NeedsInitializer):
    """Selected entries are redrawn from a Keras initializer.

    This is what "re-initialise" means to a Keras user: by default the draw
    comes from the initializer of the layer that owns the variable (its
    `kernel_initializer`, `recurrent_initializer`, ...), with the fan-in and
    fan-out of the whole variable.

    Args:
        initializer: None for the layer's own, or a Keras initializer, name or config.

    Example:
    >>> import numpy as np
    >>> new = initializer("ones")(np.zeros((2, 2), "float32"), np.eye(2, dtype=bool), 0)
    >>> new.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """

    keeps_unselected = True  # entries outside the mask keep their bits (tested)

    initializer: object = attrs.field(default=None, converter=_identifier)

    def __call__(self, weights, mask, seed):
        w, m = arrays.weights_and_mask(weights, mask)
        if arrays.count(m) == 0:
            return arrays.like(w, weights)
        return arrays.like(arrays.merge(m, self._fresh(w, seed), w), weights)


@register("mutators.shrink_perturb")
@attrs.frozen
class ShrinkPerturbValues(_NeedsInitializer):
    """`shrink * w + perturb * fresh`, with `fresh` a new draw of the initializer.

    Shrink-and-perturb (Ash and Adams 2020, "On Warm-Starting Neural Network
    Training"): shrinking keeps what was learned while restoring the
    gradient scale of a fresh network; the perturbation restores diversity.

    Args:
        shrink: Factor on the current weights, in [0, 1].
        perturb: Factor on the fresh draw (finite, >= 0).
        initializer: None for the layer's own, or a Keras initializer, name or config.

    Example:
    >>> import numpy as np
    >>> sp = shrink_perturb(0.5, 1.0, initializer="ones")
    >>> sp(np.full(2, 4.0, "float32"), np.array([True, False]), 0).tolist()
    [3.0, 4.0]
    """

    keeps_unselected = True  # entries outside the mask keep their bits (tested)

    shrink: float = attrs.field(converter=lambda v: checks.fraction("shrink", v))
    perturb: float = attrs.field(converter=lambda v: checks.non_negative("perturb", v))
    initializer: object = attrs.field(default=None, converter=_identifier)

    def __call__(self, weights, mask, seed):
        w, m = arrays.weights_and_mask(weights, mask)
        if arrays.count(m) == 0:
            return arrays.like(w, weights)
        dtype = arrays.dtype_name(w)
        new = ops.add(
            ops.multiply(ops.cast(self.shrink, dtype), w),
            ops.multiply(ops.cast(self.perturb, dtype), self._fresh(w, seed)),
        )
        return arrays.like(arrays.merge(m, new, w), weights)


@register("mutators.drop_and_grow")
@attrs.frozen
class DropAndGrowValues:
    """Pairs with `selectors.drop_and_grow`: zero the active, regrow the empty.

    Selected entries that are non-zero become 0.0; selected entries that are
    exactly zero get values from `grow` (by default `normal(0.01)`), a grown
    draw of exactly 0.0 is nudged to the smallest normal value of the dtype,
    so the number of non-zero entries is kept.

    Args:
        grow: Mutator giving the grown entries their values.

    Example:
    >>> import numpy as np
    >>> dg = drop_and_grow(grow=initializer("ones"))
    >>> dg(np.array([0.0, 0.2, 0.5], "float32"), np.array([True, True, False]), 0).tolist()
    [1.0, 0.0, 0.5]
    """

    keeps_unselected = True  # entries outside the mask keep their bits (tested)

    grow: object = attrs.field(factory=lambda: Normal(0.01))

    def __attrs_post_init__(self):
        checks.callable_("grow", self.grow)

    def with_default_initializer(self, initializer):
        bind = getattr(self.grow, "with_default_initializer", None)
        return self if bind is None else attrs.evolve(self, grow=bind(initializer))

    def __call__(self, weights, mask, seed):
        w, m = arrays.weights_and_mask(weights, mask)
        zero = ops.zeros_like(w)
        empty = arrays.is_zero(w)  # by bit pattern: a subnormal is not empty
        grow_mask = ops.logical_and(m, empty)
        grown = arrays.tensor(self.grow(w, grow_mask, seeds.derive(seed, "grow")))
        dtype = arrays.dtype_name(w)
        tiny = arrays.tensor(ml_dtypes.finfo(arrays.numpy_dtype(dtype)).tiny, dtype)
        grown = ops.where(arrays.is_zero(grown), tiny, grown)
        new = arrays.merge(grow_mask, grown, arrays.merge(m, zero, w))
        return arrays.like(new, weights)


normal = Normal
initializer = Initializer
shrink_perturb = ShrinkPerturbValues
drop_and_grow = DropAndGrowValues
