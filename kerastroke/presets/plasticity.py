"""Presets that keep a network able to learn by recycling units: ReDo and continual backprop.

Both measure how active each hidden unit is on a probe batch (see
`kerastroke.engine.activity`), pick units by a score, and *recycle* them (see
`kerastroke.engine.units`): fresh incoming weights from the layer's own
initializer, zero bias, zero outgoing weights, and zeroed optimizer state for
exactly those entries. Zero outgoing weights mean a recycled unit does not
change what the network computes at the moment it is recycled.

Units are those of the Dense and Conv1D/2D/3D layers whose output feeds one
Dense or Conv layer (the hidden layers of a Sequential or functional model);
`layers` narrows them to named layers. The rule of these presets,
`callback.rules[0]`, is the unit rule: its selector (`selectors.lowest`)
picks units from their scores, and its mutator (`mutators.initializer()`,
bound to each layer's initializer) draws their incoming weights; its
schedule is the default constant 1.0, as applications follow `frequency`.
"""

import math
import warnings

import keras
import ml_dtypes
import numpy as np
from keras.src.utils import io_utils

from kerastroke import mutators, selectors
from kerastroke.core import arrays, checks, seeds, serialization
from kerastroke.engine import activity as unit_activity
from kerastroke.engine import units
from kerastroke.engine.rule import Rule
from kerastroke.engine.sparsity import zeros_and_size
from kerastroke.presets.base import Preset


# -- The probe batch: checked at construction, kept in configs as JSON -------


def _is_array(value):
    return isinstance(value, np.ndarray) or keras.ops.is_tensor(value)


def _probe_array(value, where):
    array = arrays.to_numpy(value) if keras.ops.is_tensor(value) else np.asarray(value)
    if array.dtype.kind not in "fiub" and array.dtype != ml_dtypes.bfloat16:
        raise TypeError(f"`probe`{where} must hold numbers. Received: an array of dtype {array.dtype}")
    if array.ndim < 1 or array.shape[0] < 1:
        raise ValueError(
            f"`probe`{where} must be a batch of at least one input (a leading batch axis). "
            f"Received: an array of shape {array.shape}"
        )
    return array


def _probe(probe, preset):
    """The probe as NumPy arrays (one, or a list or dict of them for several inputs)."""
    if probe is None:
        raise ValueError(
            f"{preset} needs `probe`, a batch of inputs such as x_train[:256]: unit activity is "
            "measured on it at every application. A Keras callback never sees the training "
            "batches, and reading hidden activations inside the compiled train step would mean "
            "rebuilding it, so the batch is given once. Received: probe=None"
        )
    if isinstance(probe, dict):
        return {key: _probe_array(value, f"[{key!r}]") for key, value in probe.items()}
    if isinstance(probe, (list, tuple)) and probe and all(_is_array(item) for item in probe):
        return [_probe_array(value, f"[{index}]") for index, value in enumerate(probe)]
    return _probe_array(probe, "")


def _encode_probe(probe):
    if isinstance(probe, dict):
        return {"inputs": {key: _encode_probe(value) for key, value in probe.items()}}
    if isinstance(probe, list):
        return {"inputs": [_encode_probe(value) for value in probe]}
    # Every float dtype widens to float64 exactly, so the values come back bit for bit.
    wide = probe.astype(np.float64) if probe.dtype.kind == "f" or probe.dtype == ml_dtypes.bfloat16 else probe
    return {"dtype": arrays.dtype_name(probe), "shape": list(probe.shape), "values": wide.ravel().tolist()}


def _decode_probe(config):
    """The probe from what `_encode_probe` gave."""
    if "inputs" in config:
        inputs = config["inputs"]
        if isinstance(inputs, dict):
            return {key: _decode_probe(value) for key, value in inputs.items()}
        return [_decode_probe(value) for value in inputs]
    values = np.asarray(config["values"]).astype(arrays.numpy_dtype(config["dtype"]))
    return values.reshape(config["shape"])


# -- The shared machinery ----------------------------------------------------


