"""Stroke, Pruning and NeuroPlast: the kerastroke 2.x callbacks as rule presets.

Each preset accepts both parameter spellings that kerastroke 2.x published
(2.0: `value`, `biases`, `indeces`; 2.1: `set_value`, `do_biases`,
`do_weights`), with the 2.1.1 defaults, so code written for 2.x runs
unchanged. They act on every targeted layer, not only the first.
"""

import numbers
import warnings

import keras

from kerastroke import schedules
from kerastroke import mutators, selectors
from kerastroke.core import checks
from kerastroke.engine import targets
from kerastroke.engine.rule import Rule
from kerastroke.presets.base import Preset


def _either(name, value, alias, alias_value, default=None):
    """One parameter published under two names; both given must agree."""
    if value is not None and alias_value is not None and value != alias_value:
        raise ValueError(
            f"`{name}` and `{alias}` are two spellings of one parameter and disagree. "
            f"Received: {name}={value!r}, {alias}={alias_value!r}"
        )
    if value is not None:
        return value
    return default if alias_value is None else alias_value


def _biases(biases, do_biases):
    for name, flag in (("biases", biases), ("do_biases", do_biases)):
        if flag is not None:
            checks.boolean(name, flag)
    return _either("biases", biases, "do_biases", do_biases, default=False)


def _layers(layers, indeces):
    return _either(
        "layers", targets.check_layers(layers), "indeces", targets.check_layers(indeces)
    )


def _cutoff(cutoff):
    """-1 (or None) runs for every epoch; otherwise the number of epochs."""
    if cutoff is None:
        return -1
    return checks.integer("cutoff", cutoff, minimum=-1)


def _epochs_only(preset, frequency, **counts):
    """2.x's `cutoff` and `decay` count epochs; at batch frequency a schedule counts steps."""
    if isinstance(frequency, bool) or not isinstance(frequency, numbers.Integral) or frequency < 1:
        return  # "epoch"; a bad frequency fails in PlasticityCallback, naming `frequency`.
    for name, value in counts.items():
        unset = (None, -1) if name == "cutoff" else (None, 1, 1.0)
        if value not in unset:
            raise ValueError(
                f"{preset}'s `{name}` counts epochs, as in kerastroke 2.x, but with "
                f"frequency={frequency!r} its schedule would count optimizer steps. Use "
                f"frequency=\"epoch\" with `{name}`, or, for a schedule in optimizer steps, "
                f"PlasticityCallback(rules, frequency={frequency!r}) with "
                f"schedules.cutoff(...) / schedules.decay(...) in steps. "
                f"Received: {name}={value!r}, frequency={frequency!r}"
            )


def _new_values(value, value_name, low_bound, high_bound):
    # The bounds are checked even when `value` makes them unused.
    low, high = checks.ordered("low_bound", low_bound, "high_bound", high_bound)
    checks.finite("low_bound", low)
    checks.finite("high_bound", high)
    if value is not None:
        return mutators.constant(checks.finite(value_name, value))
    return mutators.uniform(low, high)


