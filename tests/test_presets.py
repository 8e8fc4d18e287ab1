"""Stroke, Pruning and NeuroPlast: 2.x spellings and defaults, exact effects, bad input."""

import json
import math

import numpy as np
import pytest

from kerastroke import NeuroPlast, Pruning, Rule, Stroke, mutators, schedules, selectors
from kerastroke.engine import writer as write
from tests import models

MARK = np.float32(models.MARK)


def _in_range(values, low, high):
    # Compared as real numbers: float32 weights against float64 bounds.
    values = values.astype("float64")
    return (values >= low) & (values <= high)


def _fit_recorded(model, callback, **kwargs):
    recorder = models.Recorder()
    history = models.fit(model, [recorder, callback], **kwargs)
    return recorder.before, models.snapshot(model), history


# -- the README's usage, unchanged ----------------------------------------------------


@pytest.mark.parametrize("preset", [Stroke, Pruning, NeuroPlast])
def test_readme_usage_runs_unchanged_and_writes_what_the_rules_say(preset):
    model = models.mlp_sequential()
    x, y = models.data(model)
    before, after = models.Recorder(), models.Recorder()
    callback = preset()
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[before, callback, after])

    name = preset.__name__.lower()
    assert len(history.history[f"{name}_changed"]) == 2
    for epoch in range(2):
        total = 0
        for variable in model.weights:
            old, new = before.before[epoch][variable.path], after.before[epoch][variable.path]
            if variable.name != "kernel":
                assert models.same_bits(old, new), variable.path
                continue
            seed = callback.variable_seed(variable, epoch)
            expected, changed = write.apply_rules(old, callback.rules, epoch, seed)
            assert models.same_bits(np.asarray(expected), new), variable.path
            total += changed
        assert history.history[f"{name}_changed"][epoch] == total
    assert sum(history.history[f"{name}_changed"]) > 0


def test_defaults_are_those_of_2_1_1():
    assert Stroke().rules == [
        Rule(
            selectors.random_fraction(),
            mutators.uniform(-0.05, 0.05),
            schedules.cutoff(schedules.decay(0.05, 1.0), None),
        )
    ]
    assert Pruning().rules == [
        Rule(selectors.value_range(-0.2, 0.2), mutators.constant(0.0), schedules.cutoff(schedules.constant(1.0)))
    ]
    assert NeuroPlast().rules == [
        Rule(
            selectors.value_range(-0.01, 0.01),
            mutators.uniform(-0.05, 0.05),
            schedules.cutoff(schedules.constant(1.0)),
        )
    ]
    for preset in (Stroke(), Pruning(), NeuroPlast()):
        assert (preset.layers, preset.weights, preset.biases, preset.frequency) == (None, True, False, "epoch")


# -- both spellings -------------------------------------------------------------------


def _same(a, b):
    return (a.rules, a.layers, a.weights, a.biases) == (b.rules, b.layers, b.weights, b.biases)


@pytest.mark.parametrize(
    "preset, old, new",
    [
        (Stroke, {"value": 0.5}, {"set_value": 0.5}),
        (Stroke, {"value": 0.0}, {"set_value": 0.0}),
        (Stroke, {"biases": True}, {"do_biases": True}),
        (Stroke, {"indeces": [0, 2]}, {"layers": [0, 2]}),
        (Pruning, {"value": 0.5}, {"set_value": 0.5}),
        (Pruning, {"biases": True}, {"do_biases": True}),
        (Pruning, {"indeces": ["out"]}, {"layers": ["out"]}),
        (NeuroPlast, {"biases": True}, {"do_biases": True}),
        (NeuroPlast, {"indeces": [1]}, {"layers": [1]}),
    ],
)
def test_both_spellings_build_the_same_callback(preset, old, new):
    assert _same(preset(**old), preset(**new))
    assert _same(preset(**old), preset(**old, **new))  # Both, agreeing: accepted.
    assert not _same(preset(**old), preset())


