"""Selectors: exact counts, exact ranges, set semantics, seeds, and bad amounts."""

import math

import keras
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kerastroke import selectors
from kerastroke.core import hashing
from tests import strategies as ks


# A selector together with an independent NumPy oracle for its eligible entries.
def _random_fraction_spec():
    return st.just((selectors.random_fraction(), lambda w: np.ones(w.shape, bool)))


def _value_range_spec(array):
    def build(bounds):
        low, high = bounds

        def eligible(w):
            wide = w.astype(np.float64)
            with np.errstate(invalid="ignore"):
                return (low <= wide) & (wide <= high) & np.isfinite(wide)

        return selectors.value_range(low, high), eligible

    return ks.bounds_near(array).map(build)


def _combined(parts, kind):
    selector = {"intersection": selectors.intersection, "union": selectors.union}[kind](
        *(part for part, _ in parts)
    )
    combine = np.logical_and if kind == "intersection" else np.logical_or

    def eligible(w):
        result = parts[0][1](w)
        for _, part_eligible in parts[1:]:
            result = combine(result, part_eligible(w))
        return result

    return selector, eligible


def _complemented(spec):
    selector, eligible = spec
    return selectors.complement(selector), lambda w: ~eligible(w)


def selector_specs(array):
    """Every built-in selector, combinators nested up to two levels, with their oracles."""
    base = st.one_of(_random_fraction_spec(), _value_range_spec(array))
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.tuples(st.lists(inner, min_size=1, max_size=3), st.just("intersection")).map(
                lambda args: _combined(*args)
            ),
            st.tuples(st.lists(inner, min_size=1, max_size=3), st.just("union")).map(
                lambda args: _combined(*args)
            ),
            inner.map(_complemented),
        ),
        max_leaves=4,
    )


@ks.examples(1.5)
@given(
    data=st.data(),
    w=ks.weight_arrays(min_dims=0, min_side=0),
    amount=ks.amounts,
    seed=ks.seeds,
    backend=ks.on_backend,
)
def test_every_selector_picks_exactly_round_amount_of_its_eligible_entries(
    data, w, amount, seed, backend
):
    selector, eligible_of = data.draw(selector_specs(w), label="selector")
    before = w.copy()
    given_weights = ks.as_input(w, backend)

    mask = selector(given_weights, amount, seed)

    ks.check_kind(mask, given_weights)
    mask = ks.to_numpy(mask)
    assert mask.shape == w.shape
    assert mask.dtype == np.bool_
    eligible = eligible_of(w)
    assert not np.any(mask & ~eligible), "picked an entry that is not eligible"
    assert int(mask.sum()) == round(amount * int(eligible.sum()))
    np.testing.assert_array_equal(ks.bits(w), ks.bits(before))


@ks.examples(1.5)
@given(data=st.data(), w=ks.weight_arrays(), seed=ks.seeds, backend=ks.on_backend)
def test_value_range_is_the_exact_comparison_in_float64(data, w, seed, backend):
    low, high = data.draw(ks.bounds_near(w), label="bounds")
    wide = w.astype(np.float64)
    with np.errstate(invalid="ignore"):
        expected = (low <= wide) & (wide <= high) & np.isfinite(wide)

    mask = ks.to_numpy(selectors.value_range(low, high)(ks.as_input(w, backend), 1.0, seed))

    np.testing.assert_array_equal(mask, expected)


@given(dtype=st.sampled_from(ks.FLOAT_DTYPES), backend=ks.on_backend)
def test_value_range_never_selects_nan_or_infinity(dtype, backend):
    w = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, 1.0], ks.numpy_dtype(dtype))
    everything = selectors.value_range(-np.inf, np.inf)
    mask = ks.to_numpy(everything(ks.as_input(w, backend), 1.0, 0))
    assert mask.tolist() == [False, False, False, False, True, True]