@keras.saving.register_keras_serializable(package="kerastroke")
class Stroke(Preset):
    """Re-initialises a random fraction of the weights after every epoch.

    Rule: `random_fraction()` picks exactly `round(ratio * size)` entries of
    each targeted tensor, without replacement; they become `value` if given,
    else a draw from U[low_bound, high_bound). The ratio at epoch `e` is
    `min(1, volatility_ratio * decay**e)`, and nothing happens from epoch
    `cutoff` on. `e` is the absolute epoch index, so `initial_epoch` resumes
    the schedule. With `frequency=N` (every N optimizer steps) the ratio is
    `volatility_ratio` throughout: `cutoff` and `decay` count epochs, as in
    2.x, and are refused with a ValueError at batch frequency; for a
    schedule in optimizer steps use `PlasticityCallback` with
    `schedules.cutoff` / `schedules.decay`.

    Args:
        value: If set, re-initialised entries take this value (0.0 included).
        set_value: 2.1 spelling of `value`.
        low_bound: Lowest re-initialised value.
        high_bound: Highest re-initialised value (exclusive).
        volatility_ratio: Fraction of entries re-initialised per epoch, in [0, 1].
        cutoff: Number of epochs Stroke runs for; -1 or None for all of
            them (the only values accepted with an integer `frequency`).
        decay: Factor on the ratio per epoch (may exceed 1; the ratio stops
            at 1.0); None or 1.0 with an integer `frequency`.
        indeces: 2.0 spelling of `layers`.
        layers: Layer indices and/or names; None for the whole model.
        biases: Also touch biases.
        do_biases: 2.1 spelling of `biases`.
        do_weights: Touch kernels.
        frequency: "epoch" or every N optimizer steps.
        seed: Base seed; None picks one (see `self.seed`).
        verbose: 1 prints a line per application.
        name: Prefix of the keys in `logs`, default "stroke": each
            application logs `stroke_changed`, `stroke_fraction` and
            `stroke_sparsity` (see `PlasticityCallback`).

    Example:
    >>> from kerastroke import Stroke
    >>> stroke = Stroke(volatility_ratio=0.1, decay=0.9, cutoff=10, seed=0)
    >>> # model.fit(x, y, epochs=20, callbacks=[stroke])
    """

    default_name = "stroke"

    def __init__(
        self,
        value=None,
        low_bound=-0.05,
        high_bound=0.05,
        volatility_ratio=0.05,
        cutoff=-1,
        decay=None,
        indeces=None,
        biases=None,
        *,
        set_value=None,
        layers=None,
        do_biases=None,
        do_weights=True,
        frequency="epoch",
        seed=None,
        verbose=0,
        name=None,
    ):
        value = _either("value", value, "set_value", set_value)
        layers = _layers(layers, indeces)
        biases = _biases(biases, do_biases)
        ratio = checks.fraction("volatility_ratio", volatility_ratio)
        rate = 1.0 if decay is None else checks.non_negative("decay", decay)
        rule = Rule(
            selectors.random_fraction(),
            _new_values(value, "value" if set_value is None else "set_value", low_bound, high_bound),
            schedules.cutoff(schedules.decay(ratio, rate), _cutoff(cutoff)),
        )
        _epochs_only("Stroke", frequency, cutoff=cutoff, decay=decay)
        params = {
            "value": value,
            "low_bound": low_bound,
            "high_bound": high_bound,
            "volatility_ratio": volatility_ratio,
            "cutoff": cutoff,
            "decay": decay,
        }
        self._keep(**params, layers=None if layers is None else list(layers), do_weights=do_weights,
                   biases=biases, frequency=frequency)
        checks.boolean("do_weights", do_weights)
        super().__init__([rule], layers=layers, weights=do_weights, biases=biases,
                         frequency=frequency, seed=seed, verbose=verbose, name=name)


@keras.saving.register_keras_serializable(package="kerastroke")
class Pruning(Preset):
    """Sets the weights in [min_value, max_value] to `value` (0.0) after every epoch.

    Rule: `value_range(min_value, max_value)` + `constant(value)`, until epoch
    `cutoff`. Zeros set here may regrow during the next epoch's training.

    Args:
        value: The value pruned entries take (default 0.0).
        set_value: 2.1 spelling of `value`.
        min_value: Lowest value pruned (inclusive).
        max_value: Highest value pruned (inclusive).
        cutoff: Number of epochs Pruning runs for; -1 or None for all of
            them (the only values accepted with an integer `frequency`).
        biases: Also touch biases.
        do_biases: 2.1 spelling of `biases`.
        do_weights: Touch kernels.
        layers: Layer indices and/or names; None for the whole model.
        indeces: Alias of `layers`.
        frequency: "epoch" or every N optimizer steps.
        seed: Base seed; None picks one.
        verbose: 1 prints a line per application.
        name: Prefix of the keys in `logs`, default "pruning": each
            application logs `pruning_changed`, `pruning_fraction` and
            `pruning_sparsity` (see `PlasticityCallback`).

    Example:
    >>> from kerastroke import Pruning
    >>> pruning = Pruning(min_value=-0.01, max_value=0.01)
    >>> # model.fit(x, y, epochs=5, callbacks=[pruning])
    """

    default_name = "pruning"

    def __init__(
        self,
        value=None,
        min_value=-0.2,
        max_value=0.2,
        cutoff=-1,
        biases=None,
        *,
        set_value=None,
        do_biases=None,
        do_weights=True,
        layers=None,
        indeces=None,
        frequency="epoch",
        seed=None,
        verbose=0,
        name=None,
    ):
        value = _either("value", value, "set_value", set_value, default=0.0)
        layers = _layers(layers, indeces)
        biases = _biases(biases, do_biases)
        low, high = checks.ordered("min_value", min_value, "max_value", max_value)
        checks.finite("value" if set_value is None else "set_value", value)
        rule = Rule(
            selectors.value_range(low, high),
            mutators.constant(value),
            schedules.cutoff(schedules.constant(1.0), _cutoff(cutoff)),
        )
        _epochs_only("Pruning", frequency, cutoff=cutoff)
        params = {"value": value, "min_value": min_value, "max_value": max_value, "cutoff": cutoff}
        self._keep(**params, layers=None if layers is None else list(layers), do_weights=do_weights,
                   biases=biases, frequency=frequency)
        checks.boolean("do_weights", do_weights)
        super().__init__([rule], layers=layers, weights=do_weights, biases=biases,
                         frequency=frequency, seed=seed, verbose=verbose, name=name)