def test_value_zero_is_a_value_not_unset():
    (rule,) = Stroke(value=0.0).rules
    assert rule.mutator == mutators.constant(0.0)
    (rule,) = Pruning(set_value=0.0).rules
    assert rule.mutator == mutators.constant(0.0)


@pytest.mark.parametrize(
    "preset, kwargs",
    [
        (Stroke, {"value": 0.1, "set_value": 0.2}),
        (Stroke, {"biases": True, "do_biases": False}),
        (Stroke, {"indeces": [0], "layers": [1]}),
        (Pruning, {"value": 0.0, "set_value": 0.5}),
        (Pruning, {"biases": False, "do_biases": True}),
        (Pruning, {"indeces": ["out"], "layers": ["hidden"]}),
        (NeuroPlast, {"biases": True, "do_biases": False}),
        (NeuroPlast, {"indeces": [0], "layers": [0, 1]}),
    ],
)
def test_conflicting_spellings_raise(preset, kwargs):
    with pytest.raises(ValueError, match="two spellings of one parameter") as info:
        preset(**kwargs)
    for name, value in kwargs.items():
        assert name in str(info.value)


def test_both_spellings_change_weights_identically():
    first, second = models.mlp_sequential(), models.mlp_sequential()
    second.set_weights(first.get_weights())
    models.fit(first, [Stroke(value=models.MARK, volatility_ratio=0.5, indeces=[0, 2], biases=True, seed=1)])
    models.fit(second, [Stroke(set_value=models.MARK, volatility_ratio=0.5, layers=[0, 2], do_biases=True, seed=1)])
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert models.same_bits(a, b)
    assert np.any(first.get_layer("hidden").bias.numpy() == MARK)
    assert not np.any(first.get_layer("middle").kernel.numpy() == MARK)


def test_2_0_positional_calls_mean_what_the_readme_says():
    stroke = Stroke(None, -0.1, 0.1, 0.2, 5, 0.9, [0], True)
    assert stroke.rules == [
        Rule(selectors.random_fraction(), mutators.uniform(-0.1, 0.1),
             schedules.cutoff(schedules.decay(0.2, 0.9), 5))
    ]
    assert (stroke.layers, stroke.biases) == ((0,), True)
    pruning = Pruning(0.5, -0.1, 0.1, 3, True)
    assert pruning.rules == [
        Rule(selectors.value_range(-0.1, 0.1), mutators.constant(0.5),
             schedules.cutoff(schedules.constant(1.0), 3))
    ]
    assert pruning.biases is True
    neuroplast = NeuroPlast(0.0, -0.01, 0.01, 0.0, 0.001, 5)
    schedule = schedules.cutoff(schedules.constant(1.0), 5)
    assert neuroplast.rules == [
        Rule(selectors.value_range(0.0, 0.001), mutators.constant(0.0), schedule),
        Rule(selectors.value_range(-0.01, 0.01), mutators.uniform(-0.05, 0.05), schedule),
    ]


# -- Pruning ------------------------------------------------------------------------


def test_pruning_sets_exactly_the_in_range_entries_to_zero():
    model = models.mlp_sequential()
    before, after, history = _fit_recorded(model, Pruning(min_value=-0.15, max_value=0.1), epochs=2)
    changed_total = 0
    for path, old in before[1].items():
        new = after[path]
        if not path.endswith("/kernel"):
            assert models.same_bits(old, new), path
            continue
        inside = _in_range(old, -0.15, 0.1)
        assert 0 < inside.sum() < old.size, path
        assert np.all(new[inside] == 0.0), path
        assert models.same_bits(new[~inside], old[~inside]), path
        changed_total += int((inside & (old != 0.0)).sum())
    assert history.history["pruning_changed"][1] == changed_total


