"""Mutators: unselected bits kept, values in range, exact constants, seeds, bad input."""

import math

import keras
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke import mutators
from tests import strategies as ks



def _every_value(dtype):
    with np.errstate(invalid="ignore"):  # the NaN patterns
        return np.arange(2**16, dtype=np.uint16).view(ks.numpy_dtype(dtype)).astype(np.float64)


# Every value of each 16-bit dtype, as float64: an oracle that needs no rounding logic.
_ALL_VALUES = {name: _every_value(name) for name in ("float16", "bfloat16")}


def _has_value_in(dtype, low, high):
    """Whether some finite value of `dtype` lies in [low, high) ([low, low] if equal)."""
    if dtype in _ALL_VALUES:
        values = _ALL_VALUES[dtype]
    else:
        # The smallest value of the dtype >= low is the rounded low or its upper neighbour.
        with np.errstate(over="ignore"):
            rounded = np.asarray(low, dtype=dtype)
        values = np.array([rounded, np.nextafter(rounded, np.asarray(np.inf, dtype))], np.float64)
    values = values[np.isfinite(values)]
    upper = (values < high) if low < high else (values == high)
    return bool(np.any((values >= low) & upper))


def _mutators(dtype):
    """Built-in mutators whose parameters fit every dtype."""
    limit = 60000.0  # inside float16's range, so constants never overflow
    bounds = st.tuples(st.floats(-2.0, 2.0), st.floats(0.1, 2.0)).map(lambda p: (p[0], p[0] + p[1]))
    return st.one_of(
        bounds.map(lambda b: mutators.uniform(*b)),
        st.floats(-limit, limit).map(mutators.constant),
        st.just(mutators.zero()),
    )


@ks.examples(1.5)
@given(
    data=st.data(),
    w=ks.weight_arrays(min_dims=0, min_side=0),
    seed=ks.seeds,
    backend=ks.on_backend,
    mask_on_backend=ks.on_backend,
)
def test_mutators_keep_shape_dtype_and_every_unselected_bit(
    data, w, seed, backend, mask_on_backend
):
    mutator = data.draw(_mutators(w.dtype), label="mutator")
    mask = data.draw(ks.masks(w.shape), label="mask")
    w_before, mask_before = w.copy(), mask.copy()
    given_weights = ks.as_input(w, backend)

    new = mutator(given_weights, ks.as_input(mask, mask_on_backend), seed)

    ks.check_kind(new, given_weights)
    new = ks.to_numpy(new)
    assert new.shape == w.shape
    assert new.dtype == w.dtype
    np.testing.assert_array_equal(ks.bits(new)[~mask], ks.bits(w)[~mask])
    assert np.all(np.isfinite(new[mask].astype(np.float64)))
    np.testing.assert_array_equal(ks.bits(w), ks.bits(w_before))
    np.testing.assert_array_equal(mask, mask_before)


# bfloat16 NaNs: quiet, negative, with payloads, all bits set; then +inf and
# the smallest subnormal. The last entry is the one selected.
_BFLOAT16_SPECIALS = np.array([0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x7F80, 0x0001, 0x3F80], np.uint16)


@pytest.mark.parametrize("backend", [False, True], ids=["numpy", "tensor"])
@pytest.mark.parametrize(
    "mutator",
    [mutators.zero(), mutators.constant(2.0), mutators.uniform(-1.0, 1.0), mutators.normal(0.0, 0.1)],
    ids=["zero", "constant", "uniform", "normal"],
)
def test_unselected_bfloat16_nans_keep_their_payloads(mutator, backend):
    # Regression: on PyTorch, Keras's conversions go through float32, which
    # turns every bfloat16 NaN into 0xffff (seen as a Hypothesis failure).
    w = _BFLOAT16_SPECIALS.view(ml_dtypes.bfloat16)
    mask = np.arange(w.size) == w.size - 1

    new = ks.to_numpy(mutator(ks.as_input(w, backend), mask, 3))

    assert [hex(b) for b in ks.bits(new)[:-1]] == [hex(b) for b in _BFLOAT16_SPECIALS[:-1]]
    assert ks.bits(new)[-1] != 0x3F80


@st.composite
def _uniform_bounds(draw):
    """Bounds of every kind: wide, narrow, equal, unrepresentable, beyond float16."""
    value = st.one_of(
        st.floats(-1.0, 1.0),
        st.floats(-1e5, 1e5),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 0.1, 1e-40, 5e-324, 65504.0, 65520.0, 3.4e38, 1.7e308]),
    )
    low = draw(value)
    high = draw(
        st.one_of(
            value,
            st.just(low),
            st.integers(1, 4).map(lambda n: low + n * math.ulp(low)),
            st.floats(0.0, 1e-2).map(lambda d: low + d * max(abs(low), 1e-30)),
        )
    )
    high = high if math.isfinite(high) else low
    return min(low, high), max(low, high)


