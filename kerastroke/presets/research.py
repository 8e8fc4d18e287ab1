"""Presets from the research literature: magnitude pruning, SET, RigL, shrink-and-perturb.

Each is a `PlasticityCallback` with a fixed rule list; their parameters are
checked at construction like every other piece, and `get_config` gives back
the constructor's arguments (schedules and mutators as their configs).
"""

import keras

from kerastroke import schedules
from kerastroke.core import checks
from kerastroke import mutators, selectors
from kerastroke.engine import probes
from kerastroke.engine.rule import Rule
from kerastroke.presets.base import Preset


def _amount_schedule(name, value):
    """A float in [0, 1] becomes a constant schedule; a callable is kept."""
    if callable(value):
        return value
    return schedules.constant(checks.fraction(name, value))


@keras.saving.register_keras_serializable(package="kerastroke")
class MagnitudePruning(Preset):
    """Prunes the smallest-magnitude weights to a sparsity schedule, persistently.

    The semantics of TensorFlow Model Optimization's `prune_low_magnitude`
    (Zhu and Gupta 2017, "To prune, or not to prune"): at each application
    step `s`, the `sparsity(s)` fraction of each kernel's entries with the
    smallest |w| (or of all targeted entries at once, `scope="global"`) is set
    to zero, and a mask holds those entries at zero after every optimizer step
    until the next application. Zeros rank first, so a growing schedule keeps
    earlier pruning.

    The hold is a variable constraint, not part of the model: a model saved
    during training (`model.save`, `ModelCheckpoint`) reloads without it, and
    training it further without this callback lets the zeros regrow. Attach
    the callback again to go on: the held set is read from the weights, so
    the reloaded zeros are held again, from the first step when the model
    was saved with its optimizer (its step count is above 0), else from the
    callback's first application. `kerastroke.strip(model)` removes the hold
    once training is over.

    Args:
        sparsity: Target fraction in [0, 1], or a schedule `step -> fraction`
            such as `schedules.polynomial(0.0, 0.8, begin=0, end=1000)`.
        frequency: "epoch", or every N optimizer steps (tfmot uses 100).
        scope: "tensor" ranks each kernel on its own; "global" ranks all
            targeted kernels together.
        layers, biases, seed, verbose: As for `PlasticityCallback`.
        name: Prefix of the keys in `logs`, default "magnitude_pruning":
            each application logs `magnitude_pruning_changed`,
            `magnitude_pruning_fraction` and `magnitude_pruning_sparsity`.

    Example:
    >>> from kerastroke import MagnitudePruning, schedules
    >>> pruning = MagnitudePruning(schedules.polynomial(0.0, 0.8, 0, 500), frequency=50)
    >>> # model.fit(x, y, epochs=10, callbacks=[pruning]); kerastroke.strip(model)
    """

    default_name = "magnitude_pruning"

    def __init__(self, sparsity=0.5, frequency="epoch", scope="tensor", layers=None,
                 biases=False, seed=None, verbose=0, name=None):
        self._keep(sparsity=sparsity, frequency=frequency, scope=scope, layers=layers, biases=biases)
        rule = Rule(
            selectors.smallest_magnitude(), mutators.zero(), _amount_schedule("sparsity", sparsity), scope=scope
        )
        super().__init__([rule], layers=layers, biases=biases, frequency=frequency, seed=seed,
                         verbose=verbose, name=name, persistent=True)