def test_pruning_value_biases_and_cutoff():
    model = models.mlp_sequential()
    pruning = Pruning(min_value=-0.5, max_value=0.5, cutoff=1, do_biases=True, do_weights=False,
                      set_value=models.MARK)
    before, after, history = _fit_recorded(model, pruning, epochs=2)
    assert history.history["pruning_changed"][1] == 0
    hidden_bias = before[0]["mlp/hidden/bias"]
    assert history.history["pruning_changed"][0] == 8 + 5 + 3  # Biases start at 0, then move a little.
    assert models.same_bits(after["mlp/hidden/kernel"], before[1]["mlp/hidden/kernel"])
    assert models.same_bits(after["mlp/hidden/bias"], before[1]["mlp/hidden/bias"])
    assert not np.any(hidden_bias == MARK)


def test_pruning_cutoff_follows_initial_epoch():
    model = models.mlp_sequential()
    before, after, history = _fit_recorded(model, Pruning(cutoff=3), epochs=5, initial_epoch=2)
    assert history.history["pruning_changed"][1:] == [0, 0]
    assert history.history["pruning_changed"][0] > 0
    assert all(models.same_bits(after[p], before[4][p]) for p in after)


# -- NeuroPlast -------------------------------------------------------------------------


def test_neuroplast_reinitialises_exactly_the_entries_near_zero():
    model = models.mlp_sequential()
    neuroplast = NeuroPlast(min_value=-0.05, max_value=0.05, set_value=models.MARK)
    assert len(neuroplast.rules) == 1
    before, after, history = _fit_recorded(model, neuroplast)
    changed_total = 0
    for path, old in before[0].items():
        new = after[path]
        if not path.endswith("/kernel"):
            assert models.same_bits(old, new), path
            continue
        inside = _in_range(old, -0.05, 0.05)
        assert np.all(new[inside] == MARK), path
        assert models.same_bits(new[~inside], old[~inside]), path
        changed_total += int(inside.sum())
    assert changed_total > 0
    assert history.history["neuroplast_changed"] == [changed_total]


def test_neuroplast_prunes_only_when_the_pruning_range_is_given():
    pruning_low, pruning_high = 0.1, 0.2
    model = models.mlp_sequential()
    neuroplast = NeuroPlast(
        value=-0.5, min_value=-0.02, max_value=0.02, pruning_min=pruning_low,
        pruning_max=pruning_high, set_value=models.MARK,
    )
    assert len(neuroplast.rules) == 2
    before, after, history = _fit_recorded(model, neuroplast)
    pruned_total, near_zero_total = 0, 0
    for path, old in before[0].items():
        new = after[path]
        if not path.endswith("/kernel"):
            assert models.same_bits(old, new), path
            continue
        pruned = _in_range(old, pruning_low, pruning_high)
        near_zero = _in_range(old, -0.02, 0.02)
        expected = np.where(pruned, np.float32(-0.5), np.where(near_zero, MARK, old))
        assert models.same_bits(new, expected), path
        pruned_total += int(pruned.sum())
        near_zero_total += int(near_zero.sum())
    assert pruned_total > 0 and near_zero_total > 0
    assert history.history["neuroplast_changed"] == [pruned_total + near_zero_total]

    with pytest.warns(UserWarning, match="has no effect without `pruning_min`") as record:
        without = NeuroPlast(value=-0.5, min_value=-0.02, max_value=0.02, set_value=models.MARK)
    assert record[0].filename == __file__
    assert without.rules == neuroplast.rules[1:]


