"""Mutators: `mutate(weights, mask, seed) -> new weights`, *what* entries become.

A mutator returns an array of the weights' shape and dtype in which every
entry outside `mask` keeps its exact bits. A random value belongs to an
entry's flat position (`kerastroke.core.hashing`): the same bits whichever
other entries are selected, and on every backend.

Every built-in also has `mutate_batch(weights, mask, keys)`, the form the
engine calls on R variables of one shape stacked on a leading axis, with one
random key per variable; it is `keras.ops` throughout, so it traces.
`__call__` is `mutate_batch` on a batch of one. A mutator whose draws cannot
be traced (a Keras initializer kerastroke does not know) has
`mutate_batch = None`, and the engine runs it eagerly.

`uniform`, `constant`, `initializer` (for initializers drawn uniformly or
filled with a constant) and `drop_and_grow` (when its `grow` has one) also
have `mutate_host(weights, mask, keys)`: the same values, the same bits, on
a float32 NumPy batch in host memory (the engine's CPU path,
`kerastroke.accel.host`).
"""

import math

import attrs
import keras
import ml_dtypes
import numpy as np
from keras import ops

from kerastroke.accel import host
from kerastroke.core import arrays, checks, draws, hashing, seeds
from kerastroke.core.serialization import register


def _single(mutate_batch, weights, mask, seed):
    """A mutator's call on one tensor, through its batched form."""
    w, m = arrays.weights_and_mask(weights, mask)
    new = mutate_batch(ops.expand_dims(w, 0), ops.expand_dims(m, 0), hashing.keys_of([seed]))
    return arrays.like(ops.squeeze(new, 0), weights)


def _flat_positions(batch):
    """Flat positions 0..N-1 of one variable, for draws of a batch (R, ...)."""
    return ops.arange(math.prod(batch.shape[1:]), dtype="int32")


def _draw_dtype(dtype):
    """float64 weights draw in float64; every other dtype in float32, rounded once."""
    return "float64" if dtype == "float64" else "float32"


def _shaped(values, batch):
    return ops.reshape(values, batch.shape)


@register("mutators.uniform")
@attrs.frozen
class Uniform:
    """New values drawn from U[low, high), each representable in the weights' dtype.

    In a low-precision dtype a draw that rounds to `high` or beyond, or below
    `low`, is clamped to the nearest value of that dtype inside [low, high),
    so the bounds are never silently widened. `low == high` sets every
    selected entry to that value.

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
        return _single(self.mutate_batch, weights, mask, seed)

    def mutate_batch(self, weights, mask, keys):
        return arrays.merge(mask, self.values(weights, keys), weights)

    def mutate_host(self, weights, mask, keys):
        lo, hi = self.bounds("float32")
        low, high = arrays.at_least(self.low, "float32"), arrays.at_most(self.high, "float32")
        clamp = (lo, hi, not arrays.clips_floats(lo, hi))
        return host.uniform(weights, mask, hashing.derive_on_host(keys, "uniform"), low, high, clamp)

    def values(self, weights, keys):
        """A draw for every entry of the batch (R, ...), in the weights' dtype."""
        dtype = arrays.dtype_name(weights)
        # Checked whatever is selected, so bounds that fit no value of the
        # dtype fail on the first call rather than on the first selection.
        lo, hi = self.bounds(dtype)
        wide = _draw_dtype(dtype)
        low, high = arrays.at_least(self.low, wide), arrays.at_most(self.high, wide)
        drawn = hashing.uniform(hashing.derive(keys, "uniform"), _flat_positions(weights), low, high, wide)
        # A half-precision overflow becomes inf, then the bound.
        return _shaped(arrays.clamp(ops.cast(drawn, dtype), lo, hi), weights)


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
        return _single(self.mutate_batch, weights, mask, seed)

    def mutate_batch(self, weights, mask, keys):
        dtype = arrays.dtype_name(weights)
        filled = ops.full(weights.shape, arrays.scalar(self.rounded(dtype), dtype), dtype=dtype)
        return arrays.merge(mask, filled, weights)

    def mutate_host(self, weights, mask, keys):
        return host.fill(weights, mask, self.rounded("float32"))


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
        return _serialized(value)
    raise TypeError(
        "`initializer` must be None, a Keras initializer, its name or its config. "
        f"Received: initializer={value!r}"
    )


