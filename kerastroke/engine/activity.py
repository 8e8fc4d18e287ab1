"""How active each unit is: mean |activation| over a probe batch.

A unit is an output unit of a Dense layer (the last axis of its output) or a
filter of a Conv layer (the channel axis, channels last); its activity is the
mean of |activation| over the batch and, for a Conv filter, over every
spatial position. `unit_activity` measures it on a batch of inputs the user
gives; `dormant_fraction` turns it into ReDo's count of dormant units, and
`RunningActivity` keeps an exponential average over several probes.

Sequential models run their layers in order; functional models run a Keras
model from the model's inputs to the probed layers' outputs; a subclassed
model has no graph to read, so the layers to probe are named and their
outputs caught while the model runs on the probe.
"""

import keras
import numpy as np

from kerastroke.core import arrays, checks
from kerastroke.engine import targets, units


def _mean_abs(output, name):
    if isinstance(output, (list, tuple, dict)):
        raise ValueError(
            f"Layer '{name}' returns {type(output).__name__} of several tensors; probe a layer "
            "with one output."
        )
    x = np.abs(np.asarray(arrays.to_numpy(output), dtype=np.float64))
    if x.ndim < 2:
        raise ValueError(
            f"Layer '{name}' gives an output of shape {x.shape}: a probed layer needs a "
            "batch axis and a unit axis (the last)."
        )
    return x.mean(axis=tuple(range(x.ndim - 1))).astype(np.float32)


def _is_graph_model(model):
    return isinstance(model, keras.Sequential) or hasattr(model, "_nodes_by_depth")


class ActivityProbe:
    """Measures unit activity of fixed layers of one model, on any probe batch.

    The way to reach the layers' outputs (a sub-model, the layer order, or
    caught calls) is worked out once, when the probe is built.

    Args:
        model: A built Keras model.
        layers: None for the hidden Dense/Conv layers (those whose units
            have outgoing weights: see `kerastroke.engine.units`), or a list
            of layer names and/or indices (as `model.layers[i]`). Required
            for a subclassed model.

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, "relu", name="h"),
    ...                           keras.layers.Dense(1)])
    >>> probe = ActivityProbe(model)
    >>> {name: values.shape for name, values in probe(np.ones((5, 3), "float32")).items()}
    {'h': (4,)}
    """

    def __init__(self, model, layers=None):
        self.model = model
        self.layers = targets.check_layers(layers)
        if not _is_graph_model(model):
            if self.layers is None:
                raise ValueError(
                    f"Model '{model.name}' ({type(model).__name__}) is subclassed: its layers "
                    "cannot be found from a graph. Name the layers to probe, e.g. "
                    "layers=['hidden_1', 'hidden_2'] (their outputs are caught while the model "
                    "runs on the probe)."
                )
            self._points = [(layer.name, layer) for layer in targets.resolve_layers(model, self.layers)]
            self._run = self._caught
            return
        if self.layers is None:
            groups = units.find(model)
            if not groups:
                _, skipped = units.analyse(model)
                raise ValueError(
                    f"Model '{model.name}' has no hidden Dense or Conv layer to probe "
                    f"({skipped or 'no Dense or Conv layer'}). Name layers with layers=[...]."
                )
            self._points = [(g.layer.name, g.activation) for g in groups]
        else:
            by_layer = {id(g.layer): g for g in units.analyse(model)[0]}
            self._points = []
            for layer in targets.resolve_layers(model, self.layers):
                group = by_layer.get(id(layer))
                self._points.append((layer.name, group.activation if group else layer))
        # A built Sequential model keeps its layers in a functional graph too.
        graph = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
        if graph is None or not hasattr(graph, "_nodes_by_depth"):
            self._run = self._in_order
        else:
            self._submodel = self._build_submodel(graph)
            self._run = self._through_submodel

    def __call__(self, probe):
        """`{layer name: mean |activation| per unit}` as float32 NumPy arrays."""
        return self._run(probe)

    def _in_order(self, probe):
        wanted = {id(layer): name for name, layer in self._points}
        found, x = {}, probe
        for layer in self.model.layers:
            if len(found) == len(wanted):
                break
            x = layer(x, training=False)
            if id(layer) in wanted:
                found[wanted[id(layer)]] = _mean_abs(x, layer.name)
        return {name: found[name] for name, _ in self._points}

    def _build_submodel(self, graph):
        outputs = {}
        for depth in graph._nodes_by_depth.values():
            for node in depth:
                if any(node.operation is layer for _, layer in self._points):
                    if id(node.operation) in outputs:
                        raise ValueError(
                            f"Layer '{node.operation.name}' is called more than once in model "
                            f"'{self.model.name}': its activity is ambiguous."
                        )
                    if len(node.outputs) != 1:
                        raise ValueError(f"Layer '{node.operation.name}' has several outputs.")
                    outputs[id(node.operation)] = node.outputs[0]
        # The inputs in the model's own structure (one tensor, a list or a dict), so the
        # probe is passed as the model takes it.
        inputs = getattr(graph, "_inputs_struct", graph.inputs)
        return keras.Model(inputs, [outputs[id(layer)] for _, layer in self._points])

    def _through_submodel(self, probe):
        # A compiled forward pass (built once, reading the current weights):
        # eager calls cost several times more, JAX's most of all.
        results = self._submodel.predict_on_batch(probe)
        if not isinstance(results, (list, tuple)):
            results = [results]
        return {name: _mean_abs(out, name) for (name, _), out in zip(self._points, results)}

    def _caught(self, probe):
        caught = {name: [] for name, _ in self._points}
        for name, layer in self._points:
            layer.call = _recording(layer.call, caught[name])
        try:
            self.model(probe, training=False)
        finally:
            for _, layer in self._points:
                del layer.call  # the class's own `call` again
        result = {}
        for name, outputs in caught.items():
            if len(outputs) != 1:
                what = "was not called" if not outputs else f"was called {len(outputs)} times"
                raise ValueError(
                    f"Layer '{name}' {what} when model '{self.model.name}' ran on the probe: "
                    "name layers that the model's call() uses exactly once."
                )
            result[name] = _mean_abs(outputs[0], name)
        return result