@keras.saving.register_keras_serializable(package="kerastroke")
class SET(Preset):
    """Sparse Evolutionary Training (Mocanu et al. 2018, Nature Communications 9:2383).

    At every application: (1) prune each kernel to `sparsity` by magnitude
    (the first application sparsifies the dense network; afterwards this only
    holds the count); (2) drop the `drop_fraction` of the remaining non-zero
    entries with the smallest |w| and grow as many at random zero positions,
    with values from `grow` (by default the layer's own initializer). The
    number of non-zero entries stays `round((1 - sparsity) * size)`, and
    zeros are held between applications (a variable constraint: a saved
    model reloads without it; attach the callback again to go on training,
    as for `MagnitudePruning`).

    This starts from a dense network trained for one epoch rather than from
    the paper's random Erdos-Renyi topology: with the callback API the first
    chance to act is the end of the first epoch.

    Args:
        sparsity: Fraction of each kernel held at zero, in [0, 1].
        drop_fraction: Fraction of the non-zero entries exchanged per
            application (the paper's zeta, 0.3), or a schedule such as
            `schedules.cosine(0.3, end=100)` (RigL's decay).
        grow: Mutator for the grown entries; default `mutators.initializer()`.
        frequency: "epoch", or every N optimizer steps.
        reset_optimizer: Zero the optimizer state of dropped and grown entries.
        layers, seed, verbose: As for `PlasticityCallback`.
        name: Prefix of the keys in `logs`, default "set": each application
            logs `set_changed`, `set_fraction` and `set_sparsity`.

    Example:
    >>> from kerastroke import SET
    >>> set_callback = SET(sparsity=0.9, drop_fraction=0.3, seed=0)
    >>> # model.fit(x, y, epochs=20, callbacks=[set_callback])
    """

    default_name = "set"

    def __init__(self, sparsity=0.9, drop_fraction=0.3, grow=None, frequency="epoch",
                 reset_optimizer=True, layers=None, seed=None, verbose=0, name=None):
        self._keep(sparsity=sparsity, drop_fraction=drop_fraction, grow=grow, frequency=frequency,
                   reset_optimizer=reset_optimizer, layers=layers)
        grow = mutators.initializer() if grow is None else checks.callable_("grow", grow)
        rules = [
            Rule(selectors.smallest_magnitude(), mutators.zero(), _amount_schedule("sparsity", sparsity)),
            Rule(selectors.drop_and_grow(), mutators.drop_and_grow(grow),
                 _amount_schedule("drop_fraction", drop_fraction)),
        ]
        super().__init__(rules, layers=layers, frequency=frequency, seed=seed, verbose=verbose,
                         name=name, persistent=True, reset_optimizer=reset_optimizer)


def _drop_schedule(drop_fraction, end):
    """RigL's cosine decay of `drop_fraction` over `end` steps; constant without `end`."""
    if end is None:
        return _amount_schedule("drop_fraction", drop_fraction)
    end = checks.integer("end", end, minimum=1)
    if callable(drop_fraction):
        raise ValueError(
            "`end` sets the cosine decay of a float `drop_fraction`; a schedule given as "
            f"`drop_fraction` already decays. Received: drop_fraction={drop_fraction!r}, end={end!r}"
        )
    return schedules.cosine(checks.fraction("drop_fraction", drop_fraction), end)