def _serialized(initializer):
    """`keras.initializers.serialize(initializer)`, built directly for Keras's own.

    Keras's serializer imports TensorFlow (to rule out a `TensorShape`), which
    costs seconds on the first call in a JAX or PyTorch process; for the
    initializers `keras.initializers` exports, the same dict is written here.
    """
    cls = type(initializer)
    if getattr(keras.initializers, cls.__name__, None) is cls:
        return {
            "module": "keras.initializers",
            "class_name": cls.__name__,
            "config": initializer.get_config(),
            "registered_name": None,
        }
    return keras.initializers.serialize(initializer)


def draw_initializer(identifier, shape, dtype, seed):
    """A full tensor from a Keras initializer itself, drawn with the integer `seed`."""
    initializer = keras.initializers.get(identifier)
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
        initializer = type(initializer).from_config(config)
    return ops.cast(initializer(shape, dtype=dtype), dtype)


class _NeedsInitializer:
    """Shared by mutators whose draw may come from the owning layer's initializer.

    The initializers whose distribution kerastroke knows (`draws.of_initializer`:
    the Glorot, He and LeCun families, `VarianceScaling`, `RandomUniform`,
    `RandomNormal`, `TruncatedNormal`, `Zeros`, `Ones`, `Constant`) are drawn
    from counter-based draws, traced; any other runs eagerly through Keras.
    """

    def with_default_initializer(self, initializer):
        """This mutator, drawing from `initializer` unless one was given."""
        if self.initializer is not None:
            return self
        return attrs.evolve(self, initializer=_identifier(initializer))

    def _need_initializer(self):
        if self.initializer is None:
            raise ValueError(
                f"{type(self).__name__} has no initializer: run it through a "
                "PlasticityCallback (which uses the layer's own), or pass one, "
                "e.g. initializer='glorot_uniform'."
            )

    def __call__(self, weights, mask, seed):
        self._need_initializer()
        if self.mutate_batch is not None:
            return _single(self.mutate_batch, weights, mask, seed)
        w, m = arrays.weights_and_mask(weights, mask)
        fresh = draw_initializer(self.initializer, arrays.shape(w), arrays.dtype_name(w), seed)
        return arrays.like(self._combine(w, m, fresh), weights)

    @property
    def mutate_batch(self):
        """The batched form, or None for an initializer drawn through Keras (eagerly)."""
        self._need_initializer()
        distribution = draws.of_initializer(self.initializer)
        if distribution is None:
            return None

        def mutate_batch(weights, mask, keys):
            fresh = distribution(weights.shape[1:], arrays.dtype_name(weights), hashing.derive(keys, "fresh"),
                                 rows=weights.shape[0])
            return self._combine(weights, mask, fresh)

        return mutate_batch

    @property
    def mutate_host(self):
        """The host form (float32), for an initializer drawn uniformly or
        filled; else None."""
        self._need_initializer()
        distribution = draws.describe(self.initializer, (1, 1))  # None for one not known here
        if distribution is None or distribution[0] not in ("uniform", "filled"):
            return None

        def mutate_host(weights, mask, keys):
            kind, *parameters = draws.describe(self.initializer, weights.shape[1:])
            if kind == "filled":
                fresh = host.fill(weights, mask, np.float32(parameters[0]))
            else:
                low, high = parameters
                fresh = host.uniform(weights, mask, hashing.derive_on_host(keys, "fresh"), low, high)
            return self._combine_host(weights, mask, fresh)

        return mutate_host


