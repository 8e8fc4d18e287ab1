"""Units and the weights that belong to them, found from the model's graph.

A *unit* is an output unit of a Dense layer or a filter of a Conv1D/2D/3D
layer (the last axis of its kernel). Its weights are:

- incoming: the kernel slice on the last axis (a column, or a filter) and its
  bias entry;
- outgoing: the entries of the *next* Dense or Conv kernel that read it: a
  row of a Dense kernel; an input-channel slice of a Conv kernel; or, through
  a `Flatten` between a Conv and a Dense layer, the strided rows
  `c, c + C, c + 2C, ...` that the flattened channel `c` of `C` lands on.

Between a unit layer and its consumer there may be elementwise layers
(Activation, ReLU, LeakyReLU, ELU, PReLU, Dropout and its kin, Identity,
ActivityRegularization), pooling layers (which keep the channels) and one
`Flatten`. A unit's *activation* is read after the elementwise layers that
directly follow its layer (`Dense(8)` then `ReLU()`: after the ReLU).

The graph is the layer order of a `Sequential` model, or the functional
graph, where the chain from a unit layer to its consumer must be a single
path (each output read by exactly one layer, and not a model output). A
layer that fails this has no `UnitGroup`; `find` says why.

`recycle` rewrites chosen units: incoming weights drawn afresh, bias and
outgoing weights zero, computed for every variable before any is assigned,
then written with `writer.commit` and the optimizer state of exactly the
recycled entries zeroed.
"""

import math

import attrs
import keras
import numpy as np
from keras import ops

from kerastroke.core import arrays
from kerastroke.engine import optimizer_state, persistence
from kerastroke.engine import writer as write

_L = keras.layers
UNIT_LAYERS = (_L.Dense, _L.Conv1D, _L.Conv2D, _L.Conv3D)
# Layers that act on each entry alone: a unit's activation passes through them.
ELEMENTWISE = (
    _L.Activation, _L.ReLU, _L.LeakyReLU, _L.ELU, _L.PReLU, _L.Dropout, _L.SpatialDropout1D,
    _L.SpatialDropout2D, _L.SpatialDropout3D, _L.GaussianNoise, _L.GaussianDropout, _L.AlphaDropout,
    _L.Identity, _L.ActivityRegularization,
)
# Layers that keep the channel axis (channels last): a unit stays one channel.
CHANNEL_KEEPING = (
    _L.MaxPooling1D, _L.MaxPooling2D, _L.MaxPooling3D, _L.AveragePooling1D, _L.AveragePooling2D,
    _L.AveragePooling3D, _L.GlobalMaxPooling1D, _L.GlobalMaxPooling2D, _L.GlobalMaxPooling3D,
    _L.GlobalAveragePooling1D, _L.GlobalAveragePooling2D, _L.GlobalAveragePooling3D,
)


@attrs.frozen(eq=False)
class UnitGroup:
    """The units of one layer and where their weights are.

    Attributes:
        layer: The Dense or Conv layer whose output units these are.
        consumer: The next Dense or Conv layer, which reads them.
        activation: The layer whose output is the units' activation: `layer`
            itself or the last elementwise layer right after it.
        positions: Rows of the consumer's kernel per unit: 1, or the spatial
            positions a `Flatten` spreads each channel over.
    """

    layer: object
    consumer: object
    activation: object
    positions: int = 1

    @property
    def units(self):
        return int(self.layer.kernel.shape[-1])

    @property
    def kernel(self):
        return self.layer.kernel

    @property
    def bias(self):
        return self.layer.bias if getattr(self.layer, "use_bias", False) else None

    @property
    def next_kernel(self):
        return self.consumer.kernel

    def incoming_mask(self, chosen):
        """Kernel entries of the `chosen` units (a bool vector of `units`)."""
        return ops.broadcast_to(arrays.tensor(chosen, "bool"), arrays.shape(self.kernel))

    def outgoing_mask(self, chosen):
        """Entries of the consumer's kernel that read the `chosen` units."""
        chosen = arrays.tensor(chosen, "bool")
        shape = arrays.shape(self.next_kernel)
        if isinstance(self.consumer, _L.Dense):
            # A flattened channels-last map puts channel c at rows p * C + c.
            rows = ops.tile(chosen, (self.positions,)) if self.positions > 1 else chosen
            return ops.broadcast_to(ops.expand_dims(rows, 1), shape)
        return ops.broadcast_to(ops.expand_dims(chosen, 1), shape)  # (..., in, out)

    def outgoing_magnitude(self):
        """Per unit, the sum of |w| over its outgoing weights (float32 tensor)."""
        magnitude = ops.abs(ops.cast(self.next_kernel.value, "float32"))
        if isinstance(self.consumer, _L.Dense):
            per_row = ops.sum(magnitude, axis=1)
            return ops.sum(ops.reshape(per_row, (self.positions, self.units)), axis=0)
        axes = tuple(range(len(magnitude.shape) - 2)) + (len(magnitude.shape) - 1,)
        return ops.sum(magnitude, axis=axes)