class UnitRecycling(Preset):
    """The base of ReDo and ContinualBackprop: probe, choose units, recycle them.

    A subclass implements `_choose(groups, activity, step)`, returning
    `({layer name: bool vector of units to recycle}, extra log values)`.
    Logs: `<name>_changed` (entries whose value changed), `<name>_fraction`
    (over every entry recycling can write: the probed layers' kernels and
    biases and their consumers' kernels), `<name>_sparsity` (zeros among
    them), `<name>_dormant` (the fraction of probed units dormant before the
    application) and `<name>_replaced` (units recycled). At batch frequency
    the epoch logs carry the units replaced over the epoch and the last
    dormant fraction.
    """

    def __init__(self, rule, probe, layers, frequency, seed, verbose, name):
        probe = _probe(probe, type(self).__name__)
        super().__init__([rule], layers=layers, weights=True, biases=True, frequency=frequency,
                         seed=seed, verbose=verbose, name=name, reset_optimizer=True)
        # The inputs the units are measured on; PlasticityCallback's own
        # `probe` (an `(x, y)` batch for selectors that declare inputs) is unused here.
        self.probe = probe
        self._groups = None
        self._groups_model = None
        self._activity = None
        self._epoch_replaced = 0
        self._last_dormant = 0.0

    # -- what to touch: the units' variables -----------------------------------

    def unit_groups(self):
        """The `UnitGroup`s this callback recycles, found from `self.model`'s graph."""
        model = self._checked_model()
        if self._groups is None or self._groups_model is not model:
            found = units.find(model, self.layers)
            if not found:
                return []  # not built yet: looked for again at the next application
            self._groups, self._groups_model = found, model
            self._activity = unit_activity.ActivityProbe(model, [g.layer.name for g in found])
        return self._groups

    def targeted_variables(self):
        """Every variable a recycle can write: kernels and biases of the unit
        layers, and their consumers' kernels."""
        return units.variables(self.unit_groups())

    # -- applying --------------------------------------------------------------

    def apply(self, step):
        """Probes the units, recycles those `_choose` picks, and reports.

        Returns:
            `{"changed", "fraction", "sparsity", "dormant", "replaced"}`, as
            written into `logs` with the callback's name before each key.
        """
        variables = self._resolved()
        model = self._targets_model
        groups = self.unit_groups()
        changed, replaced, dormant = 0, 0, 0.0
        if not groups:
            self._warn_no_target(model)
        else:
            activity = self._activity(self.probe)
            chosen, dormant = self._choose(groups, activity, step)
            replaced = sum(int(np.count_nonzero(mask)) for mask in chosen.values())
            if replaced:
                optimizer = getattr(model, "optimizer", None)
                if optimizer is None:
                    raise ValueError(
                        f"{type(self).__name__} zeroes the optimizer state of the units it recycles, "
                        f"but model '{model.name}' has no optimizer. Compile the model, or set "
                        "`model.optimizer` to the optimizer your training loop steps."
                    )
                changed = units.recycle(groups, chosen, lambda g, v, m: self._incoming(g, v, m, step),
                                        optimizer)
        zeros = size = 0
        for variable in variables:
            z, n = zeros_and_size(variable)
            zeros, size = zeros + z, size + n
        result = {
            "changed": changed,
            "fraction": changed / size if size else 0.0,
            "sparsity": zeros / size if size else 0.0,
            "dormant": dormant,
            "replaced": replaced,
        }
        self._epoch_replaced += replaced
        self._last_dormant = dormant
        if self.verbose:
            lead = "\n" if (self.params or {}).get("verbose") in (1, "auto") else ""
            io_utils.print_msg(
                f"{lead}{self.name} at step {step}: recycled {replaced} units ({dormant:.2%} dormant); "
                f"changed {changed} of {size} entries of '{model.name}'."
            )
        return result

    def _incoming(self, group, value, mask, step):
        """Fresh incoming weights from the layer's own initializer (the rule's mutator)."""
        mutator = self.rules_for(group.kernel)[0].mutator
        return mutator(value, mask, seeds.derive(self.variable_seed(group.kernel, step), "incoming"))

    def _selection_seed(self, group, step):
        return seeds.derive(self.variable_seed(group.kernel, step), "units")

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._epoch_replaced = 0

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.frequency != "epoch":
            self._log(logs, {"dormant": self._last_dormant, "replaced": self._epoch_replaced})

    # -- config ----------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config["probe"] = _encode_probe(self.probe)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        probe = _decode_probe(config.pop("probe"))
        return cls(probe=probe, **{key: serialization._decode(value) for key, value in config.items()})


def _frequency_steps(frequency):
    if isinstance(frequency, str) or isinstance(frequency, bool):
        raise ValueError(
            "ContinualBackprop counts unit ages and replacement rates in optimizer steps: "
            f"`frequency` must be a positive number of steps. Received: frequency={frequency!r}"
        )
    return checks.integer("frequency", frequency, minimum=1)