@register("mutators.normal")
@attrs.frozen
class Normal:
    """New values drawn from N(mean, stddev**2).

    Drawn by the inverse of the normal CDF from one counter-based uniform per
    entry; `erfinv` is each backend's own, so draws agree across backends to
    a rounding, not bit for bit.

    Args:
        stddev: Standard deviation (finite, >= 0).
        mean: Mean (finite).

    Example:
    >>> import numpy as np
    >>> new = normal(0.01)(np.zeros(3, "float32"), np.array([True, False, True]), 0)
    >>> bool(new[1] == 0.0), bool(new[0] != 0.0)
    (True, True)
    """

    stddev: float = attrs.field(converter=lambda v: checks.non_negative("stddev", v))
    mean: float = attrs.field(default=0.0, converter=lambda v: checks.finite("mean", v))

    def __call__(self, weights, mask, seed):
        return _single(self.mutate_batch, weights, mask, seed)

    def mutate_batch(self, weights, mask, keys):
        dtype = arrays.dtype_name(weights)
        wide = _draw_dtype(dtype)
        z = draws.standard_normal(hashing.derive(keys, "normal"), _flat_positions(weights), wide)
        values = ops.add(ops.multiply(z, arrays.number(self.stddev, wide)), arrays.number(self.mean, wide))
        return arrays.merge(mask, _shaped(ops.cast(values, dtype), weights), weights)


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

    initializer: object = attrs.field(default=None, converter=_identifier)

    def _combine(self, weights, mask, fresh):
        return arrays.merge(mask, fresh, weights)

    def _combine_host(self, weights, mask, fresh):
        return fresh  # the host draw is already merged into the weights


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

    shrink: float = attrs.field(converter=lambda v: checks.fraction("shrink", v))
    perturb: float = attrs.field(converter=lambda v: checks.non_negative("perturb", v))
    initializer: object = attrs.field(default=None, converter=_identifier)

    def _combine(self, weights, mask, fresh):
        dtype = arrays.dtype_name(weights)
        new = ops.add(
            ops.multiply(arrays.number(self.shrink, dtype), weights),
            ops.multiply(arrays.number(self.perturb, dtype), fresh),
        )
        return arrays.merge(mask, new, weights)

    @property
    def mutate_host(self):
        """The host form, as `Initializer`'s; None on JAX, where `jax.jit`
        fuses the multiply and the add into one rounding (a fused
        multiply-add), which the host's three roundings do not reproduce."""
        if keras.backend.backend() == "jax":
            return None
        return super().mutate_host

    def _combine_host(self, weights, mask, fresh):
        # The same three roundings; subnormals as the backend's kernels treat
        # them (TensorFlow's and XLA's flush them, PyTorch's keep them).
        return host.shrink_perturb(weights, mask, fresh, self.shrink, self.perturb, arrays.flushes_subnormals())


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

    grow: object = attrs.field(factory=lambda: Normal(0.01))

    def __attrs_post_init__(self):
        checks.callable_("grow", self.grow)

    def with_default_initializer(self, initializer):
        bind = getattr(self.grow, "with_default_initializer", None)
        return self if bind is None else attrs.evolve(self, grow=bind(initializer))

    def __call__(self, weights, mask, seed):
        grow = getattr(self.grow, "mutate_batch", None)
        if grow is not None:
            return _single(self.mutate_batch, weights, mask, seed)
        w, m = arrays.weights_and_mask(weights, mask)
        grow_mask = ops.logical_and(m, arrays.is_zero(w))
        grown = arrays.tensor(self.grow(w, grow_mask, seeds.derive(seed, "grow")))
        return arrays.like(self._combine(w, m, grow_mask, grown), weights)

    @property
    def mutate_batch(self):
        """The batched form, if `grow` has one (else None: the engine runs it eagerly)."""
        grow = getattr(self.grow, "mutate_batch", None)
        if grow is None:
            return None

        def mutate_batch(weights, mask, keys):
            grow_mask = ops.logical_and(mask, arrays.is_zero(weights))
            grown = grow(weights, grow_mask, hashing.derive(keys, "grow"))
            return self._combine(weights, mask, grow_mask, grown)

        return mutate_batch

    @property
    def mutate_host(self):
        """The host form (float32), if `grow` has one (else None)."""
        grow = getattr(self.grow, "mutate_host", None)
        if grow is None:
            return None

        def mutate_host(weights, mask, keys):
            empty = host.zeros(weights)
            grow_mask = np.logical_and(mask, empty, out=empty)  # `empty` is this call's own
            grown = grow(weights, grow_mask, hashing.derive_on_host(keys, "grow"))
            return host.drop_and_grow(weights, mask, grow_mask, grown)

        return mutate_host

    def _combine(self, weights, mask, grow_mask, grown):
        dtype = arrays.dtype_name(weights)
        tiny = arrays.scalar(ml_dtypes.finfo(arrays.numpy_dtype(dtype)).tiny, dtype)
        grown = arrays.merge(arrays.is_zero(grown), ops.broadcast_to(tiny, weights.shape), grown)
        return arrays.merge(grow_mask, grown, arrays.merge(mask, ops.zeros_like(weights), weights))


normal = Normal
initializer = Initializer
shrink_perturb = ShrinkPerturbValues
drop_and_grow = DropAndGrowValues