# -- The graph ---------------------------------------------------------------


class _Graph:
    """Layers with one input and one output, linked by the tensors between them."""

    def __init__(self, model):
        self.steps = {}  # id(layer) -> (input id, output id), for layers used once
        self.shared = set()  # ids of layers used more than once
        self.readers = {}  # tensor id -> layers that read it
        self.shapes = {}  # tensor id -> static shape
        self.outputs = set()  # ids of the model's output tensors
        if isinstance(model, keras.Sequential):
            self._sequential(model)
        elif hasattr(model, "_nodes_by_depth"):
            self._functional(model)
        else:
            raise ValueError(
                f"Cannot find the units' outgoing weights in model '{model.name}' "
                f"({type(model).__name__}): a subclassed model has no graph to follow. Build it "
                "with keras.Sequential or the functional API (keras.Model(inputs, outputs)) to "
                "recycle units; `unit_activity(model, probe, layers=[...])` still measures it."
            )

    def _add(self, layer, inputs, output, shape):
        if id(layer) in self.steps or id(layer) in self.shared:
            self.steps.pop(id(layer), None)
            self.shared.add(id(layer))
            return
        self.steps[id(layer)] = (inputs, output)
        for tensor in inputs:
            self.readers.setdefault(tensor, []).append(layer)
        self.shapes[output] = shape

    def _sequential(self, model):
        for index, layer in enumerate(model.layers):
            output = getattr(layer, "output", None) if len(layer._inbound_nodes) == 1 else None
            shape = tuple(output.shape) if output is not None else None
            self._add(layer, (index,), index + 1, shape)
        self.outputs.add(len(model.layers))

    def _functional(self, model):
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                layer = node.operation
                if isinstance(layer, _L.InputLayer):
                    continue
                inputs = tuple(id(t) for t in node.input_tensors)
                if len(node.outputs) != 1:
                    self.shared.add(id(layer))
                    continue
                self._add(layer, inputs, id(node.outputs[0]), tuple(node.outputs[0].shape))
        self.outputs.update(id(t) for t in model.outputs)

    def next_layer(self, layer):
        """The one layer reading `layer`'s output, or a reason why there is none."""
        if id(layer) in self.shared:
            return None, f"layer '{layer.name}' is used more than once in the model"
        if id(layer) not in self.steps:
            return None, f"layer '{layer.name}' is not a single-output layer of the model's graph"
        output = self.steps[id(layer)][1]
        if output in self.outputs:
            return None, f"the output of layer '{layer.name}' is an output of the model"
        readers = self.readers.get(output, [])
        if len(readers) != 1:
            names = ", ".join(f"'{r.name}'" for r in readers) or "none"
            return None, f"the output of layer '{layer.name}' is read by {len(readers)} layers ({names})"
        reader = readers[0]
        if len(self.steps.get(id(reader), ((),))[0]) != 1:
            return None, f"layer '{reader.name}' after '{layer.name}' takes several inputs"
        return reader, None

    def input_shape(self, layer):
        return self.shapes.get(self.steps[id(layer)][0][0])


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _follow(graph, layer):
    """The `UnitGroup` of `layer`, or a reason why it has none."""
    if not isinstance(layer, UNIT_LAYERS):
        return None, f"layer '{layer.name}' is a {type(layer).__name__}, not a Dense or Conv1D/2D/3D layer"
    if not layer.built:
        return None, f"layer '{layer.name}' is not built yet"
    if not _channels_last(layer):
        return None, f"layer '{layer.name}' is channels_first; only channels_last is supported"
    activation, positions, flattened, current = layer, 1, False, layer
    elementwise_run = True  # still in the elementwise layers right after `layer`
    while True:
        reader, reason = graph.next_layer(current)
        if reader is None:
            return None, reason
        if isinstance(reader, ELEMENTWISE):
            if elementwise_run:
                activation = reader
        elif isinstance(reader, CHANNEL_KEEPING) and not flattened and _channels_last(reader):
            elementwise_run = False
        elif isinstance(reader, _L.Flatten) and not flattened and _channels_last(reader):
            shape = graph.input_shape(reader)
            if shape is None or any(dim is None for dim in shape[1:]):
                return None, f"the input of Flatten '{reader.name}' has no static shape"
            positions = math.prod(shape[1:-1])
            flattened, elementwise_run = True, False
        elif isinstance(reader, UNIT_LAYERS):
            return _checked_consumer(layer, reader, activation, positions, flattened)
        else:
            return None, (
                f"layer '{reader.name}' ({type(reader).__name__}) follows '{layer.name}' before any "
                "Dense or Conv layer; only elementwise layers (activations, dropout), pooling and "
                "one Flatten can stand between a unit and its outgoing weights"
            )
        current = reader