@keras.saving.register_keras_serializable(package="kerastroke")
class RigL(Preset):
    """Rigged Lottery sparse training (Evci et al. 2020, "Rigging the Lottery:
    Making All Tickets Winners", ICML).

    At every application step `t`:

    1. each kernel is pruned to `sparsity` by magnitude (the first application
       sparsifies the dense network; afterwards this only holds the count);
    2. with `f(t) = drop_fraction / 2 * (1 + cos(pi * t / end))` for `t < end`
       and 0 from `end` on (`schedules.cosine`; a constant `drop_fraction`
       without `end`), the `k = round(f(t) * active)` non-zero entries with
       the smallest |w| are dropped (set to zero) and `k` entries that are
       zero grow: those with the largest |dL/dw|, the gradient of the
       model's compiled loss on the `probe` batch, measured at the weights of
       this step before anything is written;
    3. grown entries start at zero, as in the paper: at the dtype's smallest
       normal value (1.2e-38 for float32, 6.1e-5 for float16), so that they
       count as non-zero and are not held, and the number of non-zero entries
       stays `round((1 - sparsity) * size)`;
    4. with `reset_optimizer`, the optimizer state (Adam's moments, SGD's
       momentum) of the dropped and grown entries is zeroed.

    Zeros are held between applications (a variable constraint: a saved model
    reloads without it; attach the callback again to go on training, as for
    `MagnitudePruning`). The paper's settings are `drop_fraction=0.3`, an
    update every 100 optimizer steps (`frequency=100`) and `end` at 75% of
    the training steps.

    Where this simplifies the paper: every kernel gets the same sparsity
    (not the Erdos-Renyi-Kernel distribution); training starts dense and is
    sparsified at the first application (with the callback API that is the
    first chance to act), and the gradients of that first exchange are
    those of the dense weights; the gradient is measured on the fixed
    `probe` batch in inference mode (no dropout, batch normalization from its
    moving statistics), not on the current training batch; an entry dropped
    at an application is not regrown at the same one (the growth candidates
    are the entries that were zero before it).

    Args:
        sparsity: Fraction of each kernel held at zero, in [0, 1], or a
            schedule `step -> fraction`.
        drop_fraction: Fraction of the non-zero entries exchanged per
            application at step 0 (the paper's alpha, 0.3), or a schedule.
        probe: `(x, y)` arrays of the batch the gradient is measured on, as
            `model(x)` and the compiled loss take them. Required. A larger
            batch gives a less noisy gradient at the cost of one forward and
            backward pass over it per application.
        end: Steps over which `drop_fraction` decays to 0 (int >= 1), after
            which nothing is exchanged; None keeps it constant. Steps are
            epochs, or optimizer steps at batch frequency.
        grow: Mutator for the grown entries; default `mutators.zero()` (the
            paper's zero, nudged to the smallest normal value as above).
        frequency: "epoch", or every N optimizer steps.
        reset_optimizer: Zero the optimizer state of dropped and grown entries.
        layers, seed, verbose: As for `PlasticityCallback`.
        name: Prefix of the keys in `logs`, default "rigl": each application
            logs `rigl_changed`, `rigl_fraction` and `rigl_sparsity`.

    Example:
    >>> import numpy as np
    >>> from kerastroke import RigL
    >>> x, y = np.zeros((64, 10), "float32"), np.zeros((64,), "int32")
    >>> rigl = RigL(sparsity=0.9, drop_fraction=0.3, probe=(x, y), end=3000, frequency=100, seed=0)
    >>> [round(rigl.rules[1].schedule(step), 3) for step in (0, 1500, 3000)]
    [0.3, 0.15, 0.0]
    >>> # model.fit(x_train, y_train, epochs=20, callbacks=[rigl])
    """

    default_name = "rigl"

    def __init__(self, sparsity=0.9, drop_fraction=0.3, probe=None, end=None, grow=None,
                 frequency="epoch", reset_optimizer=True, layers=None, seed=None, verbose=0, name=None):
        self._keep(sparsity=sparsity, drop_fraction=drop_fraction, probe=probe, end=end, grow=grow,
                   frequency=frequency, reset_optimizer=reset_optimizer, layers=layers)
        grow = mutators.zero() if grow is None else checks.callable_("grow", grow)
        rules = [
            Rule(selectors.smallest_magnitude(), mutators.zero(), _amount_schedule("sparsity", sparsity)),
            Rule(selectors.gradient_drop_and_grow(), mutators.drop_and_grow(grow),
                 _drop_schedule(drop_fraction, end)),
        ]
        super().__init__(rules, layers=layers, frequency=frequency, seed=seed, verbose=verbose,
                         name=name, persistent=True, reset_optimizer=reset_optimizer, probe=probe)
        # The checked probe (NumPy arrays, a tuple) is what the config keeps.
        self._params["probe"] = self.probe

    @classmethod
    def from_config(cls, config):
        # A config that went through Keras's JSON holds the arrays in its own form.
        return super().from_config({**config, "probe": probes.check_probe(config.get("probe"))})


@keras.saving.register_keras_serializable(package="kerastroke")
class ShrinkPerturb(Preset):
    """Shrink-and-perturb (Ash and Adams 2020, "On Warm-Starting Neural Network Training").

    Every `period` epochs each targeted variable becomes
    `shrink * w + perturb * fresh`, where `fresh` is a new draw of the layer's
    own initializer. Biases are included by default, as in the paper.

    Args:
        shrink: Factor on the current weights, in [0, 1] (the paper's lambda).
        perturb: Factor on the fresh draw, >= 0.
        period: Apply every `period` epochs (int >= 1), from epoch `period - 1`.
        reset_optimizer: Zero the optimizer state of every perturbed entry.
        layers, biases, seed, verbose: As for `PlasticityCallback`.
        name: Prefix of the keys in `logs`, default "shrink_perturb": each
            application logs `shrink_perturb_changed`, `shrink_perturb_fraction`
            and `shrink_perturb_sparsity`.

    Example:
    >>> from kerastroke import ShrinkPerturb
    >>> sp = ShrinkPerturb(shrink=0.4, perturb=0.1, period=5, seed=0)
    >>> # model.fit(x, y, epochs=20, callbacks=[sp])
    """

    default_name = "shrink_perturb"

    def __init__(self, shrink=0.4, perturb=0.1, period=1, reset_optimizer=False, layers=None,
                 biases=True, seed=None, verbose=0, name=None):
        self._keep(shrink=shrink, perturb=perturb, period=period, reset_optimizer=reset_optimizer,
                   layers=layers, biases=biases)
        period = checks.integer("period", period, minimum=1)
        rule = Rule(
            selectors.random_fraction(),
            mutators.shrink_perturb(shrink, perturb),
            schedules.every(schedules.constant(1.0), period, offset=period - 1),
        )
        super().__init__([rule], layers=layers, biases=biases, seed=seed, verbose=verbose,
                         name=name, reset_optimizer=reset_optimizer)