@ks.examples(2.5)
@given(
    bounds=_uniform_bounds(),
    dtype=st.sampled_from(ks.FLOAT_DTYPES),
    size=st.integers(1, 64),
    seed=ks.seeds,
    backend=ks.on_backend,
)
def test_uniform_values_lie_in_low_high_in_every_dtype(bounds, dtype, size, seed, backend):
    low, high = bounds
    mutator = mutators.uniform(low, high)
    w = ks.as_input(np.full(size, np.nan, ks.numpy_dtype(dtype)), backend)
    mask = np.arange(size) % 3 != 1
    if not _has_value_in(dtype, low, high):
        with pytest.raises(ValueError, match=dtype):
            mutator(w, mask, seed)
        return
    new = ks.to_numpy(mutator(w, mask, seed)).astype(np.float64)
    drawn = new[mask]
    assert np.all(np.isfinite(drawn)), drawn
    assert np.all(drawn >= low), (low, drawn.min())
    if low < high:
        assert np.all(drawn < high), (high, drawn.max())
    else:
        assert np.all(drawn == low), drawn
    assert np.all(np.isnan(new[~mask]))


@pytest.mark.parametrize("dtype", ks.FLOAT_DTYPES)
def test_uniform_is_uniform(dtype):
    # 10000 draws in 10 bins: each count is Binomial(10000, 0.1), standard
    # deviation 30, so +-150 is five deviations (rounding to bfloat16 moves
    # well under 1% of the mass between bins).
    w = np.zeros(10000, ks.numpy_dtype(dtype))
    draws = mutators.uniform(0.0, 1.0)(w, np.ones(10000, bool), 11)
    counts = np.histogram(draws.astype(np.float64), bins=10, range=(0.0, 1.0))[0]
    assert counts.sum() == 10000
    assert all(850 <= c <= 1150 for c in counts), counts


@pytest.mark.parametrize(
    "dtype, low, high",
    [
        ("float16", -6e4, 6e4),
        ("bfloat16", -3e38, 3e38),
        ("float32", -3e38, 3e38),
        ("float64", -1.7e308, 1.7e308),
    ],
)
def test_uniform_spreads_over_bounds_near_the_dtype_limits(dtype, low, high):
    # low + (high - low) * u overflows here; the draws must still spread out.
    draws = mutators.uniform(low, high)(np.zeros(200, ks.numpy_dtype(dtype)), np.ones(200, bool), 5)
    draws = draws.astype(np.float64)
    assert np.all((draws >= low) & (draws < high))
    assert 50 <= np.sum(draws > 0) <= 150
    assert len(np.unique(draws)) > 100


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_uniform_respects_subnormal_bounds(dtype):
    # Device arithmetic that flushes subnormals to zero would produce 0.0 here.
    tiny = float(ks.finfo(dtype).smallest_subnormal)
    w = np.zeros(50, ks.numpy_dtype(dtype))
    draws = mutators.uniform(tiny, 8 * tiny)(w, np.ones(50, bool), 0)
    draws = draws.astype(np.float64)
    assert np.all((draws >= tiny) & (draws < 8 * tiny)), draws


@ks.examples(0.75)
@given(data=st.data(), w=ks.weight_arrays(), seed=ks.seeds, backend=ks.on_backend)
def test_same_seed_gives_the_same_bits(data, w, seed, backend):
    mask = data.draw(ks.masks(w.shape), label="mask")
    mutator = mutators.uniform(-1.0, 1.0)
    given_weights = ks.as_input(w, backend)
    first = ks.to_numpy(mutator(given_weights, mask, seed))
    second = ks.to_numpy(mutator(given_weights, mask, seed))
    np.testing.assert_array_equal(ks.bits(first), ks.bits(second))


@ks.examples(0.5)
@given(
    dtype=st.sampled_from(ks.FLOAT_DTYPES),
    size=st.integers(20, 100),
    seeds=st.lists(ks.seeds, min_size=2, max_size=2, unique=True),
)
def test_different_seeds_give_different_values(dtype, size, seeds):
    # Even bfloat16 has 128 values in [0.5, 1): 20 draws all agreeing between
    # two seeds has probability below 128**-20.
    w = np.zeros(size, ks.numpy_dtype(dtype))
    first, second = (mutators.uniform(0.5, 1.0)(w, np.ones(size, bool), seed) for seed in seeds)
    assert not np.array_equal(ks.bits(first), ks.bits(second))


