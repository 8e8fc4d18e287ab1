"""Counter-based draws: SplitMix64's values, order independence, exact ranges and counts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke import mutators
from kerastroke.core import draws
from tests import strategies as ks

keys = st.integers(min_value=0, max_value=2**64 - 1)


def test_bits_are_splitmix64_from_the_key():
    # The first outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
    assert draws.bits(0, np.arange(3)).tolist() == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
        0x06C45D188009454F,
    ]


@given(key=keys, counters=st.lists(st.integers(0, 2**40), min_size=1, max_size=50))
def test_a_draw_depends_only_on_its_key_and_counter(key, counters):
    counters = np.array(counters, np.int64)
    together = draws.bits(key, counters)
    alone = [int(draws.bits(key, counters[i:i + 1])[0]) for i in range(len(counters))]
    assert together.tolist() == alone
    reversed_ = draws.bits(key, counters[::-1])
    assert reversed_.tolist() == together.tolist()[::-1]


def test_inputs_are_not_mutated():
    counters = np.arange(5)
    draws.bits(1, counters)
    draws.uniform(1, counters, np.float32(-1.0), np.float32(1.0))
    assert counters.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("dtype, width", [("float32", 24), ("float64", 53)])
def test_unit_draws_are_the_top_bits_of_a_draw_in_0_1(dtype, width):
    u = draws.unit(5, np.arange(100_000), dtype)
    assert u.dtype == np.dtype(dtype)
    assert 0.0 <= u.min() and u.max() < 1.0
    top = draws.bits(5, np.arange(100_000)) >> np.uint64(64 - width)
    assert np.array_equal(u.astype(np.float64) * 2.0**width, top.astype(np.float64))
    # Mean of 100,000 uniform draws: standard deviation 0.0009.
    assert abs(float(u.mean()) - 0.5) < 0.005


def test_uniform_draws_span_far_apart_bounds_without_overflow():
    big = np.finfo(np.float64).max
    values = draws.uniform(2, np.arange(10_000), -big, big)
    assert np.all(np.isfinite(values))
    assert values.min() < -big / 2 and values.max() > big / 2


@given(key=keys, size=st.integers(1, 2**63))
def test_below_stays_below_size(key, size):
    x = draws.below(key, np.arange(64), size)
    assert x.dtype == np.uint64
    assert np.all(x < np.uint64(size))


def test_below_rejects_draws_past_the_last_whole_multiple():
    # With size 3 * 2**62 only draws below 3 * 2**62 are kept: a quarter are
    # rejected, where a plain modulo would make 0 .. 2**62 twice as likely.
    size = 3 * 2**62
    kept = draws.below(11, np.arange(40_000), size)
    assert 29_000 < kept.size < 31_000  # Binomial(40000, 3/4): sd 87
    thirds = np.bincount((kept // np.uint64(2**62)).astype(np.int64), minlength=3)
    assert all(9_400 < t < 10_600 for t in thirds), thirds


@given(key=keys, size=st.integers(1, 300), data=st.data())
def test_distinct_marks_exactly_want_positions(key, size, data):
    want = data.draw(st.integers(0, size))
    mask = draws.distinct(size, want, key)
    assert mask.shape == (size,) and mask.dtype == bool
    assert int(mask.sum()) == want
    assert np.array_equal(mask, draws.distinct(size, want, key))


def test_distinct_is_uniform_over_positions():
    # 2 of 5 over 5000 keys: each count is Binomial(5000, 2/5), mean 2000, sd 35.
    counts = sum(draws.distinct(5, 2, key).astype(int) for key in range(5000))
    assert all(1800 < c < 2200 for c in counts), counts


def test_distinct_rejects_impossible_counts():
    with pytest.raises(ValueError, match="Cannot pick 4 distinct positions of 3"):
        draws.distinct(3, 4, 0)


@ks.examples(0.5)
@given(seed=ks.seeds, data=st.data())
def test_uniform_values_belong_to_positions_not_to_the_mask(seed, data):
    w = np.zeros(40, np.float32)
    first = data.draw(ks.masks(w.shape), label="first")
    second = data.draw(ks.masks(w.shape), label="second")
    mutate = mutators.uniform(-1.0, 1.0)
    a, b = mutate(w, first, seed), mutate(w, second, seed)
    both = first & second
    assert np.array_equal(a[both], b[both])
