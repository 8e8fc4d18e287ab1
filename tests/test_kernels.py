"""Compiled loops: the same bits and counts as the pure pieces they stand in for."""

import keras
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kerastroke import Rule, mutators, schedules, selectors
from kerastroke.accel import kernels
from kerastroke.core import draws
from kerastroke.engine import sparsity
from kerastroke.engine import writer as write
from tests import strategies as ks

pytestmark = pytest.mark.skipif(not kernels.available(), reason="Numba is a dependency; it must import")


def pure(function, *args, **kwargs):
    """`function(*args, **kwargs)` with the compiled loops switched off."""
    kernels.enabled = False
    try:
        return function(*args, **kwargs)
    finally:
        kernels.enabled = True


@st.composite
def compiled_rules(draw, weights):
    """A rule the loops run, with its amount: random_fraction up to one half
    (above it `choose` draws the complement), or value_range at amount 1."""
    dtype = str(weights.dtype)
    if draw(st.booleans()):
        low, high = draw(ks.bounds_near(weights))
        selector, amount = selectors.value_range(low, high), 1.0
    else:
        selector, amount = selectors.random_fraction(), draw(st.floats(0.0, 0.5))
        assume(2 * round(amount * weights.size) <= weights.size)  # e.g. 2 of 3 rounds above one half
    if draw(st.booleans()):
        low = draw(st.floats(-2.0, 2.0))
        mutator = mutators.uniform(low, low + draw(st.floats(1e-3, 2.0)))
    else:
        limit = float(np.finfo(dtype).max)
        mutator = mutators.constant(draw(st.one_of(st.just(0.0), st.floats(-limit, limit))))
    return Rule(selector, mutator, schedules.constant(amount)), amount


def _write(weights, rule, amount, seed):
    variable = keras.Variable(weights)
    zeros = {}
    changed = write.write_model(
        [variable], lambda v: [rule], 0, lambda v: seed, seed, [amount], zeros=zeros
    )
    return keras.ops.convert_to_numpy(variable), changed, zeros.get(id(variable))


@ks.examples(2)
@given(data=st.data(), weights=ks.weight_arrays(dtypes=kernels.DTYPES), seed=ks.seeds)
def test_compiled_rules_write_the_bits_and_counts_of_the_pure_pieces(data, weights, seed):
    rule, amount = data.draw(compiled_rules(weights), label="rule")
    new, changed, zeros = _write(weights, rule, amount, seed)
    expected, expected_changed = pure(write.apply_rules, weights, [rule], 0, seed, rule_amounts=[amount])
    # A variable whose values did not change is not written (a -0.0 made 0.0 stays -0.0).
    expected = ks.to_numpy(expected) if expected_changed else weights
    assert np.array_equal(ks.bits(new), ks.bits(expected))
    assert changed == expected_changed
    # The writer counts the zeros it wrote; at amount 0 the rule does not run.
    assert zeros == (int(np.count_nonzero(expected == 0)) if amount else None)
    # The writer's own composed path (no loops) agrees too.
    composed, composed_changed, _ = pure(_write, weights, rule, amount, seed)
    assert np.array_equal(ks.bits(new), ks.bits(composed)) and changed == composed_changed


@given(seed=ks.seeds, data=st.data())
def test_the_compiled_path_runs_for_built_in_rules(seed, data):
    weights = data.draw(ks.weight_arrays(dtypes=kernels.DTYPES, allow_nan=False), label="weights")
    rule, amount = data.draw(compiled_rules(weights), label="rule")
    variable = keras.Variable(weights)
    assert write._compiled(variable, rule, 0, amount, seed) is not None


@pytest.mark.parametrize(
    "rule, amount, dtype",
    [
        (Rule(selectors.random_fraction(), mutators.zero()), 0.75, "float32"),  # the complement is drawn
        (Rule(selectors.value_range(-1, 1), mutators.zero()), 0.5, "float32"),  # a random part of a range
        (Rule(selectors.random_fraction(), mutators.normal(0.0, 1.0)), 0.1, "float32"),  # another mutator
        (Rule(selectors.random_fraction(), mutators.zero()), 0.1, "float16"),  # no float16 arithmetic
    ],
)
def test_other_rules_fall_back_to_the_pure_pieces(rule, amount, dtype):
    variable = keras.Variable(np.linspace(-2, 2, 64, dtype=dtype).reshape(8, 8))
    before = keras.ops.convert_to_numpy(variable)
    assert write._compiled(variable, rule, 0, amount, 5) is None
    assert np.array_equal(keras.ops.convert_to_numpy(variable), before)  # nothing written


