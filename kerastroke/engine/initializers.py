"""Finding the initializer a layer used for one of its variables.

Keras layers keep the initializer of variable `<name>` in the attribute
`<name>_initializer` (`kernel_initializer`, `recurrent_initializer`,
`embeddings_initializer`, `bias_initializer`, ...).
"""


def owners(model):
    """`{id(variable): layer}` for every trainable variable of `model`'s
    layers, nested ones included: the layer that created it (a variable that
    two layers track goes to the first in Keras's order of layers)."""
    found = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for own in layer._trainable_variables:
            found.setdefault(id(own), layer)
    return found


def of(model, variable, owners_=None):
    """The initializer the owning layer used for `variable`.

    Falls back to Keras's defaults (Glorot uniform for kernels, zeros for
    vectors) when the layer does not say.

    Args:
        model: The model holding `variable`.
        variable: A Keras variable.
        owners_: `owners(model)`, when known already (it walks every layer).
    """
    layer = (owners(model) if owners_ is None else owners_).get(id(variable))
    found = getattr(layer, f"{variable.name}_initializer", None) if layer is not None else None
    if found is not None:
        return found
    return "glorot_uniform" if len(variable.shape) >= 2 else "zeros"
