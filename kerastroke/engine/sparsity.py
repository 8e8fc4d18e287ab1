"""`sparsity(model)`: how many kernel entries are exactly zero, per layer and in total."""

from kerastroke.core import arrays
from kerastroke.engine import targets


def zeros_and_size(variable, zeros=None):
    """(entries exactly zero, entries) of one variable; `zeros` if already counted."""
    if zeros is None:
        value = variable.value
        zeros = arrays.count(arrays.is_zero(value))
    return zeros, arrays.size(variable)


def sparsity(model, layers=None, weights=True, biases=False):
    """Fraction of exactly-zero entries in the variables a callback would target.

    Args:
        model: A built Keras model.
        layers, weights, biases: As for `PlasticityCallback`.

    Returns:
        `{"layers": {variable path: fraction}, "total": fraction}`, the total
        weighted by size.

    Example:
    >>> import keras, kerastroke
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_initializer="zeros")])
    >>> kerastroke.sparsity(model)["total"]
    1.0
    """
    per_variable, zeros_total, size_total = {}, 0, 0
    for variable in targets.variables(model, layers, weights, biases):
        zeros, size = zeros_and_size(variable)
        per_variable[variable.path] = zeros / size if size else 0.0
        zeros_total += zeros
        size_total += size
    return {"layers": per_variable, "total": zeros_total / size_total if size_total else 0.0}
