"""Persistent sparsity: entries held at zero after every optimizer step.

Keras 3 runs a variable's `constraint` after each optimizer update, on every
backend. A persistent callback gives each targeted variable a `HoldZeros`
constraint whose mask is the set of entries that were exactly zero after the
callback's latest application, so pruned entries cannot regrow in between.
The mask is derived from the weights themselves, which is what makes resumed
training exact. `strip(model)` removes what was attached; the model is then a
plain Keras model (nothing is ever attached to layer configs, so `model.save`
works either way).
"""

import keras
from keras import ops


class HoldZeros(keras.constraints.Constraint):
    """Keeps the entries under `mask` at zero, after an optional inner constraint.

    Args:
        mask: A boolean, non-trainable `keras.Variable` of the weights' shape.
        inner: The constraint the variable had before, applied first.
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        # Keras passes the variable itself; JAX needs plain arrays.
        w = ops.convert_to_tensor(w)
        return ops.where(ops.convert_to_tensor(self.mask), ops.zeros_like(w), w)


def hold_zeros(variable):
    """Holds the entries of `variable` that are exactly zero now.

    Returns:
        True if a constraint was attached (the train function must then be
        rebuilt to see it), False if an existing one was updated in place.
    """
    zeros = ops.equal(variable.value, ops.zeros((), dtype=variable.dtype))
    constraint = variable.constraint
    if isinstance(constraint, HoldZeros):
        constraint.mask.assign(zeros)
        return False
    mask = keras.Variable(zeros, dtype="bool", trainable=False, name="kerastroke_hold_zeros")
    variable.constraint = HoldZeros(mask, inner=constraint)
    return True


def release(variable):
    """Removes a `HoldZeros` constraint, restoring the one it wrapped."""
    constraint = variable.constraint
    if isinstance(constraint, HoldZeros):
        variable.constraint = constraint.inner
        return True
    return False


def strip(model):
    """Removes everything kerastroke attached to `model`'s variables.

    After this the model trains as a plain Keras model: zeros it holds are
    kept as values in the weights but may regrow.

    Args:
        model: A Keras model.

    Returns:
        The number of variables released.

    Example:
    >>> # model.fit(x, y, callbacks=[MagnitudePruning(0.8)])
    >>> # kerastroke.strip(model); model.save("pruned.keras")
    """
    released = sum(release(variable) for variable in model.variables)
    if released and getattr(model, "compiled", False):
        # A train function traced with the constraints would keep applying them.
        model.make_train_function(force=True)
    return released
