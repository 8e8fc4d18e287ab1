"""Finding the initializer a layer used for one of its variables.

Keras layers keep the initializer of variable `<name>` in the attribute
`<name>_initializer` (`kernel_initializer`, `recurrent_initializer`,
`embeddings_initializer`, `bias_initializer`, ...).
"""


def owner(model, variable):
    """The layer that created `variable` (searching nested layers), or None."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if any(own is variable for own in layer._trainable_variables):
            return layer
    return None


def of(model, variable):
    """The initializer the owning layer used for `variable`.

    Falls back to Keras's defaults (Glorot uniform for kernels, zeros for
    vectors) when the layer does not say.
    """
    layer = owner(model, variable)
    found = getattr(layer, f"{variable.name}_initializer", None) if layer is not None else None
    if found is not None:
        return found
    return "glorot_uniform" if len(variable.shape) >= 2 else "zeros"
