"""Selection over unit scores: `selectors.lowest` and `selectors.lowest_count`.

Exact counts, only eligible scores, the lowest first, random ties, seeds,
tracing under each backend's compiler, and bad parameters."""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke import selectors
from kerastroke.core import hashing, seeds
from tests import strategies as ks


def _wide(scores):
    return np.asarray(scores).astype(np.float64)


def _check_lowest(scores, mask, eligible, k):
    """`mask` picks exactly k eligible scores, and none above an unpicked eligible one."""
    wide = _wide(scores)
    mask = np.asarray(mask)
    assert mask.shape == wide.shape and mask.dtype == bool
    assert int(mask.sum()) == k
    assert not (mask & ~eligible).any()
    if mask.any() and (eligible & ~mask).any():
        assert wide[mask].max() <= wide[eligible & ~mask].min()


@ks.examples(1.0)
@given(
    scores=ks.weight_arrays(min_dims=0, min_side=0),
    amount=ks.amounts,
    seed=ks.seeds,
    backend=ks.on_backend,
)
def test_lowest_picks_exactly_round_amount_of_the_finite_scores_lowest_first(scores, amount, seed, backend):
    given_scores = ks.as_input(scores, backend)
    mask = selectors.lowest()(given_scores, amount, seed)
    ks.check_kind(mask, given_scores)
    eligible = np.isfinite(_wide(scores))
    _check_lowest(scores, ks.to_numpy(mask), eligible, round(amount * int(eligible.sum())))


# Unit scores are a vector per layer: 1-D here, few shapes (JAX compiles each one).
_VECTORS = dict(shape=st.integers(1, 12).map(lambda n: (n,)))


@ks.examples(1.0)
@given(data=st.data(), scores=ks.weight_arrays(**_VECTORS), amount=ks.amounts, seed=ks.seeds)
def test_lowest_with_a_threshold_picks_among_the_scores_at_or_below_it(data, scores, amount, seed):
    low, threshold = data.draw(ks.bounds_near(scores))
    mask = selectors.lowest(threshold)(scores, amount, seed)
    wide = _wide(scores)
    with np.errstate(invalid="ignore"):
        eligible = np.isfinite(wide) & (wide <= threshold)
    _check_lowest(scores, mask, eligible, round(amount * int(eligible.sum())))
    if amount == 1.0:
        assert np.array_equal(mask, eligible)


@ks.examples(1.0)
@given(
    scores=ks.weight_arrays(dtypes=("float32",), **_VECTORS),
    k=st.integers(0, 600),
    seed=ks.seeds,
    data=st.data(),
)
def test_lowest_count_picks_min_k_eligible_among_the_given_ones(scores, k, seed, data):
    eligible = data.draw(ks.masks(scores.shape))
    mask = ks.to_numpy(selectors.lowest_count(scores, k, seed, eligible))
    allowed = eligible & np.isfinite(scores)
    _check_lowest(scores, mask, allowed, min(k, int(allowed.sum())))


@ks.examples(0.5)
@given(scores=ks.weight_arrays(**_VECTORS), amount=ks.amounts, seed=ks.seeds, backend=ks.on_backend)
def test_same_seed_same_mask_and_inputs_untouched(scores, amount, seed, backend):
    kept = ks.bits(scores).copy()
    given_scores = ks.as_input(scores, backend)
    first = ks.to_numpy(selectors.lowest()(given_scores, amount, seed))
    second = ks.to_numpy(selectors.lowest()(given_scores, amount, seed))
    assert np.array_equal(first, second)
    assert np.array_equal(ks.bits(scores), kept)


def test_ties_are_broken_at_random_and_evenly():
    scores = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "float32")
    # 600 seeds in one batch (row r drawn with seed r); a few rows are
    # checked against calls on one tensor.
    masks = np.asarray(keras.ops.convert_to_numpy(
        selectors.lowest().select_batch(np.tile(scores, (600, 1)), 0.25, hashing.keys_of(range(600)))
    ))
    for seed in (0, 1, 599):
        assert masks[seed].tolist() == np.asarray(selectors.lowest()(scores, 0.25, seed)).tolist()
    assert (masks.sum(axis=1) == 2).all() and not masks[:, [0, 7]].any()  # 2 of 8
    counts = masks.sum(axis=0)
    picks = {tuple(mask.tolist()) for mask in masks}
    assert len(picks) == 15  # every pair of the six tied zeros
    # Each tied entry is picked with probability 1/3: 200 of 600 expected.
    assert (np.abs(counts[1:7] - 200) < 60).all(), counts


def test_negative_zero_ties_with_zero_and_subnormals_rank_above_it():
    tiny = np.finfo(np.float32).smallest_subnormal
    scores = np.array([tiny, -0.0, 0.0, 1.0], "float32")
    masks = {tuple(np.asarray(selectors.lowest()(scores, 0.25, seed)).tolist()) for seed in range(40)}
    assert masks == {(False, True, False, False), (False, False, True, False)}
    assert np.asarray(selectors.lowest()(scores, 0.75, 0)).tolist() == [True, True, True, False]


def test_lowest_count_traces_with_a_tensor_k():
    scores = np.array([0.2, 0.0, 0.0, 0.7, 0.0, 0.1], "float32")
    eager = np.asarray(selectors.lowest_count(scores, 2, 9))
    k = keras.ops.convert_to_tensor(2, "int32")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        traced = jax.jit(lambda s, k: selectors.lowest_count(s, k, 9))(scores, k)
    elif backend == "tensorflow":
        import tensorflow as tf

        traced = tf.function(lambda s, k: selectors.lowest_count(s, k, 9), jit_compile=True)(tf.constant(scores), k)
    else:
        pytest.skip("PyTorch: kerastroke runs its applications eagerly there, so nothing is traced")
    assert np.array_equal(ks.to_numpy(traced), eager)
    assert eager.sum() == 2 and not eager[[0, 3, 5]].any()


def test_examples_written_out():
    scores = np.array([0.0, 1.3, 0.05, 2.0, 0.0], "float32")
    assert selectors.lowest(0.1)(scores, 1.0, 0).tolist() == [True, False, True, False, True]
    assert selectors.lowest(0.0)(scores, 1.0, 0).tolist() == [True, False, False, False, True]
    assert selectors.lowest()(scores, 0.0, 0).tolist() == [False] * 5
    assert selectors.lowest()(scores, 1.0, 0).tolist() == [True] * 5
    nan = np.array([np.nan, 0.5, -np.inf, 0.1], "float32")
    assert selectors.lowest()(nan, 1.0, 0).tolist() == [False, True, False, True]
    assert selectors.lowest(np.inf)(nan, 1.0, 0).tolist() == [False, True, False, True]


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: selectors.lowest(float("nan")), ValueError),
        (lambda: selectors.lowest("0.1"), TypeError),
        (lambda: selectors.lowest()(np.zeros(3, "float32"), 1.5, 0), ValueError),
    ],
)
def test_bad_parameters_are_rejected_naming_them(make, error):
    with pytest.raises(error, match="threshold|amount"):
        make()