@pytest.mark.parametrize("dtype", ks.FLOAT_DTYPES)
def test_value_range_compares_subnormals_exactly(dtype):
    # Device kernels that flush subnormals to zero would put them inside [0, 0].
    info = ks.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    w = np.array([0.0, -0.0, tiny, -tiny, float(info.smallest_normal)], ks.numpy_dtype(dtype))
    assert selectors.value_range(0.0, 0.0)(w, 1.0, 0).tolist() == [True, True, False, False, False]
    assert selectors.value_range(tiny, 1.0)(w, 1.0, 0).tolist() == [False, False, True, False, True]
    only_minus_tiny = [False, False, False, True, False]
    assert selectors.value_range(-tiny, -tiny)(w, 1.0, 0).tolist() == only_minus_tiny


def test_value_range_bounds_are_not_rounded_into_the_dtype():
    # 0.1 rounds down to 0.0999755859375 in float16: a rounded low bound would include it.
    w = np.array([0.0999755859375, 0.10009765625, 0.2], np.float16)
    assert selectors.value_range(0.1, 1.0)(w, 1.0, 0).tolist() == [False, True, True]
    assert selectors.value_range(-1.0, 0.1)(w, 1.0, 0).tolist() == [True, False, False]
    # Bounds beyond float16's range select nothing above 65504 and everything up to it.
    big = np.array([65504.0, -65504.0, np.inf], np.float16)
    assert selectors.value_range(1e6, 2e6)(big, 1.0, 0).tolist() == [False, False, False]
    assert selectors.value_range(-1e6, 1e6)(big, 1.0, 0).tolist() == [True, True, False]


@ks.examples(0.75)
@given(
    data=st.data(), w=ks.weight_arrays(), amount=ks.amounts, seed=ks.seeds, backend=ks.on_backend
)
def test_same_seed_gives_the_same_mask(data, w, amount, seed, backend):
    selector, _ = data.draw(selector_specs(w), label="selector")
    given_weights = ks.as_input(w, backend)
    first = ks.to_numpy(selector(given_weights, amount, seed))
    second = ks.to_numpy(selector(given_weights, amount, seed))
    np.testing.assert_array_equal(first, second)


_ALL_ELIGIBLE_SELECTORS = [
    selectors.random_fraction(),
    selectors.value_range(-1.0, 1.0),
    selectors.complement(selectors.value_range(5.0, 6.0)),
    selectors.intersection(selectors.random_fraction(), selectors.value_range(-np.inf, np.inf)),
    selectors.union(selectors.value_range(5.0, 6.0), selectors.random_fraction()),
]


@ks.examples(0.375)
@given(
    selector=st.sampled_from(_ALL_ELIGIBLE_SELECTORS),
    size=st.integers(20, 100),
    fraction=st.floats(0.0, 1.0),
    seeds=st.lists(ks.seeds, min_size=2, max_size=2, unique=True),
)
def test_different_seeds_give_different_masks(selector, size, fraction, seeds):
    w = np.zeros(size, np.float32)
    k = min(max(round(fraction * size), 1), size - 1)
    amount = k / size
    assume(round(amount * size) == k)
    first, second = (selector(w, amount, seed) for seed in seeds)
    if math.comb(size, k) >= 2**40:
        # Two independent uniform picks agree with probability 1 / comb(size, k).
        assert not np.array_equal(first, second)
    # Eight consecutive seeds all agreeing has probability at most 20**-7.
    masks = {selector(w, amount, seeds[0] + offset).tobytes() for offset in range(8)}
    assert len(masks) > 1