@pytest.mark.parametrize("seed", [0, -5, 2**31, 2**64 + 3, np.int64(9), np.uint32(4)])
def test_uniform_accepts_any_integer_seed(seed):
    w = np.zeros(8, np.float32)
    first = mutators.uniform(-1.0, 1.0)(w, np.ones(8, bool), seed)
    second = mutators.uniform(-1.0, 1.0)(w, np.ones(8, bool), int(seed))
    np.testing.assert_array_equal(ks.bits(first), ks.bits(second))


@pytest.mark.parametrize("seed", [None, 1.5, "7", True])
def test_uniform_rejects_seeds_that_are_not_integers(seed):
    with pytest.raises(TypeError, match="seed"):
        mutators.uniform(-1.0, 1.0)(np.zeros(3, np.float32), np.ones(3, bool), seed)


@ks.examples(1.5)
@given(
    value=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([-0.0, 65519.0, 65520.0]),
    ),
    dtype=st.sampled_from(ks.FLOAT_DTYPES),
    backend=ks.on_backend,
)
def test_constant_writes_the_value_rounded_to_the_dtype(value, dtype, backend):
    w = np.array([1.0, 2.0, np.nan, -0.0], ks.numpy_dtype(dtype))
    mask = np.array([True, False, True, False])
    with np.errstate(over="ignore"):
        expected = np.asarray(value, dtype=ks.numpy_dtype(dtype))
    if not np.isfinite(expected.astype(np.float64)):
        with pytest.raises(ValueError, match="value"):
            mutators.constant(value)(ks.as_input(w, backend), mask, 0)
        return
    new = ks.to_numpy(mutators.constant(value)(ks.as_input(w, backend), mask, 0))
    written = ks.bits(expected).item()
    assert ks.bits(new).tolist() == [written, ks.bits(w)[1], written, ks.bits(w)[3]]


def test_constant_examples():
    w = np.array([[1.0, -2.0], [3.0, np.nan]], np.float32)
    mask = np.array([[True, False], [False, True]])
    assert mutators.constant(0.5)(w, mask, 0).tolist() == [[0.5, -2.0], [3.0, 0.5]]
    zeroed = mutators.zero()(w, mask, 0)
    assert zeroed.tolist() == [[0.0, -2.0], [3.0, 0.0]]
    assert not np.signbit(zeroed[mask]).any()
    # -0.0 stays negative in every dtype, even right after 0.0 was written.
    for dtype in ks.FLOAT_DTYPES:
        ones, first = np.ones(2, ks.numpy_dtype(dtype)), np.array([True, False])
        assert not np.signbit(mutators.constant(0.0)(ones, first, 0).astype(float)[0])
        assert np.signbit(mutators.constant(-0.0)(ones, first, 0).astype(float)[0])
    assert mutators.zero() == mutators.constant(0.0)
    half = np.array([1.0, 1.0], np.float16)
    assert mutators.constant(65519.0)(half, np.array([True, False]), 0).tolist() == [65504.0, 1.0]
    assert mutators.constant(0.1)(half, np.array([True, False]), 0)[0] == np.float16(0.1)


@pytest.mark.parametrize(
    "dtype, value", [("float16", 1e6), ("float16", 65520.0), ("bfloat16", 1e39), ("float32", 1e39)]
)
def test_constant_that_overflows_the_dtype_is_an_error(dtype, value):
    w = np.zeros(3, ks.numpy_dtype(dtype))
    for mask in (np.ones(3, bool), np.zeros(3, bool)):
        with pytest.raises(ValueError, match=dtype) as info:
            mutators.constant(value)(w, mask, 0)
        assert "value" in str(info.value) and repr(value) in str(info.value)


def test_uniform_examples():
    w = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    mask = np.array([True, False, True, False])
    assert mutators.uniform(0.25, 0.25)(w, mask, 3).tolist() == [0.25, 2.0, 0.25, 4.0]
    assert mutators.uniform(-1.0, 1.0)(w, np.zeros(4, bool), 3).tolist() == [1.0, 2.0, 3.0, 4.0]
    # 0.1 is not a float16 (it rounds down to 0.0999755859375); the only
    # float16 in [0.1, 0.10005) is 0.10003662109375.
    half = mutators.uniform(0.1, 0.10005)(np.zeros(3, np.float16), np.ones(3, bool), 0)
    assert half.tolist() == [0.10003662109375] * 3