def _recording(call, outputs):
    def recording_call(*args, **kwargs):
        output = call(*args, **kwargs)
        outputs.append(output)
        return output

    return recording_call


def unit_activity(model, probe, layers=None):
    """Mean |activation| of each output unit of the probed layers, over `probe`.

    Args:
        model: A built Keras model (Sequential, functional or subclassed).
        probe: A batch of inputs, as the model takes them (an array, or a
            list or dict of arrays for several inputs).
        layers: None for the hidden Dense/Conv layers (each read after the
            elementwise layers right after it, e.g. after a separate ReLU),
            or layer names and/or indices. Required for a subclassed model.

    Returns:
        `{layer name: float32 NumPy array of shape (units,)}`: for a Dense
        unit the mean over the batch (and any axis but the last); for a Conv
        filter the mean over the batch and every spatial position.

    Raises:
        ValueError: for a subclassed model without `layers`, a layer not
            called (or called more than once) on the probe, or an unknown
            layer.

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, "relu", name="h"),
    ...                           keras.layers.Dense(1)])
    >>> model.get_layer("h").set_weights([np.array([[1, -1, 0], [1, -1, 0]], "float32"),
    ...                                   np.zeros(3, "float32")])
    >>> unit_activity(model, np.ones((4, 2), "float32"))["h"].tolist()
    [2.0, 0.0, 0.0]
    """
    return ActivityProbe(model, layers)(probe)


def redo_scores(activity):
    """ReDo's score of each unit: its activity over the mean activity of its layer.

    A layer whose units are all silent (mean 0) scores 0 everywhere.

    Args:
        activity: One layer's activities (array of shape (units,)).

    Returns:
        A float32 NumPy array of the same shape (computed in float64).

    Example:
    >>> redo_scores(np.array([0.0, 1.0, 3.0])).tolist()
    [0.0, 0.75, 2.25]
    """
    values = np.asarray(activity, dtype=np.float64)
    mean = values.mean() if values.size else 0.0
    if mean == 0.0:
        return np.zeros(values.shape, np.float32)
    return (values / mean).astype(np.float32)


def dormant_fraction(activity, threshold=0.0):
    """The fraction of units that are dormant in ReDo's sense (Sokar et al. 2023).

    A unit is tau-dormant when `redo_scores` gives it at most `threshold`:
    its mean |activation| over the probe, divided by the mean of that over
    its layer, is <= tau. With `threshold=0.0` only units whose activation
    is exactly zero on every probe input count (dead ReLUs).

    Args:
        activity: `{layer name: activities}` as `unit_activity` returns, or
            one layer's activities (an array).
        threshold: tau, a float >= 0.

    Returns:
        Dormant units over all units of the given layers, a float in [0, 1]
        (0.0 when there are no units).

    Example:
    >>> a = np.array([0.0, 1.0, 2.0, 1.0])  # mean 1: scores 0, 1, 2, 1
    >>> b = np.array([0.1, 3.9, 2.0, 2.0])  # mean 2: scores 0.05, 1.95, 1, 1
    >>> dormant_fraction({"a": a, "b": b}, threshold=0.1)
    0.25
    """
    threshold = checks.non_negative("threshold", threshold)
    layers = activity.values() if isinstance(activity, dict) else [activity]
    dormant = total = 0
    for values in layers:
        # Compared in float64: NumPy would round the threshold to float32.
        scores = redo_scores(values).astype(np.float64)
        dormant += int(np.count_nonzero(scores <= threshold))
        total += scores.size
    return dormant / total if total else 0.0


class RunningActivity:
    """An exponential average of unit activity over successive probes.

    After probes `a_1 .. a_t` (each a `unit_activity` result) the average is
    `m_t = decay * m_(t-1) + (1 - decay) * a_t`, bias-corrected as in Adam:
    `value = m_t / (1 - decay**t)`, so the first probe is its own average.
    A probe whose layers differ in shape starts the average afresh.

    Args:
        decay: In [0, 1): the weight kept by the previous average.

    Example:
    >>> running = RunningActivity(decay=0.5)
    >>> running.update({"h": np.array([2.0, 0.0])})["h"].tolist()
    [2.0, 0.0]
    >>> running.update({"h": np.array([0.0, 0.0])})["h"].tolist()
    [0.6666666666666666, 0.0]
    """

    def __init__(self, decay=0.9):
        self.decay = checks.fraction("decay", decay)
        if self.decay == 1.0:
            raise ValueError(f"`decay` must be < 1. Received: decay={decay!r}")
        self._sums = {}
        self._count = 0

    def update(self, activity):
        """Adds one probe's activities; returns the new averages."""
        shapes = {name: np.shape(values) for name, values in activity.items()}
        if shapes != {name: values.shape for name, values in self._sums.items()}:
            self._sums = {name: np.zeros(shape) for name, shape in shapes.items()}
            self._count = 0
        self._count += 1
        for name, values in activity.items():
            self._sums[name] = self.decay * self._sums[name] + (1.0 - self.decay) * np.asarray(values, np.float64)
        return self.value

    @property
    def value(self):
        """`{layer name: averaged activities}`, or {} before the first update."""
        correction = 1.0 - self.decay**self._count
        return {name: sums / correction for name, sums in self._sums.items()}