@keras.saving.register_keras_serializable(package="kerastroke")
class ReDo(UnitRecycling):
    """Recycling dormant neurons (Sokar, Agarwal, Castro and Evci, ICML 2023).

    Update rule, at every application (the end of each epoch, or every
    `frequency` optimizer steps):

    1. Run the probe batch through the model; for each hidden unit `i` of a
       layer `l` take `a_i`, its mean |activation| over the batch (and over
       the spatial positions of a Conv filter).
    2. Score it `s_i = a_i / mean_{j in l} a_j` (`activity.redo_scores`);
       the unit is dormant when `s_i <= threshold` (tau). With tau = 0 only
       units silent on every probe input are dormant.
    3. Recycle every dormant unit: its incoming weights (kernel column or
       filter) are drawn afresh from the layer's own initializer, its bias
       and its outgoing weights (the next layer's rows, or input-channel
       slice) become 0, and the optimizer's per-entry state (Adam's moments)
       of those entries is zeroed.

    Logs `<name>_dormant` (the fraction of probed units dormant before the
    recycle, the paper's measure of lost expressivity) and `<name>_replaced`
    (units recycled), besides `<name>_changed`, `<name>_fraction` and
    `<name>_sparsity`.

    Where this simplifies the paper: the score uses one probe batch given
    by the user rather than the current training batch (a Keras callback
    does not see it), and applications follow Keras's epoch or step count
    (the paper recycles every 1000 steps of a reinforcement-learning agent;
    `frequency=1000` does the same).

    Args:
        threshold: tau, a float >= 0: dormant when the score is <= tau.
            The paper uses 0.0 to 0.1 (0.025 for its Atari agents).
        frequency: "epoch", or every N optimizer steps.
        probe: A batch of inputs (an array, or a list or dict of arrays for
            a model with several inputs), e.g. `x_train[:256]`; required.
        layers: None for every hidden Dense/Conv layer, or a list of layer
            names and/or indices (each must feed one Dense or Conv layer).
        seed: Base seed of the initializer draws; None picks one.
        verbose: 1 prints a line per application.
        name: Prefix of the keys in `logs`, default "redo".

    Example:
    >>> import numpy as np
    >>> from kerastroke import ReDo
    >>> x_train = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
    >>> redo = ReDo(threshold=0.025, probe=x_train[:256], seed=0)
    >>> redo.get_config()["threshold"]
    0.025
    >>> # model.fit(x_train, y_train, epochs=10, callbacks=[redo])
    """

    default_name = "redo"

    def __init__(self, threshold=0.0, frequency="epoch", probe=None, layers=None, seed=None,
                 verbose=0, name=None):
        self._keep(threshold=threshold, frequency=frequency, layers=layers)
        self.threshold = checks.non_negative("threshold", threshold)
        rule = Rule(selectors.lowest(self.threshold), mutators.initializer())
        super().__init__(rule, probe, layers, frequency, seed, verbose, name)

    def _choose(self, groups, activity, step):
        chosen, dormant, total = {}, 0, 0
        select = self.rules[0].selector
        for group in groups:
            name = group.layer.name
            scores = unit_activity.redo_scores(activity[name])
            mask = arrays.to_numpy(select(scores, 1.0, self._selection_seed(group, step)))
            chosen[name] = mask
            dormant += int(np.count_nonzero(mask))
            total += mask.size
        return chosen, dormant / total if total else 0.0


class _UnitState:
    """Continual backprop's bookkeeping for one layer's units."""

    def __init__(self, size, step):
        self.utility = np.zeros(size)  # the running average, not yet bias-corrected
        self.born = np.full(size, step, dtype=np.int64)  # step of the unit's last (re)start
        self.updated = step  # step of the last utility update
        self.carry = 0.0  # replacements owed but not yet whole


