"""Schedules: exact formulas (huge steps and rates included), cutoffs, purity, bad input."""

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke import schedules
from tests import strategies as ks

steps = st.one_of(
    st.integers(0, 100),
    st.integers(0, 2000),
    st.integers(0, 2**64),
    st.integers(2**64, 2**1100),
    st.just(10**400),
)
fractions = st.floats(0.0, 1.0)
rates = st.one_of(
    st.floats(0.0, 2.0),
    st.floats(0.0, 1e300),
    st.sampled_from([0.0, 0.5, 1.0, 1.0 + 2**-52, 1.0 - 2**-53, 2.0, 10.0, 1.7e308]),
)


def _formula(initial, rate, step):
    """min(1, initial * rate**step) as plain Python floats; None where that raises."""
    try:
        return min(1.0, initial * rate**step)
    except OverflowError:
        return None


@ks.examples(7.5)
@given(initial=fractions, rate=rates, step=steps)
def test_decay_follows_its_formula_for_every_step_and_rate(initial, rate, step):
    amount = schedules.decay(initial, rate)(step)

    assert isinstance(amount, float)
    assert 0.0 <= amount <= 1.0
    direct = _formula(initial, rate, step)
    if direct is not None:
        assert amount == direct
    if step <= 2000:
        # Exact rational arithmetic, where the float formula has no answer too.
        exact = Fraction(initial) * Fraction(rate) ** step
        if exact >= 1:
            assert amount == 1.0
        else:
            assert math.isclose(amount, float(exact), rel_tol=1e-9, abs_tol=1e-300)
    elif direct is None:
        # rate**step is beyond a float (or the step is): compare in logarithms.
        if initial == 0.0 or rate == 0.0:
            assert amount == 0.0
        elif rate == 1.0:
            assert amount == initial
        elif rate < 1.0:
            assert amount == 0.0
        else:
            log_amount = math.log(initial) + float(min(step, 2**64)) * math.log(rate)
            if log_amount > 1e-9:
                assert amount == 1.0
            else:
                assert math.isclose(amount, math.exp(log_amount), rel_tol=1e-9)