def _checked_consumer(layer, consumer, activation, positions, flattened):
    units = int(layer.kernel.shape[-1])
    if not consumer.built:
        return None, f"layer '{consumer.name}' is not built yet"
    if isinstance(consumer, _L.Dense):
        rows = int(consumer.kernel.shape[0])
        if rows != units * positions:
            return None, f"layer '{consumer.name}' reads {rows} inputs, not the {units * positions} expected"
    else:
        if flattened:
            return None, f"Conv layer '{consumer.name}' reads a flattened input"
        if not _channels_last(consumer) or getattr(consumer, "groups", 1) != 1:
            return None, f"Conv layer '{consumer.name}' is channels_first or grouped"
        if int(consumer.kernel.shape[-2]) != units:
            return None, f"layer '{consumer.name}' reads {consumer.kernel.shape[-2]} channels, not {units}"
    return UnitGroup(layer, consumer, activation, positions), None


def analyse(model):
    """Every Dense/Conv layer of `model`: `(groups, skipped)`.

    Returns:
        A list of `UnitGroup` in the model's layer order, and a dict
        `{layer name: reason}` for the Dense and Conv layers without one
        (the output layer: "... is an output of the model").
    """
    graph = _Graph(model)
    groups, skipped = [], {}
    for layer in _layers_in_order(model):
        if not isinstance(layer, UNIT_LAYERS):
            continue
        group, reason = _follow(graph, layer)
        if group is None:
            skipped[layer.name] = reason
        else:
            groups.append(group)
    return groups, skipped


def _layers_in_order(model):
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    return [op for op in model.operations if isinstance(op, keras.layers.Layer)]


def find(model, layers=None):
    """The `UnitGroup`s of `model`, or of the named layers.

    Args:
        model: A built Sequential or functional Keras model.
        layers: None for every Dense/Conv layer that has a consumer (the
            hidden layers), or a list of layer names and/or indices (as
            `model.layers[i]`), each of which must have one.

    Raises:
        ValueError: for a subclassed model, an unknown layer, or a named
            layer without a `UnitGroup`, saying why.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="h"),
    ...                           keras.layers.ReLU(name="r"), keras.layers.Dense(2)])
    >>> [(g.layer.name, g.activation.name, g.units) for g in find(model)]
    [('h', 'r', 4)]
    """
    groups, skipped = analyse(model)
    if layers is None:
        return groups
    from kerastroke.engine import targets

    by_layer = {id(group.layer): group for group in groups}
    chosen = []
    for entry, layer in zip(layers, targets.resolve_layers(model, layers)):
        group = by_layer.get(id(layer))
        if group is None:
            reason = skipped.get(layer.name) or _follow(_Graph(model), layer)[1]
            raise ValueError(
                f"Layer {entry!r} in `layers` has no units to recycle: {reason}. Units are "
                "those of Dense and Conv1D/2D/3D layers whose output feeds exactly one Dense or "
                f"Conv layer. Layers that have them: {[g.layer.name for g in groups]}."
            )
        if group not in chosen:
            chosen.append(group)
    return chosen


