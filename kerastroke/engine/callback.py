"""`PlasticityCallback`: applies rules to a model's weights during `fit`."""

import warnings

import keras
from keras.src.utils import io_utils

import attrs

from kerastroke.core import checks, seeds
from kerastroke.engine import fit_checks, initializers, optimizer_state, persistence, probes, targets
from kerastroke.engine import writer as write
from kerastroke.engine.rule import Rule
from kerastroke.engine.sparsity import zeros_and_size


def _rules(rules):
    if isinstance(rules, Rule):
        rules = [rules]
    try:
        rules = list(rules)
    except TypeError:
        raise TypeError(f"`rules` must be a Rule or a list of Rules. Received: rules={rules!r}") from None
    if not rules:
        raise ValueError("`rules` must contain at least one Rule. Received: rules=[]")
    for index, rule in enumerate(rules):
        if not isinstance(rule, Rule):
            raise TypeError(f"`rules[{index}]` must be a kerastroke.Rule. Received: {rule!r}")
    return rules


def _frequency(frequency):
    if frequency == "epoch":
        return frequency
    if isinstance(frequency, str):
        raise ValueError(
            f'`frequency` must be "epoch" or a positive number of batches. Received: frequency={frequency!r}'
        )
    return checks.integer("frequency", frequency, minimum=1)


def _probe(probe, rules):
    """The checked probe batch; required once a rule's selector declares inputs."""
    probe = probes.check_probe(probe)
    for index, rule in enumerate(rules):
        names = probes.declared(rule.selector)
        if names and probe is None:
            raise ValueError(
                f"`probe` must be given: rule {index}'s selector {rule.selector!r} declares the inputs "
                f"{names}, measured on a probe batch. Pass probe=(x, y). Received: probe=None"
            )
    return probe


def _verbose(verbose):
    if isinstance(verbose, bool):
        return int(verbose)
    return checks.integer("verbose", verbose, minimum=0)


def _name(name, default):
    if name is None:
        return default
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string. Received: name={name!r}")
    return name