# -- configs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "callback",
    [
        Stroke(value=0.0, volatility_ratio=0.3, cutoff=4, decay=1.5, indeces=[0], do_biases=True, seed=3),
        Stroke(low_bound=-0.2, high_bound=0.3, layers=["out"], frequency=5, seed=4, verbose=1, name="s"),
        Pruning(set_value=0.25, min_value=-0.1, max_value=0.3, cutoff=2, biases=True, seed=5),
        NeuroPlast(value=0.0, set_value=0.3, pruning_min=0.0, pruning_max=0.001, cutoff=7,
                   do_weights=False, do_biases=True, seed=6),
        NeuroPlast(min_value=-0.02, max_value=0.03, low_bound=-0.5, high_bound=0.5, seed=7),
    ],
    ids=["stroke-value", "stroke-bounds", "pruning", "neuroplast-pruning", "neuroplast"],
)
def test_preset_config_round_trip(callback):
    config = json.loads(json.dumps(callback.get_config()))
    rebuilt = type(callback).from_config(config)
    assert rebuilt.get_config() == callback.get_config()
    assert rebuilt.rules == callback.rules
    assert (rebuilt.layers, rebuilt.weights, rebuilt.biases, rebuilt.frequency, rebuilt.seed, rebuilt.name) == (
        callback.layers, callback.weights, callback.biases, callback.frequency, callback.seed, callback.name,
    )


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, kwargs, error, name",
    [
        (Stroke, {"volatility_ratio": 1.5}, ValueError, "volatility_ratio"),
        (Stroke, {"volatility_ratio": -0.1}, ValueError, "volatility_ratio"),
        (Stroke, {"volatility_ratio": math.nan}, ValueError, "volatility_ratio"),
        (Stroke, {"volatility_ratio": "0.1"}, TypeError, "volatility_ratio"),
        (Stroke, {"low_bound": 0.2, "high_bound": 0.1}, ValueError, "low_bound"),
        (Stroke, {"low_bound": math.nan}, ValueError, "low_bound"),
        (Stroke, {"high_bound": math.inf}, ValueError, "high_bound"),
        (Stroke, {"value": 0.1, "low_bound": 1.0, "high_bound": 0.0}, ValueError, "low_bound"),
        (Stroke, {"value": math.nan}, ValueError, "value"),
        (Stroke, {"set_value": math.inf}, ValueError, "set_value"),
        (Pruning, {"set_value": math.nan}, ValueError, "set_value"),
        (Stroke, {"cutoff": -2}, ValueError, "cutoff"),
        (Stroke, {"cutoff": 2.5}, TypeError, "cutoff"),
        (Stroke, {"decay": -0.5}, ValueError, "decay"),
        (Stroke, {"decay": math.nan}, ValueError, "decay"),
        (Stroke, {"indeces": [0.5]}, TypeError, "layers"),
        (Stroke, {"biases": "yes"}, TypeError, "biases"),
        (Stroke, {"do_biases": 1}, TypeError, "do_biases"),
        (Stroke, {"do_weights": None}, TypeError, "do_weights"),
        (Stroke, {"frequency": "step"}, ValueError, "frequency"),
        (Stroke, {"seed": -3}, ValueError, "seed"),
        (Pruning, {"min_value": 0.3, "max_value": 0.2}, ValueError, "min_value"),
        (Pruning, {"max_value": math.nan}, ValueError, "max_value"),
        (Pruning, {"value": math.inf}, ValueError, "value"),
        (Pruning, {"cutoff": -5}, ValueError, "cutoff"),
        (NeuroPlast, {"min_value": 0.3, "max_value": 0.2}, ValueError, "min_value"),
        (NeuroPlast, {"low_bound": 0.3, "high_bound": 0.2}, ValueError, "low_bound"),
        (NeuroPlast, {"set_value": math.nan}, ValueError, "set_value"),
        (NeuroPlast, {"pruning_min": 0.0}, ValueError, "pruning_max"),
        (NeuroPlast, {"pruning_max": 0.1}, ValueError, "pruning_min"),
        (NeuroPlast, {"pruning_min": 0.2, "pruning_max": 0.1}, ValueError, "pruning_min"),
        (NeuroPlast, {"value": math.nan, "pruning_min": 0.0, "pruning_max": 0.1}, ValueError, "value"),
        (NeuroPlast, {"cutoff": -2}, ValueError, "cutoff"),
    ],
)
def test_bad_parameters_fail_at_construction(preset, kwargs, error, name):
    with pytest.raises(error) as info:
        preset(**kwargs)
    message = str(info.value)
    assert f"`{name}`" in message
    assert "Received" in message
