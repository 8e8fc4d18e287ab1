"""Rule validation, and the config round trip of every built-in piece."""

import json
import math

import attrs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke import Rule, mutators, schedules, selectors
from kerastroke.core import serialization
from tests import strategies as ks

# The modules whose registered pieces this file answers for.
_BUILT_IN_MODULES = {
    "kerastroke.selectors",
    "kerastroke.mutators",
    "kerastroke.schedules.basic",
}

_fractions = st.floats(0.0, 1.0)
_finite = st.floats(-10.0, 10.0)


def _ordered(values):
    return st.tuples(values, values).map(sorted)


_schedule_pieces = st.recursive(
    st.one_of(
        _fractions.map(schedules.constant),
        st.tuples(_fractions, st.floats(0.0, 1e6)).map(lambda args: schedules.decay(*args)),
    ),
    lambda inner: st.tuples(inner, st.one_of(st.none(), st.integers(-1, 10**6))).map(
        lambda args: schedules.cutoff(*args)
    ),
    max_leaves=3,
)
_mutator_pieces = st.one_of(
    _ordered(_finite).map(lambda bounds: mutators.uniform(*bounds)),
    _finite.map(mutators.constant),
    st.just(mutators.zero()),
)
_selector_pieces = st.recursive(
    st.one_of(
        st.just(selectors.random_fraction()),
        _ordered(st.floats(allow_nan=False)).map(lambda bounds: selectors.value_range(*bounds)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: selectors.intersection(*parts)),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: selectors.union(*parts)),
        inner.map(selectors.complement),
    ),
    max_leaves=5,
)
pieces = st.one_of(_schedule_pieces, _mutator_pieces, _selector_pieces)


def _json_round_trip(config):
    return json.loads(json.dumps(config))


@ks.examples(2.5)
@given(piece=pieces)
def test_every_built_in_piece_round_trips_through_a_json_config(piece):
    config = serialization.serialize(piece)
    assert serialization.deserialize(config) == piece
    rebuilt = serialization.deserialize(_json_round_trip(config))
    assert rebuilt == piece
    assert type(rebuilt) is type(piece)
    assert repr(rebuilt) == repr(piece)


# One example of each built-in, with an input to check that the rebuilt piece acts the same.
_W = np.array([[-0.5, 0.0, 0.02], [0.3, -0.01, 2.0]], np.float32)
_MASK = np.array([[True, False, True], [False, True, False]])
# Inputs for the selectors that declare them (`inputs = ("gradient",)`).
_INPUTS = {"gradient": np.array([[0.1, -3.0, 0.0], [0.2, 0.0, -0.5]], np.float32)}
_EXAMPLES = [
    selectors.random_fraction(),
    selectors.value_range(-0.05, 0.05),
    selectors.value_range(-math.inf, 0.0),
    selectors.intersection(selectors.value_range(-1.0, 1.0), selectors.random_fraction()),
    selectors.union(selectors.value_range(-1.0, -0.1), selectors.value_range(0.1, 1.0)),
    selectors.complement(selectors.value_range(0.0, 0.0)),
    mutators.uniform(-0.05, 0.05),
    mutators.constant(0.5),
    mutators.zero(),
    selectors.smallest_magnitude(),
    selectors.smallest_magnitude(among=selectors.value_range(-1.0, 1.0)),
    selectors.smallest_units(order=1),
    selectors.drop_and_grow(),
    selectors.gradient_drop_and_grow(),
    selectors.lowest(),
    selectors.lowest(threshold=0.02),
    mutators.normal(0.01, mean=0.5),
    mutators.initializer("ones"),
    mutators.shrink_perturb(0.5, 0.1, initializer="ones"),
    mutators.drop_and_grow(grow=mutators.uniform(0.1, 0.2)),
    schedules.constant(),
    schedules.decay(0.05, 0.9),
    schedules.cutoff(schedules.decay(0.05, 1.5), 4),
    schedules.cutoff(schedules.constant(0.2), -1),
]


def _behaviour(piece):
    if isinstance(piece, (schedules.Constant, schedules.Decay, schedules.Cutoff)):
        return [piece(step) for step in range(8)]
    if type(piece).__module__ == "kerastroke.mutators":
        return ks.bits(piece(_W, _MASK, 7)).tolist()
    inputs = {name: _INPUTS[name] for name in getattr(piece, "inputs", ())}
    return np.asarray(piece(_W, 0.5, 7, **inputs)).tolist()