@ks.examples(0.75)
@given(data=st.data(), w=ks.weight_arrays(), amount=ks.amounts, seed=ks.seeds)
def test_combinators_follow_set_semantics(data, w, amount, seed):
    parts = data.draw(st.lists(selector_specs(w), min_size=1, max_size=3), label="parts")
    full = [np.asarray(part(w, 1.0, 0)) for part, _ in parts]

    meet = selectors.intersection(*(part for part, _ in parts))(w, 1.0, seed)
    join = selectors.union(*(part for part, _ in parts))(w, 1.0, seed)
    rest = selectors.complement(parts[0][0])(w, 1.0, seed)
    for selection in full:
        assert not np.any(meet & ~selection), "intersection is not inside every part"
        assert not np.any(selection & ~join), "union does not contain every part"
    assert not np.any(rest & full[0]), "complement overlaps its selector"
    assert np.all(rest | full[0]), "complement and its selector do not cover everything"

    # With amount < 1 a combinator picks exactly round(amount * eligible) of them.
    for combined, full_selection in ((selectors.intersection, meet), (selectors.union, join)):
        mask = combined(*(part for part, _ in parts))(w, amount, seed)
        assert not np.any(mask & ~full_selection)
        assert int(mask.sum()) == round(amount * int(full_selection.sum()))


@pytest.mark.parametrize("amount", [0.49, 0.5, 0.5 + 1e-9, 0.51, 0.9, 0.99, 0.999, 1.0 - 1e-9])
@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_rejection_sampling_handles_amounts_near_one_half_and_one(amount, size):
    # Near 0.5 the rounds draw the most repeats; near 1 the complement is drawn.
    mask = selectors.random_fraction()(np.zeros(size, np.float32), amount, 3)
    assert int(mask.sum()) == round(amount * size)
    partial = selectors.value_range(0.0, 0.0)(
        np.where(np.arange(size) % 3 == 0, 0.0, 1.0).astype(np.float32), amount, 3
    )
    eligible = len(range(0, size, 3))
    assert int(partial.sum()) == round(amount * eligible)
    assert not np.any(partial[np.arange(size) % 3 != 0])


def test_random_fraction_picks_every_entry_equally_often():
    # 1 of 4 over 2000 seeds: each count is Binomial(2000, 1/4), mean 500,
    # standard deviation 19.4, so 400..600 is more than five deviations.
    # The 2000 seeds go in one batch (row r drawn with seed r, as the engine
    # draws a batch of variables); a few rows are checked against calls on
    # one tensor.
    selector = selectors.random_fraction()
    w = np.zeros(4, np.float32)
    masks = np.asarray(keras.ops.convert_to_numpy(
        selector.select_batch(np.zeros((2000, 4), np.float32), 0.25, hashing.keys_of(range(2000)))
    ))
    for seed in (0, 1, 999, 1999):
        assert masks[seed].tolist() == np.asarray(selector(w, 0.25, seed)).tolist()
    assert (masks.sum(axis=1) == 1).all()
    counts = masks.sum(axis=0)
    assert all(400 <= c <= 600 for c in counts), counts


def test_value_range_can_pick_and_leave_out_every_eligible_entry():
    # Ranks among the eligible entries map back onto them, directly (1 of 4)
    # and through the complement (3 of 4). Over 60 seeds an entry is missed
    # with probability (3/4)**60 < 1e-7.
    w = np.array([0.0, 9.0, 0.0, 0.0, 9.0, 9.0, 0.0, 9.0], np.float32)
    near_zero = selectors.value_range(-1.0, 1.0)
    picked = np.zeros(8, int)
    left_out = np.zeros(8, int)
    for seed in range(60):
        picked += near_zero(w, 0.25, seed)
        left_out += ~near_zero(w, 0.75, seed)
    assert picked.sum() == 60 and picked[[1, 4, 5, 7]].tolist() == [0] * 4
    assert all(picked[[0, 2, 3, 6]] > 0), picked
    assert left_out[[1, 4, 5, 7]].tolist() == [60] * 4
    assert all(left_out[[0, 2, 3, 6]] > 0), left_out


