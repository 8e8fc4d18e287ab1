"""Pieces for sparse training and re-initialisation: magnitude selectors,
drop-and-grow, initializer-based mutators and the research schedules."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kerastroke import mutators, schedules, selectors

finite_f32 = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=8),
    elements=st.floats(-10, 10, width=32),
)


# -- smallest_magnitude ------------------------------------------------------


@given(finite_f32, st.floats(0, 1), st.integers(0, 2**20))
def test_smallest_magnitude_picks_exact_count_of_smallest(w, amount, seed):
    mask = selectors.smallest_magnitude()(w, amount, seed)
    k = round(amount * w.size)
    assert mask.shape == w.shape and mask.dtype == bool
    assert int(mask.sum()) == k
    if 0 < k < w.size:
        # Every picked entry is at most as large as every entry left out.
        assert np.abs(w[mask]).max() <= np.abs(w[~mask]).min()


@given(
    hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(width=32, allow_nan=True)),
    st.floats(0, 1),
)
def test_smallest_magnitude_never_picks_nan_or_inf(w, amount):
    mask = selectors.smallest_magnitude()(w, amount, 0)
    assert not mask[~np.isfinite(w)].any()
    assert int(mask.sum()) == round(amount * np.isfinite(w).sum())


@given(finite_f32, st.floats(0, 1), st.floats(0, 1))
def test_smallest_magnitude_masks_are_nested(w, a, b):
    """Once pruned to zero, entries rank first: a larger amount keeps them all."""
    assume((w != 0).all())  # zeros already present would tie with the pruned ones
    low, high = sorted((a, b))
    first = selectors.smallest_magnitude()(w, low, 1)
    pruned = np.where(first, np.float32(0), w)
    second = selectors.smallest_magnitude()(pruned, high, 2)
    assert not (first & ~second).any()


def test_smallest_magnitude_example():
    w = np.array([0.5, -0.1, 0.02, -0.9, 0.3], "float32")
    assert selectors.smallest_magnitude()(w, 0.4, seed=0).tolist() == [False, True, True, False, False]
    assert selectors.smallest_magnitude()(w, 0.8, seed=0).tolist() == [True, True, True, False, True]


def test_smallest_magnitude_breaks_ties_at_random_with_exact_count():
    w = np.array([0.1, 0.1, 0.1, 0.1, 5.0], "float32")
    picks = {tuple(selectors.smallest_magnitude()(w, 0.4, seed).tolist()) for seed in range(40)}
    assert all(sum(p) == 2 and not p[4] for p in picks)
    assert len(picks) > 3  # several of the six tie-breaks occur


def test_smallest_magnitude_among_restricts_eligibility():
    w = np.array([0.0, 0.0, 0.3, -0.2, 0.9], "float32")
    active = selectors.complement(selectors.value_range(0.0, 0.0))
    mask = selectors.smallest_magnitude(among=active)(w, 1 / 3, seed=0)
    assert mask.tolist() == [False, False, False, True, False]


# -- smallest_units ----------------------------------------------------------


def test_smallest_units_picks_whole_columns_by_norm():
    w = np.array([[1.0, 0.1, -3.0, 0.0], [1.0, 0.0, 2.0, 0.2]], "float32")
    mask = selectors.smallest_units()(w, 0.5, seed=0)
    assert mask.tolist() == [[False, True, False, True], [False, True, False, True]]
    l1 = selectors.smallest_units(order=1)(w, 0.25, seed=0)
    assert l1[:, 1].all() and not l1[:, [0, 2, 3]].any()


@given(finite_f32, st.floats(0, 1))
def test_smallest_units_counts_units(w, amount):
    mask = selectors.smallest_units()(w, amount, 4)
    units = w.reshape(-1, w.shape[-1])
    picked = mask.reshape(-1, w.shape[-1])
    assert (picked.all(axis=0) | ~picked.any(axis=0)).all()  # whole units only
    assert int(picked.all(axis=0).sum()) == round(amount * units.shape[1])


def test_smallest_units_rejects_other_orders():
    with pytest.raises(ValueError, match="order"):
        selectors.smallest_units(order=3)


# -- drop_and_grow -----------------------------------------------------------


@given(
    hnp.arrays(np.float32, st.integers(2, 40), elements=st.sampled_from([0.0, 0.5, -0.25, 1.0, -2.0, 0.01])),
    st.floats(0, 1),
    st.integers(0, 1000),
)
def test_drop_and_grow_keeps_the_number_of_nonzeros(w, amount, seed):
    mask = selectors.drop_and_grow()(w, amount, seed)
    active, empty = w != 0, w == 0
    k = min(round(amount * active.sum()), empty.sum())
    assert int((mask & active).sum()) == k
    assert int((mask & empty).sum()) == k
    new = mutators.drop_and_grow(grow=mutators.constant(7.0))(w, mask, seed)
    assert int((new != 0).sum()) == int(active.sum())
    assert (new[~mask] == w[~mask]).all()
    assert (new[mask & active] == 0).all() and (new[mask & empty] == 7.0).all()


def test_drop_and_grow_drops_the_smallest_active():
    w = np.array([0.0, 0.9, 0.0, -0.05, 0.4, 0.0], "float32")
    mask = selectors.drop_and_grow()(w, 0.34, seed=3)
    assert mask[3] and not mask[1] and not mask[4]
    assert int(mask[[0, 2, 5]].sum()) == 1


def test_drop_and_grow_mutator_never_grows_an_exact_zero():
    w = np.zeros(4, "float32")
    new = mutators.drop_and_grow(grow=mutators.constant(0.0))(w, np.ones(4, bool), 0)
    assert (new != 0).all()


# -- re-initialising mutators ------------------------------------------------


def test_normal_draws_only_under_the_mask_and_repeats_with_the_seed():
    w = np.full((50, 40), 3.0, "float32")
    mask = np.zeros_like(w, dtype=bool)
    mask[::2] = True
    a = mutators.normal(0.1)(w, mask, 5)
    b = mutators.normal(0.1)(w, mask, 5)
    assert np.array_equal(a, b)
    assert (a[~mask] == 3.0).all()
    assert abs(float(a[mask].std()) - 0.1) < 0.01 and abs(float(a[mask].mean())) < 0.01


def test_initializer_draws_from_the_given_initializer():
    w = np.zeros((3, 3), "float32")
    mask = np.eye(3, dtype=bool)
    assert mutators.initializer("ones")(w, mask, 0).tolist() == np.eye(3).tolist()
    drawn = mutators.initializer("glorot_uniform")(np.zeros((64, 64), "float32"), np.ones((64, 64), bool), 1)
    limit = math.sqrt(6 / 128)
    assert np.abs(drawn).max() <= limit and np.abs(drawn).max() > limit / 2


def test_initializer_without_one_says_how_to_get_one():
    with pytest.raises(ValueError, match="initializer"):
        mutators.initializer()(np.zeros(2, "float32"), np.ones(2, bool), 0)
    bound = mutators.initializer().with_default_initializer("ones")
    assert bound.initializer == "ones"
    assert mutators.initializer("zeros").with_default_initializer("ones").initializer == "zeros"


def test_shrink_perturb_formula():
    sp = mutators.shrink_perturb(0.5, 2.0, initializer="ones")
    w = np.array([4.0, -2.0, 8.0], "float32")
    assert sp(w, np.array([True, True, False]), 0).tolist() == [4.0, 1.0, 8.0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: mutators.normal(-1.0), "stddev"),
        (lambda: mutators.normal(float("nan")), "stddev"),
        (lambda: mutators.shrink_perturb(1.5, 0.1), "shrink"),
        (lambda: mutators.shrink_perturb(0.5, -0.1), "perturb"),
        (lambda: mutators.initializer(3), "initializer"),
        (lambda: schedules.polynomial(0.0, 0.5, 10, 10), "end"),
        (lambda: schedules.polynomial(0.0, 1.5, 0, 10), "final"),
        (lambda: schedules.cosine(0.3, 0), "end"),
        (lambda: schedules.every(schedules.constant(), 0), "n"),
        (lambda: schedules.every(3, 2), "schedule"),
    ],
)
def test_bad_parameters_are_rejected_naming_them(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# -- research schedules ------------------------------------------------------


def test_polynomial_follows_the_tfmot_formula():
    s = schedules.polynomial(0.1, 0.9, begin=10, end=20, power=3)
    assert s(9) == 0.0
    assert s(10) == pytest.approx(0.1)
    assert s(15) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5**3)
    assert s(20) == pytest.approx(0.9) and s(1000) == pytest.approx(0.9)


@given(st.integers(0, 10**6))
def test_polynomial_stays_within_its_bounds(step):
    s = schedules.polynomial(0.2, 0.7, begin=5, end=500, power=2)
    value = s(step)
    assert value == 0.0 if step < 5 else 0.2 <= value <= 0.7 + 1e-12


def test_cosine_decays_to_zero_at_its_end():
    s = schedules.cosine(0.3, end=4)
    assert [round(s(step), 4) for step in range(6)] == [0.3, 0.2561, 0.15, 0.0439, 0.0, 0.0]


def test_every_applies_on_its_period_only():
    s = schedules.every(schedules.constant(0.5), 3, offset=1)
    assert [s(step) for step in range(8)] == [0.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5]