def test_decay_examples():
    assert [schedules.decay(0.5, 0.5)(s) for s in range(5)] == [0.5, 0.25, 0.125, 0.0625, 0.03125]
    assert [schedules.decay(0.1, 2.0)(s) for s in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [schedules.decay(0.25, 1.0)(s) for s in (0, 1, 10**400)] == [0.25, 0.25, 0.25]
    assert [schedules.decay(0.5, 0.0)(s) for s in (0, 1, 2)] == [0.5, 0.0, 0.0]
    assert schedules.decay(0.0, 10.0)(10**6) == 0.0
    assert schedules.decay(1.0, 0.9)(0) == 1.0
    # Huge steps and rates: no OverflowError, and the formula's value.
    assert schedules.decay(0.05, 10.0)(10**6) == 1.0
    assert schedules.decay(0.05, 1.7e308)(2) == 1.0
    assert schedules.decay(0.05, 0.5)(10**400) == 0.0
    assert schedules.decay(0.05, 2.0)(10**400) == 1.0
    # 2**-1074 * 2**1030 = 2**-44, although 2.0**1030 overflows a float.
    assert math.isclose(schedules.decay(5e-324, 2.0)(1030), 2.0**-44, rel_tol=1e-12)


@given(value=fractions, step=steps)
def test_constant_gives_its_value_at_every_step(value, step):
    assert schedules.constant(value)(step) == value
    assert schedules.constant()(step) == 1.0


def _inner_schedules():
    return st.one_of(
        fractions.map(schedules.constant),
        st.tuples(fractions, st.floats(0.0, 3.0)).map(lambda args: schedules.decay(*args)),
        st.just(lambda step: 0.5 / (1 + step)),
    )


@ks.examples(2.5)
@given(
    inner=_inner_schedules(),
    cut=st.one_of(st.none(), st.integers(-1, 50)),
    step=st.integers(0, 100),
)
def test_cutoff_gives_zero_from_its_step_on_and_never_with_none_or_minus_one(inner, cut, step):
    amount = schedules.cutoff(inner, cut)(step)
    if cut is not None and cut != -1 and step >= cut:
        assert amount == 0.0
    else:
        assert amount == inner(step)


@ks.examples(1.25)
@given(
    inner=_inner_schedules(),
    cut=st.integers(-1, 20),
    visits=st.lists(st.integers(0, 40), max_size=20),
)
def test_schedules_depend_on_the_step_only(inner, cut, visits):
    # Same values whatever order the steps are asked in: no hidden state.
    schedule = schedules.cutoff(inner, cut)
    forwards = [schedule(step) for step in visits]
    backwards = [schedule(step) for step in reversed(visits)][::-1]
    fresh = [schedules.cutoff(inner, cut)(step) for step in visits]
    assert forwards == backwards == fresh


def test_cutoff_examples():
    three = schedules.cutoff(schedules.constant(1.0), 3)
    assert [three(s) for s in range(5)] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert [schedules.cutoff(schedules.constant(0.3), 0)(s) for s in range(3)] == [0.0, 0.0, 0.0]
    two = schedules.cutoff(schedules.decay(0.4, 0.5), 2)
    assert [two(s) for s in range(4)] == [0.4, 0.2, 0.0, 0.0]
    for never in (None, -1):
        assert schedules.cutoff(schedules.constant(0.7), never)(10**9) == 0.7
    assert schedules.cutoff(schedules.constant(0.7)).steps is None
    inner = schedules.constant(0.7)
    assert schedules.cutoff(inner, -1) == schedules.cutoff(inner, None)


@pytest.mark.parametrize(
    "make, error, shown",
    [
        (lambda: schedules.constant(1.5), ValueError, "value=1.5"),
        (lambda: schedules.constant(-0.1), ValueError, "value=-0.1"),
        (lambda: schedules.constant(float("nan")), ValueError, "value=nan"),
        (lambda: schedules.constant(True), TypeError, "value=True"),
        (lambda: schedules.constant("1"), TypeError, "value='1'"),
        (lambda: schedules.decay(1.01, 0.5), ValueError, "initial=1.01"),
        (lambda: schedules.decay(-0.5, 0.5), ValueError, "initial=-0.5"),
        (lambda: schedules.decay(float("nan"), 0.5), ValueError, "initial=nan"),
        (lambda: schedules.decay(0.5, -0.1), ValueError, "rate=-0.1"),
        (lambda: schedules.decay(0.5, float("nan")), ValueError, "rate=nan"),
        (lambda: schedules.decay(0.5, float("inf")), ValueError, "rate=inf"),
        (lambda: schedules.decay(False, 0.5), TypeError, "initial=False"),
        (lambda: schedules.decay(0.5, "0.9"), TypeError, "rate='0.9'"),
        (lambda: schedules.cutoff(0.5, 3), TypeError, "schedule=0.5"),
        (lambda: schedules.cutoff(None, 3), TypeError, "schedule=None"),
        (lambda: schedules.cutoff(schedules.constant(), -2), ValueError, "steps=-2"),
        (lambda: schedules.cutoff(schedules.constant(), 2.5), TypeError, "steps=2.5"),
        (lambda: schedules.cutoff(schedules.constant(), True), TypeError, "steps=True"),
        (lambda: schedules.cutoff(schedules.constant(), "3"), TypeError, "steps='3'"),
    ],
)
def test_bad_parameters_are_rejected_at_construction(make, error, shown):
    with pytest.raises(error) as info:
        make()
    assert shown in str(info.value)


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.constant(0.5),
        schedules.decay(0.5, 0.9),
        schedules.cutoff(schedules.constant(0.5), 3),
    ],
)
@pytest.mark.parametrize(
    "step, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError), (None, TypeError)]
)
def test_bad_steps_are_rejected_naming_the_step(schedule, step, error):
    with pytest.raises(error, match="step") as info:
        schedule(step)
    assert repr(step) in str(info.value)
