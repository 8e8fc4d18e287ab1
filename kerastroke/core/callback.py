"""`PlasticityCallback`: applies rules to a model's weights during `fit`."""

import warnings

import keras

from kerastroke.core import checks, seeds, targets, write
from kerastroke.core.types import Rule


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


class PlasticityCallback(keras.callbacks.Callback):
    """Applies plasticity rules to a model's weights during training.

    At the end of each epoch (or every `frequency` optimizer steps) each rule
    runs, in order, on every targeted variable: the schedule gives an amount
    for the step, the selector picks entries, the mutator gives their new
    values, and the variable is written once.

    The step is the absolute epoch index (so `initial_epoch` and resumed
    training follow the same schedule) or, at batch frequency, the optimizer's
    step count. Every random draw depends only on (seed, step, variable path,
    rule), so the same seed gives the same weights.

    After each application `logs` gains `<name>_changed` (entries that
    changed) and `<name>_fraction` (that count over all targeted entries);
    History and TensorBoard record them. At batch frequency the epoch's logs
    carry the totals over the epoch.

    Args:
        rules: A `Rule` or a list of them, applied in order.
        layers: None for the whole model, or a list of layer indices (as in
            `model.layers[i]`) and/or layer names.
        weights: Touch kernels: trainable float variables with 2+ dimensions.
        biases: Touch variables named `bias`.
        frequency: "epoch", or an int N to apply every N optimizer steps.
        seed: Base seed (int >= 0). None picks one, kept in `self.seed`.
        verbose: 1 prints a line per application.
        name: Prefix of the keys written into `logs`.

    Example:
    >>> import keras
    >>> from kerastroke import PlasticityCallback, Rule, selectors, mutators
    >>> prune_small = Rule(selectors.value_range(-0.01, 0.01), mutators.zero())
    >>> callback = PlasticityCallback([prune_small], seed=0)
    >>> # model.fit(x, y, epochs=5, callbacks=[callback])
    """

    default_name = "plasticity"

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
    ):
        super().__init__()
        self.rules = _rules(rules)
        self.layers = targets.check_layers(layers)
        self.weights = checks.boolean("weights", weights)
        self.biases = checks.boolean("biases", biases)
        self.frequency = _frequency(frequency)
        self.seed = seeds.fresh() if seed is None else checks.integer("seed", seed, minimum=0)
        self.verbose = checks.integer("verbose", verbose, minimum=0)
        self.name = self.default_name if name is None else str(name)
        if not (self.weights or self.biases):
            warnings.warn(
                f"{type(self).__name__}: weights=False and biases=False: nothing will be changed.",
                stacklevel=2,
            )
        self._targets = None
        self._epoch_changed = 0
        if self.frequency != "epoch":
            # Defined per instance so epoch-frequency callbacks keep Keras's
            # asynchronous batch dispatch.
            self.on_train_batch_end = self._on_train_batch_end

    # -- what to touch -------------------------------------------------------

    def targeted_variables(self):
        """The variables this callback writes, resolved against `self.model`."""
        return targets.variables(self.model, self.layers, self.weights, self.biases)

    def on_train_begin(self, logs=None):
        self._targets = self.targeted_variables()
        if not self._targets:
            warnings.warn(
                f"{type(self).__name__} targets no variable of model '{self.model.name}' "
                f"(layers={self.layers}, weights={self.weights}, biases={self.biases}): "
                "it will change nothing.",
                stacklevel=2,
            )

    # -- applying ------------------------------------------------------------

    def apply(self, step):
        """Applies every rule once at `step` to every targeted variable.

        Returns:
            A dict `{"changed": int, "fraction": float}`.
        """
        model = self.model  # On JAX this syncs the trainer's state into the variables.
        variables = self._targets if self._targets is not None else self.targeted_variables()
        rule_amounts = write.amounts(self.rules, step)
        changed = 0
        if any(rule_amounts):
            for variable in variables:
                changed += write.write_rules(
                    variable,
                    self.rules,
                    step,
                    seeds.derive(self.seed, step, variable.path),
                    rule_amounts=rule_amounts,
                )
        size = sum(_size(v) for v in variables)
        fraction = changed / size if size else 0.0
        if self.verbose:
            print(
                f"{type(self).__name__} at step {step}: changed {changed} of {size} "
                f"entries ({fraction:.2%}) in {len(variables)} variables of '{model.name}'."
            )
        return {"changed": changed, "fraction": fraction}

    def _log(self, logs, changed, fraction):
        if logs is not None:
            logs[f"{self.name}_changed"] = changed
            logs[f"{self.name}_fraction"] = fraction

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_changed = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.frequency == "epoch":
            result = self.apply(epoch)
            self._log(logs, result["changed"], result["fraction"])
        else:
            size = sum(_size(v) for v in self._targets or ())
            self._log(logs, self._epoch_changed, self._epoch_changed / size if size else 0.0)

    def _on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.frequency:
            return
        result = self.apply(step)
        self._epoch_changed += result["changed"]
        self._log(logs, result["changed"], result["fraction"])

    # -- config --------------------------------------------------------------

    def get_config(self):
        return {
            "rules": [rule.get_config() for rule in self.rules],
            "layers": None if self.layers is None else list(self.layers),
            "weights": self.weights,
            "biases": self.biases,
            "frequency": self.frequency,
            "seed": self.seed,
            "verbose": self.verbose,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["rules"] = [Rule.from_config(rule) for rule in config["rules"]]
        return cls(**config)


def _size(variable):
    size = 1
    for dim in variable.shape:
        size *= int(dim)
    return size