@keras.saving.register_keras_serializable(package="kerastroke")
class ContinualBackprop(UnitRecycling):
    """Continual backpropagation (Dohare et al., Nature 632, 2024, "Loss of
    plasticity in deep continual learning").

    Update rule, every `frequency` optimizer steps, for each hidden layer:

    1. Each unit's contribution is `c_i = a_i * sum_k |w_out_ik|`: its mean
       |activation| over the probe batch times the summed magnitude of its
       outgoing weights.
    2. Its utility is a running average, `u_i <- d * u_i + (1 - d) * c_i`
       with `d = decay ** (steps since the last update)` (so `frequency=N`
       averages as if `c_i` had been seen at each of the N steps), read
       bias-corrected, `u_i / (1 - decay ** age_i)`.
    3. Units older than `maturity` steps are eligible. The layer owes
       `replacement_rate * eligible` replacements per step; the owed count
       accumulates (fractions carried over) and its whole part is replaced
       now: the eligible units with the lowest utility (ties at random).
    4. Replaced units are recycled as in `ReDo` (fresh incoming weights from
       the layer's initializer, zero bias and outgoing weights, zeroed
       optimizer state); their utility and age restart at 0.

    Ages and utilities live in the callback: they carry over from one `fit`
    to the next on the same model (a sequence of tasks trained with several
    `fit` calls is one continual run), and restart for another model, for
    another architecture, or when the optimizer's step count goes back.

    Where this simplifies the paper: utilities are measured on a probe batch
    the user gives, at each application, rather than on every training
    batch (a Keras callback does not see the batches, and catching hidden
    activations inside the compiled train step would mean rebuilding it);
    the "mean-corrected" utility and the bias correction of the next layer
    from the paper's variants are not used (outgoing weights are zero, so a
    replaced unit starts without any effect on the output).

    Args:
        replacement_rate: rho, the fraction of eligible units replaced per
            step, in [0, 1] (the paper: 1e-4 for its MLPs; 1e-5 to 1e-3).
        decay: eta, in [0, 1): the running average's decay per step (0.99).
        maturity: m, an int >= 0: steps a unit is protected after its start
            (100).
        probe: A batch of inputs (as for `ReDo`); required.
        frequency: Every N optimizer steps (an int >= 1; default 1, as in
            the paper). Each application runs the probe once: raise it to
            spend less time probing.
        layers: None for every hidden Dense/Conv layer, or names/indices.
        seed, verbose: As for `PlasticityCallback`.
        name: Prefix of the keys in `logs`, default "continual_backprop".
            `<name>_replaced` counts units replaced; `<name>_dormant` is the
            fraction of probed units silent on the whole probe.

    Example:
    >>> import numpy as np
    >>> from kerastroke import ContinualBackprop
    >>> x_train = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
    >>> cbp = ContinualBackprop(replacement_rate=1e-3, probe=x_train[:128], frequency=10, seed=0)
    >>> cbp.get_config()["maturity"]
    100
    >>> # model.fit(x_train, y_train, epochs=10, callbacks=[cbp])
    """

    default_name = "continual_backprop"

    def __init__(self, replacement_rate=1e-4, decay=0.99, maturity=100, probe=None, frequency=1,
                 layers=None, seed=None, verbose=0, name=None):
        self._keep(replacement_rate=replacement_rate, decay=decay, maturity=maturity,
                   frequency=frequency, layers=layers)
        self.replacement_rate = checks.fraction("replacement_rate", replacement_rate)
        self.decay = checks.fraction("decay", decay)
        if self.decay == 1.0:
            raise ValueError(f"`decay` must be < 1. Received: decay={decay!r}")
        self.maturity = checks.integer("maturity", maturity, minimum=0)
        rule = Rule(selectors.lowest(), mutators.initializer())
        super().__init__(rule, probe, layers, _frequency_steps(frequency), seed, verbose, name)
        self._states = {}
        self._states_model = None

    def unit_state(self, layer_name):
        """`(utility, age at the last application, owed replacements)` of a layer's units.

        The utility is bias-corrected; ages are in optimizer steps.
        """
        state = self._states[layer_name]
        age = state.updated - state.born
        return self._corrected(state, age), age, state.carry

    def _corrected(self, state, age):
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = 1.0 - self.decay ** age.astype(np.float64)
            return np.where(correction > 0, state.utility / np.where(correction > 0, correction, 1), 0.0)

    def _state(self, group, step):
        """The layer's state, started afresh where it does not fit this model and step."""
        if self._states_model is not self._targets_model:
            self._states, self._states_model = {}, self._targets_model
        name = group.layer.name
        state = self._states.get(name)
        if state is None or state.born.size != group.units or step < state.updated:
            # Units are taken to have started one period ago: the first
            # application averages and owes one period's worth.
            state = _UnitState(group.units, max(step - self.frequency, 0))
            self._states[name] = state
        return state

    def _choose(self, groups, activity, step):
        chosen, silent, total = {}, 0, 0
        select = self.rules[0].selector
        for group in groups:
            name = group.layer.name
            values = np.asarray(activity[name], np.float64)
            silent += int(np.count_nonzero(values == 0.0))
            total += values.size
            state = self._state(group, step)
            elapsed = step - state.updated
            contribution = values * arrays.to_numpy(group.outgoing_magnitude()).astype(np.float64)
            kept = self.decay**elapsed
            state.utility = kept * state.utility + (1.0 - kept) * contribution
            state.updated = step
            age = step - state.born
            mature = age > self.maturity
            state.carry += self.replacement_rate * int(np.count_nonzero(mature)) * elapsed
            owed = math.floor(state.carry)
            state.carry -= owed
            # Immature units are not eligible: an infinite score never is.
            scores = np.where(mature, self._corrected(state, age), np.inf).astype(np.float32)
            eligible = int(np.count_nonzero(np.isfinite(scores)))
            count = min(owed, eligible)
            mask = np.zeros(group.units, dtype=bool)
            if count:
                mask = arrays.to_numpy(select(scores, count / eligible,
                                              self._selection_seed(group, step)))
                state.utility[mask] = 0.0
                state.born[mask] = step
            chosen[name] = mask
        return chosen, silent / total if total else 0.0