@keras.saving.register_keras_serializable(package="kerastroke")
class PlasticityCallback(keras.callbacks.Callback):
    """Applies plasticity rules to a model's weights during training.

    At the end of each epoch (or every `frequency` optimizer steps) each rule
    runs, in order, on every targeted variable: the schedule gives an amount
    for the step, the selector picks entries, the mutator gives their new
    values, and the variable is written once, after every rule has run.

    The step is the absolute epoch index (so `initial_epoch` and resumed
    training follow the same schedule) or, at batch frequency, the optimizer's
    step count (`model.optimizer.iterations`). Every random draw depends only
    on (seed, step, variable, rule), where a variable is known by its position
    in `model.weights`: the same seed gives the same weights, whatever the
    model and its layers are named, and training resumed with `initial_epoch`
    repeats a straight run.

    After each application `logs` gains `<name>_changed` (entries whose value
    changed), `<name>_fraction` (that count over all targeted entries) and
    `<name>_sparsity` (the fraction of targeted entries exactly zero);
    History and TensorBoard record them. TensorBoard and CSVLogger write the
    logs when their own hook runs, so they must come after this callback in
    `callbacks`; training warns when one comes before. At batch frequency the batch logs of
    an application carry its figures, and the epoch logs carry the total
    changed over the epoch, the mean fraction per application and the
    sparsity at the epoch's end.

    Validation metrics that Keras computes during `fit` are measured before
    `on_epoch_end`, so they see the weights from before that epoch's
    application.

    In a custom training loop (a `tf.GradientTape` loop, a JAX or PyTorch
    loop) call `set_model(model)` once, then `apply(step)` wherever an
    application belongs: it applies whatever `frequency` says, which only
    drives `fit`. With `reset_optimizer=True` the state reset is that of
    `model.optimizer`: set it to the optimizer the loop steps.

    Args:
        rules: A `Rule` or a list of them, applied in order.
        layers: None for the whole model, or a list of layer indices (as in
            `model.layers[i]`) and/or layer names (nested layers included).
        weights: Touch kernels: trainable float variables with 2+ dimensions
            that are not named `bias`.
        biases: Touch trainable float variables named `bias`.
        frequency: "epoch", or an int N to apply whenever the optimizer's step
            count reaches a multiple of N.
        seed: Base seed (int >= 0). None picks one, kept in `self.seed` and
            in `get_config()`.
        verbose: 1 prints a line per application, on its own line below
            Keras's progress bar.
        name: Prefix of the keys written into `logs` (default
            "plasticity"; each preset has its own). Two callbacks of one fit
            need distinct names: two `name=` alike fail when training
            begins; a default name that another callback uses gets a suffix
            (`stroke_1`, as Keras numbers layer names), with a warning, and
            keeps it.
        persistent: Hold every entry that is exactly zero after an
            application at zero through the optimizer steps that follow,
            until the next application (a variable constraint, which Keras
            runs after every optimizer step). Use `kerastroke.strip(model)`
            to remove the constraints after training.
        reset_optimizer: Zero the optimizer's per-entry state (Adam's moments,
            SGD's momentum) of every entry an application changed.
        probe: `(x, y)` arrays of a batch, needed when a rule's selector
            declares inputs (`selectors.gradient_drop_and_grow` declares
            "gradient"): before each application they are measured on this
            batch for every targeted variable (see `kerastroke.engine.probes`).

    Example:
    >>> import keras
    >>> from kerastroke import PlasticityCallback, Rule, selectors, mutators
    >>> prune_small = Rule(selectors.value_range(-0.01, 0.01), mutators.zero())
    >>> callback = PlasticityCallback([prune_small], seed=0)
    >>> callback.get_config()["seed"]
    0
    >>> # model.fit(x, y, epochs=5, callbacks=[callback])

    In a custom training loop:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> prune_all = PlasticityCallback(Rule(selectors.random_fraction(), mutators.zero()), seed=0)
    >>> prune_all.set_model(model)
    >>> for step in range(3):
    ...     pass  # gradients, then optimizer.apply(grads, model.trainable_variables)
    ...     result = prune_all.apply(step)
    >>> result["sparsity"]
    1.0
    """

    default_name = "plasticity"
    _warn_stacklevel = 2  # Subclasses that wrap __init__ point warnings at their caller.

    # `callbacks=[Stroke]` (the class) fails at once with what to pass instead.
    set_model = fit_checks.instance_only(keras.callbacks.Callback.set_model)

    def __init__(
        self,
        rules,
        layers=None,
        weights=True,
        biases=False,
        frequency="epoch",
        seed=None,
        verbose=0,
        name=None,
        persistent=False,
        reset_optimizer=False,
        probe=None,
    ):
        super().__init__()
        self.rules = _rules(rules)
        self.layers = targets.check_layers(layers)
        self.weights = checks.boolean("weights", weights)
        self.biases = checks.boolean("biases", biases)
        self.frequency = _frequency(frequency)
        self.seed = seeds.fresh() if seed is None else checks.integer("seed", seed, minimum=0)
        self.verbose = _verbose(verbose)
        self.name = _name(name, self.default_name)
        self._name_is_default = name is None
        self.persistent = checks.boolean("persistent", persistent)
        self.reset_optimizer = checks.boolean("reset_optimizer", reset_optimizer)
        self.probe = _probe(probe, self.rules)
        if not (self.weights or self.biases):
            warnings.warn(
                f"{type(self).__name__}: weights=False and biases=False: nothing will be changed.",
                stacklevel=self._warn_stacklevel,
            )
        self._targets = None
        self._targets_model = None  # the model `_targets`, `_positions`, `_bound` and `_owners` belong to
        self._positions = None
        self._warned_no_target = False
        self._bound = {}
        self._owners = None  # `initializers.owners` of the model, for `_bound`
        self._plan = None
        self._resuming = False
        self._fitting = False  # between on_train_begin and on_train_end
        self._last_iteration = 0
        self._epoch_first_iteration = 0
        self._epoch_changed = 0
        self._epoch_fractions = []
        if self.frequency != "epoch":
            # Defined per instance so epoch-frequency callbacks keep Keras's
            # asynchronous batch dispatch.
            self.on_train_batch_end = self._on_train_batch_end

    # -- what to touch -------------------------------------------------------

    def targeted_variables(self):
        """The variables this callback writes, resolved against `self.model`.

        Raises:
            RuntimeError: if no model was set (`set_model`).
            ValueError: if an entry of `layers` names no layer of the model.
        """
        return targets.variables(self._checked_model(), self.layers, self.weights, self.biases)

    def _checked_model(self):
        model = self.model  # On JAX this syncs the trainer's state into the variables.
        if model is None:
            raise RuntimeError(
                f"{type(self).__name__} has no model: call `callback.set_model(model)` before "
                "`callback.apply(step)` (`fit` sets it for you)."
            )
        return model

    def _resolved(self):
        """The targeted variables of the current model, cached per model.

        A model that is not built yet (a `Sequential` without `keras.Input`,
        a subclassed model) has no weights before its first batch: an empty
        result is not kept, so the next application looks again.
        """
        model = self._checked_model()
        if self._targets is not None and self._targets_model is model:
            return self._targets
        found = self.targeted_variables()
        self._targets_model = model
        self._targets = found or None
        self._positions = targets.positions(model)
        self._bound = {}
        self._owners = None
        self._plan = None
        return found

    def variable_seed(self, variable, step):
        """The seed of `variable`'s draws at `step`, as `write.apply_rules` takes it.

        It depends on the base seed, the step and the variable's position in
        `model.weights` only, so identical models draw identically.
        """
        positions = self._positions
        if positions is None or id(variable) not in positions:
            positions = targets.positions(self.model)
        position = positions.get(id(variable), variable.path)
        return seeds.derive(self.seed, step, position)

    def rules_for(self, variable):
        """The rules as applied to `variable`: mutators that draw from "the
        layer's own initializer" are given the initializer of its layer."""
        bound = self._bound.get(id(variable))
        if bound is None:
            initializer = None
            bound = []
            for rule in self.rules:
                bind = getattr(rule.mutator, "with_default_initializer", None)
                if bind is not None:
                    if initializer is None:
                        if self._owners is None or id(variable) not in self._owners:
                            self._owners = initializers.owners(self.model)
                        initializer = initializers.of(self.model, variable, self._owners)
                    rule = attrs.evolve(rule, mutator=bind(initializer))
                bound.append(rule)
            self._bound[id(variable)] = bound
        return bound

    def on_train_begin(self, logs=None):
        callbacks = fit_checks.running_callbacks(self)
        if callbacks is not None:
            fit_checks.unique_names(callbacks, lambda other: isinstance(other, PlasticityCallback))
            fit_checks.warn_loggers_before(
                self, callbacks, [f"{self.name}_{key}" for key in ("changed", "fraction", "sparsity")]
            )
        self._targets = None  # resolved again: layers may have been added since the last fit
        self._warned_no_target = False
        self._fitting = True
        variables = self._resolved()
        if self.persistent:
            # Before the train step is first traced, so that applications only
            # assign masks it reads as state. A model built by its first batch
            # (TensorFlow, a Sequential without `keras.Input`) has no variables
            # yet: its holds attach at the first application, which rebuilds
            # the train function once.
            self._attach_holds(variables)
        self._resuming = self.persistent
        self._epoch_changed = 0
        self._epoch_fractions = []
        if self.frequency != "epoch":
            self._last_iteration = self._epoch_first_iteration = self._iterations()

    def _warn_no_target(self, model):
        if not self._warned_no_target:
            self._warned_no_target = True
            warnings.warn(
                f"{type(self).__name__} targets no variable of model '{model.name}' "
                f"(layers={None if self.layers is None else list(self.layers)}, "
                f"weights={self.weights}, biases={self.biases}): it will change nothing.",
                stacklevel=3,
            )

    def on_train_end(self, logs=None):
        if self.persistent and optimizer_state.has_averages(getattr(self.model, "optimizer", None)):
            # `fit` has just copied the optimizer's moving averages over the
            # weights; they were updated before the hold ran at each step.
            for variable in self._resolved():
                persistence.hold_again(variable)
        self._fitting = False

    # -- applying ------------------------------------------------------------

    def apply(self, step):
        """Applies every rule once at `step` to every targeted variable.

        Args:
            step: The epoch index, or the optimizer's step count at batch
                frequency; passed to every rule's schedule.

        Returns:
            A dict `{"changed": int, "fraction": float, "sparsity": float}`:
            entries whose value changed, that count over all targeted
            entries, and the fraction of targeted entries exactly zero.
        """
        variables = self._resolved()
        model = self._targets_model
        if not variables:
            self._warn_no_target(model)
        rule_amounts = write.amounts(self.rules, step)
        if self.reset_optimizer and any(rule_amounts) and getattr(model, "optimizer", None) is None:
            raise ValueError(
                f"{type(self).__name__}(reset_optimizer=True) has no optimizer state to reset: model "
                f"'{model.name}' has no optimizer. Compile the model, or set `model.optimizer` to the "
                "optimizer your training loop steps."
            )
        changed = 0
        counted = {}  # zeros the writer counted on the way, by id(variable)
        keeps = {} if self.persistent else None  # and the masks holding them
        if any(rule_amounts):
            # An optimizer's moving average (`use_ema=True`) replaces the
            # weights at the end of `fit`: it gets the same write.
            follow = self.reset_optimizer or optimizer_state.has_averages(getattr(model, "optimizer", None))
            changed = self._writer(variables).write(
                rule_amounts,
                lambda variable: self.variable_seed(variable, step),
                seeds.derive(self.seed, step),
                changed=self._after_write if follow else None,
                zeros=counted,
                keeps=keeps,
                inputs=self._measure(variables, rule_amounts),
            )
            if self.persistent:
                self._hold(variables, keeps)
        zeros, size = _zeros_and_size(variables, counted)
        fraction = changed / size if size else 0.0
        result = {"changed": changed, "fraction": fraction, "sparsity": zeros / size if size else 0.0}
        if self.verbose and any(rule_amounts):
            # Keras's progress bar (fit's verbose=1 or "auto") leaves its line
            # open: start a new one, as EarlyStopping and ReduceLROnPlateau do.
            lead = "\n" if (self.params or {}).get("verbose") in (1, "auto") else ""
            io_utils.print_msg(
                f"{lead}{self.name} at step {step}: changed "
                f"{changed} of {size} entries ({fraction:.2%}) in {len(variables)} variables of "
                f"'{model.name}'; {result['sparsity']:.2%} are zero."
            )
        return result

    def _writer(self, variables):
        """The writer's plan for the current targets, built at the first application."""
        if self._plan is None or self._plan.variables != variables:
            self._plan = write.Plan(variables, self.rules_for, name=type(self).__name__)
        return self._plan

    def _measure(self, variables, rule_amounts):
        """The inputs that the selectors of this application's rules declare, by variable."""
        names = {name for rule, amount in zip(self.rules, rule_amounts) if amount
                 for name in probes.declared(rule.selector)}
        if not names or not variables:
            return None
        return probes.measure(names, self._targets_model, self.probe, variables)

    def _after_write(self, variables, masks):
        optimizer = getattr(self._targets_model, "optimizer", None)
        if self.reset_optimizer:
            optimizer_state.reset(optimizer, variables, masks)
        optimizer_state.follow_averages(optimizer, variables, masks)

    def _attach_holds(self, variables):
        """Attaches the holds `variables` lack; rebuilds a train function that would miss them."""
        model = self._targets_model
        # In `fit` the masks become state of the optimizer's compiled step
        # where the backend needs that (JAX); a custom loop steps its own way.
        optimizer = getattr(model, "optimizer", None) if self._fitting else None
        if persistence.attach(variables, optimizer) and getattr(model, "compiled", False):
            model.make_train_function(force=True)

    def _hold(self, variables, keeps=None):
        # `self.model` synced JAX's trainer state into the variables (in
        # `_resolved`): its next step takes the masks assigned here.
        self._attach_holds(variables)
        persistence.hold_zeros(variables, None if keeps is None else [keeps[id(v)] for v in variables])

    def _log(self, logs, result):
        if logs is not None:
            for key, value in result.items():
                logs[f"{self.name}_{key}"] = value

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_changed = 0
        self._epoch_fractions = []
        # Read here rather than in on_train_begin only, once every callback
        # (BackupAndRestore among them) has restored its state.
        if self.frequency != "epoch":
            self._last_iteration = self._iterations()  # the restored step count, not 0
            self._epoch_first_iteration = self._last_iteration
        if self._resuming:
            # In resumed training the zeros of the restored weights are the held ones.
            self._resuming = False
            if self._iterations() > 0:
                self._hold(self._resolved())

    def on_epoch_end(self, epoch, logs=None):
        if self.frequency == "epoch":
            self._log(logs, self.apply(epoch))
        else:
            fractions = self._epoch_fractions
            zeros, size = _zeros_and_size(self._resolved())
            self._log(logs, {
                "changed": self._epoch_changed,
                "fraction": sum(fractions) / len(fractions) if fractions else 0.0,
                "sparsity": zeros / size if size else 0.0,
            })

    def _iterations(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _step_after(self, batch):
        """The optimizer's step count after `batch` of this epoch.

        Counted from the epoch's first step rather than read from the model:
        on JAX reading `self.model` copies the whole training state out of
        the trainer, which at every batch would cost more than the training
        step. With gradient accumulation the optimizer steps every few
        batches, so the count is read.
        """
        optimizer = getattr(self._model, "optimizer", None)
        if getattr(optimizer, "gradient_accumulation_steps", None):
            return self._iterations()
        return self._epoch_first_iteration + batch + 1

    def _on_train_batch_end(self, batch, logs=None):
        step = self._step_after(batch)
        previous, self._last_iteration = self._last_iteration, step
        # With steps_per_execution > 1 the count moves by several steps per
        # call: apply once whenever it passes a multiple of `frequency`.
        if step // self.frequency == previous // self.frequency:
            return
        result = self.apply(step)
        self._epoch_changed += result["changed"]
        self._epoch_fractions.append(result["fraction"])
        self._log(logs, result)

    # -- config --------------------------------------------------------------

    def get_config(self):
        """The constructor's arguments; raises TypeError for unregistered pieces."""
        return {
            "rules": [rule.get_config() for rule in self.rules],
            "layers": None if self.layers is None else list(self.layers),
            "weights": self.weights,
            "biases": self.biases,
            "frequency": self.frequency,
            "seed": self.seed,
            "verbose": self.verbose,
            "name": self.name,
            "persistent": self.persistent,
            "reset_optimizer": self.reset_optimizer,
            "probe": self.probe,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["rules"] = [Rule.from_config(rule) for rule in config["rules"]]
        return cls(**config)


def _zeros_and_size(variables, counted=None):
    """Zeros and entries over `variables`; `counted` holds zeros known already, by id."""
    counted = counted or {}
    zeros = size = 0
    for variable in variables:
        z, n = zeros_and_size(variable, counted.get(id(variable)))
        zeros += z
        size += n
    return zeros, size