@keras.saving.register_keras_serializable(package="kerastroke")
class NeuroPlast(Preset):
    """Re-initialises the weights that are close to zero after every epoch.

    Rules, both until epoch `cutoff`:

    1. Only if `pruning_min` and `pruning_max` are given: entries in
       [pruning_min, pruning_max] become `value` (default 0.0).
    2. Entries in [min_value, max_value] become `set_value` if given, else a
       draw from U[low_bound, high_bound).

    Rule 2 sees rule 1's result: entries pruned to a `value` inside
    [min_value, max_value] (0.0, by default) are re-initialised at once.

    Args:
        value: The value of rule 1 (the 2.0 README's "pruned weights" value);
            without `pruning_min` and `pruning_max` it has no effect and warns.
        set_value: If set, rule 2 writes this value instead of a random one.
        min_value: Lowest value re-initialised (inclusive).
        max_value: Highest value re-initialised (inclusive).
        low_bound: Lowest re-initialised value.
        high_bound: Highest re-initialised value (exclusive).
        pruning_min: Lowest value pruned by rule 1.
        pruning_max: Highest value pruned by rule 1.
        cutoff: Number of epochs NeuroPlast runs for; -1 or None for all of
            them (the only values accepted with an integer `frequency`).
        biases: Also touch biases.
        do_biases: 2.1 spelling of `biases`.
        do_weights: Touch kernels.
        layers: Layer indices and/or names; None for the whole model.
        indeces: Alias of `layers`.
        frequency: "epoch" or every N optimizer steps.
        seed: Base seed; None picks one.
        verbose: 1 prints a line per application.
        name: Prefix of the keys in `logs`, default "neuroplast": each
            application logs `neuroplast_changed`, `neuroplast_fraction` and
            `neuroplast_sparsity` (see `PlasticityCallback`).

    Example:
    >>> from kerastroke import NeuroPlast
    >>> neuroplast = NeuroPlast(min_value=-0.005, max_value=0.005, seed=1)
    >>> # model.fit(x, y, epochs=5, callbacks=[neuroplast])
    """

    default_name = "neuroplast"

    def __init__(
        self,
        value=None,
        min_value=-0.01,
        max_value=0.01,
        pruning_min=None,
        pruning_max=None,
        cutoff=-1,
        *,
        set_value=None,
        low_bound=-0.05,
        high_bound=0.05,
        biases=None,
        do_biases=None,
        do_weights=True,
        layers=None,
        indeces=None,
        frequency="epoch",
        seed=None,
        verbose=0,
        name=None,
    ):
        layers = _layers(layers, indeces)
        biases = _biases(biases, do_biases)
        schedule = schedules.cutoff(schedules.constant(1.0), _cutoff(cutoff))
        rules = []
        if (pruning_min is None) != (pruning_max is None):
            raise ValueError(
                "`pruning_min` and `pruning_max` go together: give both or neither. "
                f"Received: pruning_min={pruning_min!r}, pruning_max={pruning_max!r}"
            )
        prune_value = 0.0 if value is None else checks.finite("value", value)
        if pruning_min is not None:
            low, high = checks.ordered("pruning_min", pruning_min, "pruning_max", pruning_max)
            rules.append(Rule(selectors.value_range(low, high), mutators.constant(prune_value), schedule))
        elif value is not None:
            warnings.warn(
                f"NeuroPlast: `value`={value!r} is the value pruned entries take and has no "
                "effect without `pruning_min` and `pruning_max`; to re-initialise entries "
                "to a fixed value, pass `set_value`.",
                stacklevel=2,
            )
        low, high = checks.ordered("min_value", min_value, "max_value", max_value)
        rules.append(
            Rule(
                selectors.value_range(low, high),
                _new_values(set_value, "set_value", low_bound, high_bound),
                schedule,
            )
        )
        _epochs_only("NeuroPlast", frequency, cutoff=cutoff)
        params = {
            "value": value,
            "set_value": set_value,
            "min_value": min_value,
            "max_value": max_value,
            "low_bound": low_bound,
            "high_bound": high_bound,
            "pruning_min": pruning_min,
            "pruning_max": pruning_max,
            "cutoff": cutoff,
        }
        self._keep(**params, layers=None if layers is None else list(layers), do_weights=do_weights,
                   biases=biases, frequency=frequency)
        checks.boolean("do_weights", do_weights)
        super().__init__(rules, layers=layers, weights=do_weights, biases=biases,
                         frequency=frequency, seed=seed, verbose=verbose, name=name)
