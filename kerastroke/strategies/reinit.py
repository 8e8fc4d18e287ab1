"""Mutators that re-initialise entries: from a distribution or a Keras initializer.

They are exported from `kerastroke.mutators`. `initializer()` and
`shrink_perturb()` without an explicit initializer draw from the initializer
of the layer that owns the variable: `PlasticityCallback` fills it in through
`with_default_initializer` before it applies them.
"""

import attrs
import keras
import ml_dtypes
from keras import ops

from kerastroke.core import arrays, checks, seeds
from kerastroke.core.serialization import register


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
