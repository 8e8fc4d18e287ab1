"""Which variables of a model a callback touches.

Only trainable floating-point variables: kernels (2 or more dimensions) and,
on request, variables named `bias`. Non-trainable state (BatchNormalization
statistics, seed generators, counters) and optimizer variables never are.
"""

import keras


def check_layers(layers):
    """Validates the `layers` argument at construction; returns a tuple or None."""
    if layers is None:
        return None
    if isinstance(layers, (int, str)) and not isinstance(layers, bool):
        layers = [layers]
    try:
        layers = tuple(layers)
    except TypeError:
        raise TypeError(
            "`layers` must be None or a list of layer indices and/or names. "
            f"Received: layers={layers!r}"
        ) from None
    for entry in layers:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            raise TypeError(
                "`layers` entries must be layer indices (int) or names (str). "
                f"Received: {entry!r} in layers={list(layers)!r}"
            )
    return layers


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
    """The layers named by `layers` (indices into `model.layers`, or names)."""
    if layers is None:
        return [model]
    found = []
    for entry in layers:
        if isinstance(entry, int):
            if not -len(model.layers) <= entry < len(model.layers):
                raise ValueError(
                    f"Layer index {entry} is out of range: the model has "
                    f"{len(model.layers)} layers ({_available(model)})."
                )
            found.append(model.layers[entry])
            continue
        layer = _find_by_name(model, entry)
        if layer is None:
            hint = ""
            if entry.lstrip("-").isdigit():
                hint = f" Did you mean the index layers=[{int(entry)}]?"
            raise ValueError(
                f"No layer named {entry!r} in the model.{hint} "
                f"Layers that exist: {_available(model)}."
            )
        found.append(layer)
    return found


def is_target(variable, weights, biases):
    """True for the variables a callback with these flags touches."""
    if not variable.trainable or not keras.backend.is_float_dtype(variable.dtype):
        return False
    if weights and len(variable.shape) >= 2:
        return True
    return biases and variable.name == "bias"


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
