"""Optimizer state that follows the entries a rule wrote.

A re-initialised weight with Adam's old moments keeps moving the way the old
weight did, so `reset` zeroes them. An optimizer with `use_ema=True` keeps a
moving average of each weight and writes it over the weights at the end of
`fit`, so `follow_averages` gives the average the values a rule wrote.

Slots are found by variable identity, the way Keras 3 optimizers find them
themselves: `optimizer._get_variable_index(variable)` indexes every per-variable
list an optimizer builds (`add_optimizer_variables`: Adam's `_momentums` and
`_velocities`, SGD's `momentums`, RMSprop's `_velocities`, Adagrad's
`_accumulators`, the gradient accumulators, ...). Names are not used: layers
`a` and `a_kernel` give slot names that share a prefix.
"""

from keras import ops

# Per-variable lists that are not per-entry state of the update.
_NOT_SLOTS = ("_trainable_variables", "_model_variables_moving_average")


def _optimizers(optimizer):
    """`optimizer` and every optimizer it wraps (LossScaleOptimizer, MultiOptimizer)."""
    found, pending = [], [optimizer]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending.append(getattr(current, "inner_optimizer", None))
        pending.extend(getattr(current, "_inner_optimizers", None) or ())
    return found


def _index(optimizer, variable):
    """`variable`'s index in `optimizer`'s per-variable lists, or None if it does not track it."""
    if not getattr(optimizer, "built", False):
        return None
    try:
        return optimizer._get_variable_index(variable)
    except (AttributeError, KeyError):
        return None


def _own(owned, candidate, variable):
    """True if `candidate` is one of `owned` (ids of optimizer variables), shaped like `variable`."""
    return id(candidate) in owned and tuple(candidate.shape) == tuple(variable.shape)


def slots(optimizer, variable):
    """The optimizer variables that hold per-entry state for `variable`.

    Every per-variable list of the optimizer (and of the optimizers it wraps)
    is read at `variable`'s index; an entry counts when it is an optimizer
    variable of `variable`'s shape (Adafactor's factored row and column
    statistics are not per entry). The moving average of `use_ema` is not
    state of the update: see `follow_averages`.
    """
    result = []
    for current in _optimizers(optimizer):
        index = _index(current, variable)
        if index is None:
            continue
        count = len(current._trainable_variables)
        owned = {id(v) for v in current.variables}
        for name, value in vars(current).items():
            if name in _NOT_SLOTS or not isinstance(value, (list, tuple)) or len(value) != count:
                continue
            slot = value[index]
            if _own(owned, slot, variable) and not any(slot is kept for kept in result):
                result.append(slot)
    return result


def averages(optimizer, variable):
    """The moving averages (`use_ema=True`) an optimizer keeps of `variable`."""
    result = []
    for current in _optimizers(optimizer):
        if not getattr(current, "use_ema", False):
            continue
        index = _index(current, variable)
        averages_list = getattr(current, "_model_variables_moving_average", None)
        if index is None or averages_list is None or index >= len(averages_list):
            continue
        if _own({id(v) for v in current.variables}, averages_list[index], variable):
            result.append(averages_list[index])
    return result


def has_averages(optimizer):
    """True if `optimizer`, or one it wraps, keeps moving averages of the weights."""
    return any(getattr(current, "use_ema", False) for current in _optimizers(optimizer))


def reset(optimizer, variable, changed):
    """Zeroes the optimizer state of `variable`'s entries under `changed`.

    Returns:
        The number of optimizer variables written.
    """
    touched = slots(optimizer, variable)
    for slot in touched:
        slot.assign(ops.where(changed, ops.zeros_like(slot.value), slot.value))
    return len(touched)


def follow_averages(optimizer, variable, changed):
    """Sets the moving averages of `variable`'s entries under `changed` to their new values.

    The average then holds what a rule wrote (a pruned zero stays zero while
    the weight is held at zero), and `fit`'s final overwrite keeps it.

    Returns:
        The number of optimizer variables written.
    """
    touched = averages(optimizer, variable)
    for average in touched:
        average.assign(ops.where(changed, ops.cast(variable.value, average.dtype), average.value))
    return len(touched)