@pytest.mark.parametrize(
    "dtype, low, high",
    [
        ("float16", 0.1, 0.10003),
        ("bfloat16", 0.1, 0.10009),
        ("float32", 1.0 + 2**-30, 1.0 + 2**-29),
        ("float32", 0.1, 0.1),
        ("float16", 1e5, 2e5),
    ],
)
def test_uniform_with_no_value_of_the_dtype_in_range_is_an_error(dtype, low, high):
    w = np.zeros(3, ks.numpy_dtype(dtype))
    for mask in (np.ones(3, bool), np.zeros(3, bool)):
        with pytest.raises(ValueError, match=dtype) as info:
            mutators.uniform(low, high)(w, mask, 0)
        assert repr(low) in str(info.value) and repr(high) in str(info.value)
    # The same bounds are fine in float64.
    assert mutators.uniform(low, high)(np.zeros(3), np.ones(3, bool), 0).tolist() != [0.0] * 3


@pytest.mark.parametrize(
    "mutator", [mutators.uniform(-1.0, 1.0), mutators.constant(2.0), mutators.zero()]
)
@pytest.mark.parametrize("mask_shape", [(3, 1), (1,), (4,), ()])
def test_a_mask_of_the_wrong_shape_is_an_error(mutator, mask_shape):
    with pytest.raises(ValueError, match="mask") as info:
        mutator(np.zeros(3, np.float32), np.ones(mask_shape, bool), 0)
    assert str(mask_shape) in str(info.value)


def test_backend_masks_and_weights_are_accepted_together():
    w = keras.ops.convert_to_tensor(np.array([1.0, 2.0, 3.0], np.float32))
    mask = keras.ops.convert_to_tensor(np.array([False, True, False]))
    assert ks.to_numpy(mutators.zero()(w, mask, 0)).tolist() == [1.0, 0.0, 3.0]


@pytest.mark.parametrize(
    "make, error, shown",
    [
        (lambda: mutators.uniform(1.0, 0.0), ValueError, "low=1.0"),
        (lambda: mutators.uniform(float("nan"), 1.0), ValueError, "low=nan"),
        (lambda: mutators.uniform(0.0, float("nan")), ValueError, "high=nan"),
        (lambda: mutators.uniform(-float("inf"), 0.0), ValueError, "low=-inf"),
        (lambda: mutators.uniform(0.0, float("inf")), ValueError, "high=inf"),
        (lambda: mutators.uniform(True, 1.0), TypeError, "low=True"),
        (lambda: mutators.uniform(0.0, "1"), TypeError, "high='1'"),
        (lambda: mutators.uniform(None, 1.0), TypeError, "low=None"),
        (lambda: mutators.constant(float("nan")), ValueError, "value=nan"),
        (lambda: mutators.constant(float("inf")), ValueError, "value=inf"),
        (lambda: mutators.constant(False), TypeError, "value=False"),
        (lambda: mutators.constant("0.5"), TypeError, "value='0.5'"),
        (lambda: mutators.constant(None), TypeError, "value=None"),
    ],
)
def test_bad_parameters_are_rejected_at_construction(make, error, shown):
    with pytest.raises(error) as info:
        make()
    assert shown in str(info.value)


@pytest.mark.parametrize(
    "initializer",
    [
        keras.initializers.GlorotUniform(seed=3),
        keras.initializers.HeNormal(),
        keras.initializers.RandomNormal(0.0, 0.1),
        keras.initializers.Constant(0.5),
        keras.initializers.Orthogonal(),
    ],
    ids=lambda initializer: type(initializer).__name__,
)
def test_an_initializer_is_kept_as_the_config_keras_would_write(initializer):
    # Written without Keras's serializer (which imports TensorFlow on every
    # backend), it must still be the very dict Keras writes and reads back.
    kept = mutators.initializer(initializer).initializer
    assert kept == keras.initializers.serialize(initializer)
    again = keras.initializers.get(kept)
    assert type(again) is type(initializer) and again.get_config() == initializer.get_config()


def test_described_initializers_follow_their_config_not_its_identity():
    # `draws.describe` remembers what it read from a name or a JSON config,
    # by the config's text: a config changed in place is read again, and an
    # initializer object (no text) is read every time.
    from kerastroke.core import draws

    config = {"class_name": "RandomUniform", "config": {"minval": -0.3, "maxval": 0.1}}
    assert draws.describe(config, (4, 4)) == ("uniform", -0.3, 0.1)
    config["config"]["maxval"] = 0.2
    assert draws.describe(config, (4, 4)) == ("uniform", -0.3, 0.2)
    assert draws.describe("glorot_uniform", (2, 6)) == draws.describe(keras.initializers.GlorotUniform(), (2, 6))
    assert draws.describe("glorot_uniform", (2, 6)) == ("uniform", -math.sqrt(6 / 8), math.sqrt(6 / 8))