def variables(groups):
    """Every variable that recycling `groups` can write, each once, in order."""
    seen, result = set(), []
    for group in groups:
        for variable in (group.kernel, group.bias, group.next_kernel):
            if variable is not None and id(variable) not in seen:
                seen.add(id(variable))
                result.append(variable)
    return result


# -- Recycling ---------------------------------------------------------------


def plan(groups, chosen, incoming):
    """The new values of every variable a recycle writes; assigns nothing.

    Outgoing weights are zeroed first, then incoming weights drawn and biases
    zeroed: where a recycled unit of one layer feeds a recycled unit of the
    next, the fresh incoming draw wins (the receiving unit's own outgoing
    weights are zero, so the network's function is kept either way).

    Args:
        groups: `UnitGroup`s.
        chosen: `{layer name: bool vector of units}`; layers absent or with
            no True entry are left alone.
        incoming: `(group, kernel value, mask) -> new kernel value`: the
            fresh incoming weights under `mask` (the chosen columns), every
            other entry kept.

    Returns:
        A list of `(variable, new value, recycled mask, changed)`: the
        entries of the recycled units, and how many of them changed value.
    """
    edits = {}  # id(variable) -> [variable, original, current, recycled mask]

    def edit(variable, mask, new_values):
        if id(variable) not in edits:
            value = arrays.tensor(variable.value)
            edits[id(variable)] = [variable, value, value, ops.zeros(arrays.shape(value), "bool")]
        entry = edits[id(variable)]
        entry[2] = arrays.merge(mask, new_values(entry[2], mask), entry[2])
        entry[3] = ops.logical_or(entry[3], mask)

    def zeros(value, mask):
        return ops.zeros_like(value)

    active = [(g, chosen[g.layer.name]) for g in groups if _any(chosen.get(g.layer.name))]
    for group, units in active:
        edit(group.next_kernel, group.outgoing_mask(units), zeros)
    for group, units in active:
        edit(group.kernel, group.incoming_mask(units), lambda value, mask, g=group: incoming(g, value, mask))
        if group.bias is not None:
            edit(group.bias, arrays.tensor(units, "bool"), zeros)
    result = []
    for variable, original, new, recycled in edits.values():
        constraint = persistence.own_constraint(variable)
        if constraint is not None:
            # Keras applies it after every optimizer step: written values obey it too.
            new = ops.cast(arrays.tensor(constraint(new)), arrays.dtype_name(original))
        result.append((variable, new, recycled, _changed(new, original)))
    return result


def _any(units):
    return units is not None and bool(np.any(arrays.to_numpy(arrays.tensor(units, "bool"))))


def _changed(new, original):
    """Entries whose value differs (a NaN kept, or a zero changing sign, does not)."""
    new, original = arrays.to_numpy(new), arrays.to_numpy(original)
    differs = (new != original) & ~(np.isnan(new) & np.isnan(original))
    return int(np.count_nonzero(differs))


def recycle(groups, chosen, incoming, optimizer=None, reset_optimizer=True):
    """Recycles the chosen units of `groups`: all values computed, then one commit.

    Incoming weights come from `incoming` (see `plan`), bias and outgoing
    weights become zero, and the optimizer's per-entry state (Adam's
    moments, SGD's momentum) of exactly the recycled entries is zeroed; an
    optimizer's moving averages (`use_ema`) follow the written values.

    Args:
        groups, chosen, incoming: As for `plan`.
        optimizer: The optimizer that steps these variables, or None.
        reset_optimizer: Zero its state of the recycled entries.

    Returns:
        The number of entries whose value changed, over all variables.
    """
    planned = plan(groups, chosen, incoming)

    def after(variables, masks):
        if optimizer is not None:
            if reset_optimizer:
                optimizer_state.reset(optimizer, variables, masks)
            optimizer_state.follow_averages(optimizer, variables, masks)

    write.commit([(variable, new, recycled) for variable, new, recycled, _ in planned], after)
    return sum(count for *_, count in planned)