def test_examples_with_written_out_masks():
    w = np.array([[-0.3, -0.01, 0.0], [0.02, 0.5, np.nan]], np.float32)
    near_zero = selectors.value_range(-0.05, 0.05)
    assert near_zero(w, 1.0, 0).tolist() == [[False, True, True], [True, False, False]]
    assert near_zero(w, 0.0, 0).tolist() == [[False] * 3, [False] * 3]
    assert selectors.random_fraction()(w, 1.0, 0).tolist() == [[True] * 3, [True] * 3]
    assert selectors.random_fraction()(w, 0.0, 0).tolist() == [[False] * 3, [False] * 3]

    not_zero = selectors.complement(selectors.value_range(0.0, 0.0))
    assert not_zero(w, 1.0, 0).tolist() == [[True, True, False], [True, True, True]]
    small_not_zero = selectors.intersection(near_zero, not_zero)
    assert small_not_zero(w, 1.0, 0).tolist() == [[False, True, False], [True, False, False]]
    tails = selectors.union(
        selectors.value_range(-np.inf, -0.1), selectors.value_range(0.1, np.inf)
    )
    assert tails(w, 1.0, 0).tolist() == [[True, False, False], [False, True, False]]
    # 3 eligible entries at amount 0.5: round(1.5) == 2 (Python rounds half to even).
    assert int(near_zero(w, 0.5, 0).sum()) == 2
    # round(2.5) == 2 as well.
    assert int(selectors.random_fraction()(np.zeros(5, np.float32), 0.5, 0).sum()) == 2


@pytest.mark.parametrize(
    "selector",
    [
        selectors.random_fraction(),
        selectors.value_range(-1.0, 1.0),
        selectors.intersection(selectors.random_fraction()),
        selectors.union(selectors.random_fraction()),
        selectors.complement(selectors.value_range(1.0, 2.0)),
    ],
)
@pytest.mark.parametrize(
    "amount, error",
    [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (True, TypeError), ("0.5", TypeError), (None, TypeError)],
)
def test_bad_amounts_are_rejected_at_call_naming_the_amount(selector, amount, error):
    with pytest.raises(error) as info:
        selector(np.zeros(3, np.float32), amount, 0)
    assert f"amount={amount!r}" in str(info.value)


@pytest.mark.parametrize("seed", [None, 1.5, "7"])
def test_seeds_must_be_integers(seed):
    with pytest.raises(TypeError, match="seed"):
        selectors.random_fraction()(np.zeros(4, np.float32), 0.5, seed)


@pytest.mark.parametrize(
    "make, error, shown",
    [
        (lambda: selectors.value_range(1.0, 0.0), ValueError, "low=1.0"),
        (lambda: selectors.value_range(float("nan"), 1.0), ValueError, "low=nan"),
        (lambda: selectors.value_range(0.0, float("nan")), ValueError, "high=nan"),
        (lambda: selectors.value_range(True, 1.0), TypeError, "low=True"),
        (lambda: selectors.value_range(0.0, "1"), TypeError, "high='1'"),
        (lambda: selectors.value_range(None, 1.0), TypeError, "low=None"),
        (lambda: selectors.intersection(), ValueError, "parts=()"),
        (lambda: selectors.union(), ValueError, "parts=()"),
        (lambda: selectors.intersection(selectors.random_fraction(), 3), TypeError, "parts[1]=3"),
        (lambda: selectors.union("x"), TypeError, "parts[0]='x'"),
        (lambda: selectors.complement(0.5), TypeError, "selector=0.5"),
    ],
)
def test_bad_parameters_are_rejected_at_construction(make, error, shown):
    with pytest.raises(error) as info:
        make()
    assert shown in str(info.value)


def test_user_callables_work_inside_combinators():
    def positive(weights, amount, seed):
        return np.asarray(weights) > 0

    w = np.array([-1.0, 2.0, 3.0, 0.0], np.float32)
    assert selectors.complement(positive)(w, 1.0, 0).tolist() == [True, False, False, True]
    both = selectors.intersection(positive, selectors.value_range(0.0, 2.5))
    assert both(w, 1.0, 0).tolist() == [False, True, False, False]
