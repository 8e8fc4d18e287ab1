"""Exact k-smallest selection in keras.ops: counts, order, tie-breaks, traced == eager."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke.core import hashing, ranking
from tests import strategies as ks
from tests.traced import compiled_variants, jax_has_x64

INT32 = (-(2**31), 2**31 - 1)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def expected(keys, eligible, k, tiebreak=None):
    """The k smallest eligible (key, tiebreak or position) pairs of each row, by sorting."""
    rows, size = keys.shape
    mask = np.zeros((rows, size), bool)
    for r in range(rows):
        second = np.arange(size) if tiebreak is None else tiebreak[r]
        order = [i for i in np.lexsort((second, keys[r])) if eligible[r, i]]
        mask[r, order[: max(int(k[r]), 0)]] = True
    return mask


@st.composite
def problems(draw, dtype="int32", with_tiebreak=None):
    # Few distinct shapes: eager JAX compiles each op (and each loop) once per shape.
    rows = draw(st.integers(1, 3))
    size = draw(st.integers(1, 8))
    bits = 32 if dtype == "int32" else 64
    full = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    # Narrow ranges make ties; the full range reaches the extremes.
    low, high = draw(st.sampled_from([(0, 2), (-3, 3), full]))
    values = st.one_of(st.integers(low, high), st.sampled_from(full))
    keys = np.array(draw(st.lists(values, min_size=rows * size, max_size=rows * size)), dtype)
    eligible = draw(ks.masks((rows, size)))
    k = np.array(draw(st.lists(st.integers(-1, size + 2), min_size=rows, max_size=rows)), "int32")
    tiebreak = None
    if with_tiebreak if with_tiebreak is not None else draw(st.booleans()):
        rows_of = st.lists(st.integers(*INT32), min_size=size, max_size=size, unique=True)
        tiebreak = np.array(draw(st.lists(rows_of, min_size=rows, max_size=rows)), "int32")
    return keys.reshape(rows, size), eligible, k, tiebreak


def check(keys, eligible, k, tiebreak, mask):
    assert mask.dtype == bool and mask.shape == keys.shape
    want = np.clip(np.minimum(k, eligible.sum(axis=1)), 0, None)
    assert mask.sum(axis=1).tolist() == want.tolist()
    assert not np.any(mask & ~eligible)
    for r in range(keys.shape[0]):
        chosen, left = keys[r][mask[r]], keys[r][eligible[r] & ~mask[r]]
        if chosen.size and left.size:
            assert chosen.max() <= left.min()
            if tiebreak is not None:
                # Among the ties at the threshold the smallest tie-breakers won.
                at = keys[r] == chosen.max()
                won, lost = tiebreak[r][mask[r] & at], tiebreak[r][eligible[r] & ~mask[r] & at]
                if lost.size:
                    assert won.max() < lost.min()
    assert np.array_equal(mask, expected(keys, eligible, k, tiebreak))


@given(problem=problems())
def test_smallest_takes_exactly_the_k_smallest_eligible(problem):
    keys, eligible, k, tiebreak = problem
    copies = [a.copy() for a in (keys, eligible, k)]
    mask = numpy(ranking.smallest(keys, eligible, k, tiebreak))
    check(keys, eligible, k, tiebreak, mask)
    for a, b in zip(copies, (keys, eligible, k)):
        assert np.array_equal(a, b)


@given(problem=problems(with_tiebreak=False), seed=ks.seeds)
def test_distinct_keys_take_the_same_entries_without_a_tie_break_pass(problem, seed):
    # Random ranks (a keyed bijection of the positions) never tie.
    _, eligible, k, _ = problem
    rows, size = eligible.shape
    keys = numpy(hashing.bits(hashing.keys_of([seed + row for row in range(rows)]), np.arange(size, dtype="int32")))
    mask = numpy(ranking.smallest(keys, eligible, k, distinct=True))
    assert np.array_equal(mask, numpy(ranking.smallest(keys, eligible, k)))
    check(keys, eligible, k, None, mask)


@pytest.mark.skipif(not jax_has_x64(), reason="int64 keys need JAX_ENABLE_X64 on JAX")
@given(problem=problems(dtype="int64"))
def test_smallest_orders_int64_keys(problem):
    keys, eligible, k, tiebreak = problem
    check(keys, eligible, k, tiebreak, numpy(ranking.smallest(keys, eligible, k, tiebreak)))


@given(problem=problems())
def test_count_is_the_number_of_true_entries_per_row(problem):
    _, eligible, _, _ = problem
    c = numpy(ranking.count(eligible))
    assert c.dtype == np.int32 and c.tolist() == eligible.sum(axis=1).tolist()


def test_examples_written_out():
    keys = np.array(
        [
            [3, -1, 3, 2**31 - 1, -(2**31), 3],
            [0, 0, 0, 0, 0, 0],
            [5, 4, 3, 2, 1, 0],
            [7, 7, 1, 7, 7, 7],
        ],
        dtype="int32",
    )
    eligible = np.array(
        [
            [True, True, True, True, False, True],
            [True, False, True, True, True, True],
            [False, False, False, False, False, False],
            [True, True, True, True, True, True],
        ]
    )
    k = np.array([3, 2, 4, 9], dtype="int32")
    # Without tie-breakers: ties go to the lowest positions.
    assert numpy(ranking.smallest(keys, eligible, k)).astype(int).tolist() == [
        [1, 1, 1, 0, 0, 0],
        [1, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
    ]
    tiebreak = np.array(
        [
            [9, 0, -5, 0, 0, -6],
            [6, 5, 4, 3, 2, 1],
            [0, 1, 2, 3, 4, 5],
            [0, 1, 2, 3, 4, 5],
        ],
        dtype="int32",
    )
    assert numpy(ranking.smallest(keys, eligible, k, tiebreak)).astype(int).tolist() == [
        [0, 1, 1, 0, 0, 1],
        [0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
    ]
    k = np.array([0, -3, 1, 2], dtype="int32")
    assert numpy(ranking.smallest(keys, eligible, k, tiebreak)).astype(int).tolist() == [
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 0, 1, 0, 0, 0],
    ]


def test_ties_broken_by_random_bits_go_uniformly():
    # 8 equal keys, 3 taken: over 2,000 keys each position is taken 750 times on average
    # (standard deviation 22), and no position is taken more often than chance allows.
    rows, size = 2000, 8
    keys = np.zeros((rows, size), "int32")
    words = np.stack([hashing.key_words(r) for r in range(rows)])
    tiebreak = hashing.bits(words, np.arange(size, dtype="int32"))
    mask = numpy(ranking.smallest(keys, np.ones((rows, size), bool), np.full(rows, 3, "int32"), tiebreak))
    assert mask.sum(axis=1).tolist() == [3] * rows
    taken = mask.sum(axis=0)
    assert np.all(np.abs(taken - 750) < 130), taken


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((np.zeros((2, 3), "float32"), np.ones((2, 3), bool), np.ones(2, "int32")), TypeError, "keys"),
        ((np.zeros(3, "int32"), np.ones(3, bool), np.ones(1, "int32")), ValueError, "keys"),
        ((np.zeros((2, 3), "int32"), np.ones((2, 2), bool), np.ones(2, "int32")), ValueError, "eligible"),
        ((np.zeros((2, 3), "int32"), np.ones((2, 3), bool), np.ones(3, "int32")), ValueError, "`k`"),
    ],
)
def test_smallest_rejects_bad_inputs(args, error, match):
    with pytest.raises(error, match=match):
        ranking.smallest(*args)


def test_smallest_rejects_bad_tiebreaks():
    keys, eligible, k = np.zeros((2, 3), "int32"), np.ones((2, 3), bool), np.ones(2, "int32")
    with pytest.raises(TypeError, match="tiebreak"):
        ranking.smallest(keys, eligible, k, np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="tiebreak"):
        ranking.smallest(keys, eligible, k, np.zeros((2, 4), "int32"))


@pytest.mark.parametrize("name, wrap", compiled_variants())
def test_compiled_selection_is_the_eager_selection(name, wrap):
    rng = np.random.default_rng(0)
    rows, size = 6, 40
    keys = rng.integers(-3, 3, size=(rows, size)).astype("int32")
    keys[0] = rng.integers(*INT32, size=size, endpoint=True)
    keys[1, :4] = INT32 * 2
    eligible = rng.random((rows, size)) < 0.7
    eligible[2] = False
    k = np.array([5, 40, 3, 0, 17, 100], "int32")
    words = np.stack([hashing.key_words(r) for r in range(rows)])

    def select(keys, eligible, k, words):
        tiebreak = hashing.bits(words, keras.ops.arange(size, dtype="int32"))
        return ranking.smallest(keys, eligible, k), ranking.smallest(keys, eligible, k, tiebreak)

    tensors = [keras.ops.convert_to_tensor(a) for a in (keys, eligible, k, words)]
    eager = [numpy(m) for m in select(*tensors)]
    traced = [numpy(m) for m in wrap(select)(*tensors)]
    for a, b in zip(eager, traced):
        assert np.array_equal(a, b), name
    check(keys, eligible, k, None, eager[0])
    check(keys, eligible, k, numpy(hashing.bits(words, np.arange(size, dtype="int32"))), eager[1])
    # No ties left to break in one batch: the conditional branch that skips the
    # tie-breakers' bisection gives the same selection.
    distinct = np.argsort(rng.random((rows, size)), axis=1).astype("int32")
    tensors[0] = keras.ops.convert_to_tensor(distinct)
    eager = [numpy(m) for m in select(*tensors)]
    traced = [numpy(m) for m in wrap(select)(*tensors)]
    assert np.array_equal(eager[0], traced[0]) and np.array_equal(eager[1], traced[1])
    assert np.array_equal(eager[0], eager[1])
    check(distinct, eligible, k, None, eager[0])