@given(key=st.integers(0, 2**64 - 1), size=st.integers(1, 2000), data=st.data())
def test_distinct_marks_are_the_positions_of_draws_distinct(key, size, data):
    want = data.draw(st.integers(0, size // 2))
    marks = kernels.distinct_marks(size, want, key)
    assert marks.dtype == np.uint64 and marks.size == (size + 63) // 64
    assert np.array_equal(kernels.unpack(marks, size), draws.distinct(size, want, key))


def _marks_with_limit(size, want, key, limit):
    """draws.distinct's rounds written out, rejecting draws >= `limit`."""
    hits, have, round_ = np.zeros(size, bool), 0, 0
    while have < want:
        x = draws.bits(draws.round_key(key, round_), np.arange(want - have))
        hits[(x[x < np.uint64(limit)] % np.uint64(size)).astype(np.int64)] = True
        have, round_ = int(hits.sum()), round_ + 1
    return hits


@given(key=st.integers(0, 2**64 - 1), size=st.integers(1, 500), data=st.data())
def test_distinct_marks_skip_the_rejected_draws(key, size, data):
    # Rejections are rare at sizes a test can hold (size / 2**64 of the draws):
    # a limit of 2**63 rejects half, through the same branch.
    want = data.draw(st.integers(0, size // 2))
    marks = kernels._compiled().distinct_marks(size, want, np.uint64(key), np.uint64(2**63))
    assert np.array_equal(kernels.unpack(marks, size), _marks_with_limit(size, want, key, 2**63))


@pytest.mark.parametrize("rule", [
    Rule(selectors.random_fraction(), mutators.uniform(-1.0, 1.0), schedules.constant(0.3)),
    Rule(selectors.value_range(-0.5, 0.5), mutators.uniform(-1.0, 1.0)),
    Rule(selectors.value_range(-0.5, 0.5), mutators.zero()),
])
def test_splitting_the_work_between_threads_changes_no_bit(rule, monkeypatch):
    # 200,003 entries (odd, not a multiple of 64) in parts of at least 1,000.
    weights = np.random.default_rng(0).uniform(-1, 1, 200_003).astype(np.float32)
    amount = rule.schedule(0)
    whole = _write(weights, rule, amount, 11)
    monkeypatch.setattr(kernels, "_MIN_PART", 1000)
    monkeypatch.setattr(kernels, "_cores", lambda: 7)
    split = _write(weights, rule, amount, 11)
    assert np.array_equal(ks.bits(whole[0]), ks.bits(split[0])) and whole[1:] == split[1:]
    expected = pure(_write, weights, rule, amount, 11)
    assert np.array_equal(ks.bits(whole[0]), ks.bits(expected[0])) and whole[1] == expected[1]


def test_a_stroke_example_with_written_out_counts():
    # 10,000 zeros, a quarter stroked to 0.5: exactly 2,500 change, 7,500 stay zero.
    rule = Rule(selectors.random_fraction(), mutators.constant(0.5))
    new, changed, zeros = _write(np.zeros((100, 100), np.float32), rule, 0.25, 3)
    assert (changed, zeros) == (2500, 7500)
    assert int(np.count_nonzero(new == 0.5)) == 2500


def test_a_pruning_example_with_written_out_values():
    weights = np.array([[-0.3, -0.2, -0.1], [0.0, np.nan, 0.05], [np.inf, -np.inf, 0.2]], np.float32)
    rule = Rule(selectors.value_range(-0.25, 0.1), mutators.zero())
    new, changed, zeros = _write(weights, rule, 1.0, 0)
    expected = np.array([[-0.3, 0.0, 0.0], [0.0, np.nan, 0.0], [np.inf, -np.inf, 0.2]], np.float32)
    assert np.array_equal(new, expected, equal_nan=True)
    assert (changed, zeros) == (3, 4)  # -0.2, -0.1 and 0.05; 0.0 was zero already


def test_a_mutator_error_is_the_pure_pieces_error_and_writes_nothing():
    # 0.1 is no float32 value, so no float32 value lies in [0.1, 0.1].
    rule = Rule(selectors.random_fraction(), mutators.uniform(0.1, 0.1), schedules.constant(0.5))
    weights = np.ones((4, 4), np.float32)
    for run in (lambda f: f(), lambda f: pure(f)):
        variable = keras.Variable(weights)
        with pytest.raises(ValueError, match=r"No float32 value lies in \[low, high\]") as error:
            run(lambda: write.write_model([variable], lambda v: [rule], 0, lambda v: 1, 1, [0.5]))
        assert "rule 0 (mutator=Uniform(low=0.1, high=0.1)) failed on variable" in str(error.value.__notes__)
        assert np.array_equal(keras.ops.convert_to_numpy(variable), weights)


@pytest.mark.parametrize("low", [-0.0, -1e-50])  # -1e-50 rounds to -0.0 in float32
def test_a_draw_of_zero_above_a_negative_zero_bound_stays_positive_zero(low):
    # A draw of +0.0 against a lower bound of -0.0 is inside the bounds and
    # kept as drawn, on both paths (np.maximum may return the -0.0 bound).
    rule = Rule(selectors.random_fraction(), mutators.uniform(low, 1e-44), schedules.constant(0.5))
    weights = np.ones(4096, np.float32)
    compiled, composed = _write(weights, rule, 0.5, 7), pure(_write, weights, rule, 0.5, 7)
    assert np.array_equal(ks.bits(compiled[0]), ks.bits(composed[0]))
    assert not np.any(np.signbit(compiled[0]))


def test_subnormals_are_not_zeros_on_either_path():
    # TensorFlow's CPU kernels compare a subnormal as zero; the counts must not.
    weights = np.full(100, 1e-40, np.float32)
    weights[:10] = 1.0
    rule = Rule(selectors.value_range(0.5, 2.0), mutators.zero())
    for run in (lambda f: f(), pure):
        variable = keras.Variable(weights)
        model_zeros = {}
        write.write_model([variable], lambda v: [rule], 0, lambda v: 1, 1, [1.0], zeros=model_zeros)
        assert sparsity.zeros_and_size(variable, model_zeros.get(id(variable))) == (10, 100)
        assert sparsity.zeros_and_size(variable) == (10, 100)


def test_when_nothing_is_selected_bounds_no_dtype_holds_raise_on_neither_path():
    # No float32 value lies in [1e-50, 2e-50]; with nothing selected no value is needed.
    rule = Rule(selectors.value_range(5.0, 6.0), mutators.uniform(1e-50, 2e-50))
    weights = np.zeros(10, np.float32)
    assert _write(weights, rule, 1.0, 0)[1] == 0
    assert pure(_write, weights, rule, 1.0, 0)[1] == 0
