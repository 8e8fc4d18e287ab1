"""Which variables of a model a callback touches.

Only trainable floating-point variables: kernels (2 or more dimensions, not
named `bias`) and, on request, variables named `bias`. Non-trainable state
(BatchNormalization statistics, seed generators, counters), integer variables
and optimizer variables never are.
"""

import numbers

import keras


def check_layers(layers):
    """Validates the `layers` argument at construction; returns a tuple or None."""
    if layers is None:
        return None
    if isinstance(layers, (numbers.Integral, str)) and not isinstance(layers, bool):
        layers = [layers]
    try:
        layers = tuple(layers)
    except TypeError:
        raise TypeError(
            "`layers` must be None or a list of layer indices and/or names. "
            f"Received: layers={layers!r}"
        ) from None
    checked = []
    for entry in layers:
        if isinstance(entry, bool) or not isinstance(entry, (numbers.Integral, str)):
            raise TypeError(
                "`layers` entries must be layer indices (int) or names (str). "
                f"Received: {entry!r} in layers={list(layers)!r}"
            )
        checked.append(entry if isinstance(entry, str) else int(entry))
    return tuple(checked)


def _available(model):
    return ", ".join(f"{i}: {layer.name!r}" for i, layer in enumerate(model.layers))


def _find_by_name(model, name):
    pending = list(model.layers)
    while pending:
        layer = pending.pop(0)
        if layer.name == name:
            return layer
        pending.extend(getattr(layer, "layers", []))
    return None


def resolve_layers(model, layers):
    """The layers named by `layers` (indices into `model.layers`, or names).

    Raises:
        ValueError: for an index out of range or a name no layer has; the
            message names the entry and lists the model's layers.
    """
    if layers is None:
        return [model]
    found = []
    for entry in layers:
        if isinstance(entry, int):
            if not -len(model.layers) <= entry < len(model.layers):
                raise ValueError(
                    f"Layer index {entry} in `layers` is out of range: model "
                    f"'{model.name}' has {len(model.layers)} layers ({_available(model)})."
                )
            found.append(model.layers[entry])
            continue
        layer = _find_by_name(model, entry)
        if layer is None:
            hint = ""
            if entry.lstrip("-").isdigit():
                hint = f" Did you mean the index layers=[{int(entry)}]?"
            raise ValueError(
                f"No layer named {entry!r} (from `layers`) in model '{model.name}'.{hint} "
                f"Layers that exist: {_available(model)}."
            )
        found.append(layer)
    return found


def is_target(variable, weights, biases):
    """True for the variables a callback with these flags touches.

    A variable named `bias` is a bias whatever its rank (MultiHeadAttention's
    projection biases are 2-D), so `weights=True` alone never touches it.
    """
    if not variable.trainable or not keras.backend.is_float_dtype(variable.dtype):
        return False
    if variable.name == "bias":
        return bool(biases)
    return bool(weights) and len(variable.shape) >= 2


def variables(model, layers=None, weights=True, biases=False):
    """The targeted variables, each once, in the model's order."""
    seen, result = set(), []
    for layer in resolve_layers(model, layers):
        for variable in layer.trainable_variables:
            if id(variable) in seen or not is_target(variable, weights, biases):
                continue
            seen.add(id(variable))
            result.append(variable)
    return result


def positions(model):
    """`{id(variable): index}` over `model.weights`: names a variable by its place.

    Layer names carry counters (`dense_3`) that differ between identical
    models built in one process; positions do not.
    """
    result = {}
    for index, variable in enumerate(model.weights):
        result.setdefault(id(variable), index)
    return result