def test_the_examples_cover_every_registered_built_in():
    registered = {
        name for name, cls in serialization._REGISTRY.items() if cls.__module__ in _BUILT_IN_MODULES
    }
    covered = {type(piece)._kerastroke_name for piece in _EXAMPLES}
    assert registered == covered
    # The names DESIGN.md promises are all among them.
    assert {
        "selectors.random_fraction", "selectors.value_range", "selectors.intersection",
        "selectors.union", "selectors.complement", "mutators.uniform", "mutators.constant",
        "schedules.constant", "schedules.decay", "schedules.cutoff",
    } <= registered


@pytest.mark.parametrize("piece", _EXAMPLES, ids=repr)
def test_a_rebuilt_piece_acts_exactly_as_the_original(piece):
    rebuilt = serialization.deserialize(_json_round_trip(serialization.serialize(piece)))
    assert rebuilt == piece
    assert _behaviour(rebuilt) == _behaviour(piece)


def test_configs_are_plain_and_readable():
    config = serialization.serialize(schedules.cutoff(schedules.decay(0.05, 0.9), -1))
    assert config == {
        "class_name": "schedules.cutoff",
        "config": {
            "schedule": {"class_name": "schedules.decay", "config": {"initial": 0.05, "rate": 0.9}},
            "steps": None,
        },
    }
    assert serialization.serialize(mutators.zero()) == {
        "class_name": "mutators.constant",
        "config": {"value": 0.0},
    }
    both = serialization.serialize(selectors.intersection(selectors.random_fraction()))
    assert both == {
        "class_name": "selectors.intersection",
        "config": {"parts": [{"class_name": "selectors.random_fraction", "config": {}}]},
    }


def test_unknown_and_unregistered_pieces_are_errors_that_say_so():
    with pytest.raises(ValueError, match="selectors.nope"):
        serialization.deserialize({"class_name": "selectors.nope", "config": {}})
    with pytest.raises(TypeError, match="register"):
        serialization.serialize(lambda step: 1.0)
    with pytest.raises(ValueError, match="selectors.value_range"):
        serialization.register("selectors.value_range")(type("Other", (), {}))


@serialization.register("tests.flip_sign")
@attrs.frozen
class FlipSign:
    """A user mutator made serialisable with `register`."""

    def __call__(self, weights, mask, seed):
        return np.where(mask, -np.asarray(weights), weights)


@ks.examples(1.25)
@given(
    selector=_selector_pieces,
    mutator=st.one_of(_mutator_pieces, st.just(FlipSign())),
    schedule=_schedule_pieces,
    scope=st.sampled_from(["tensor", "global"]),
)
def test_rules_round_trip_through_their_config(selector, mutator, schedule, scope):
    rule = Rule(selector, mutator, schedule, scope=scope)
    rebuilt = Rule.from_config(_json_round_trip(rule.get_config()))
    assert rebuilt == rule


def test_rule_defaults_to_acting_fully_at_every_step():
    rule = Rule(selectors.random_fraction(), mutators.zero())
    assert rule.schedule == schedules.constant(1.0)
    assert [rule.schedule(step) for step in (0, 1, 100)] == [1.0, 1.0, 1.0]
    assert Rule(selectors.random_fraction(), mutators.zero(), schedules.constant(1.0)) == rule


def test_rule_takes_user_callables_but_cannot_serialise_them():
    def selector(weights, amount, seed):
        return np.ones(np.shape(weights), bool)

    rule = Rule(selector, mutators.zero(), lambda step: 0.5)
    assert rule.selector is selector and rule.schedule(3) == 0.5
    with pytest.raises(TypeError, match="register"):
        rule.get_config()


def test_rules_and_pieces_cannot_be_changed_after_construction():
    rule = Rule(selectors.random_fraction(), mutators.zero())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        rule.schedule = schedules.constant(0.5)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        schedules.decay(0.5, 0.9).rate = 2.0


_ANY = selectors.random_fraction()


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"selector": 0.5, "mutator": mutators.zero()}, "selector=0.5"),
        ({"selector": _ANY, "mutator": "zero"}, "mutator='zero'"),
        ({"selector": _ANY, "mutator": mutators.zero(), "schedule": 0.5}, "schedule=0.5"),
        ({"selector": _ANY, "mutator": mutators.zero(), "schedule": None}, "schedule=None"),
    ],
)
def test_rule_rejects_pieces_that_are_not_callable(kwargs, shown):
    with pytest.raises(TypeError) as info:
        Rule(**kwargs)
    assert shown in str(info.value)


@pytest.mark.parametrize("scope", ["model", "", None, 1])
def test_rule_rejects_an_unknown_scope_naming_it(scope):
    with pytest.raises(ValueError) as info:
        Rule(_ANY, mutators.zero(), scope=scope)
    assert f"scope={scope!r}" in str(info.value)
