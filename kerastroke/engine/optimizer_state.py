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

from kerastroke import accel
from kerastroke.core import arrays

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


def _own(owned, candidate, shape):
    """True if `candidate` is one of `owned` (ids of optimizer variables), of `shape`."""
    return id(candidate) in owned and arrays.shape(candidate) == shape


def slots(optimizer, variable):
    """The optimizer variables that hold per-entry state for `variable`.

    Every per-variable list of the optimizer (and of the optimizers it wraps)
    is read at `variable`'s index; an entry counts when it is an optimizer
    variable of `variable`'s shape (Adafactor's factored row and column
    statistics are not per entry). The moving average of `use_ema` is not
    state of the update: see `follow_averages`.
    """
    return _slots_of(optimizer, [variable])[0]


def _slots_of(optimizer, variables):
    """`slots` of each of `variables`, reading each optimizer's lists once."""
    found = [[] for _ in variables]
    for current in _optimizers(optimizer):
        if not getattr(current, "built", False):
            continue
        count = len(current._trainable_variables)
        owned = {id(v) for v in current.variables}
        lists = [
            value for name, value in vars(current).items()
            if name not in _NOT_SLOTS and isinstance(value, (list, tuple)) and len(value) == count
        ]
        for result, variable in zip(found, variables):
            index = _index(current, variable)
            if index is None:
                continue
            shape = arrays.shape(variable)
            for values in lists:
                slot = values[index]
                if _own(owned, slot, shape) and not any(slot is kept for kept in result):
                    result.append(slot)
    return found


def _averages_of(optimizer, variables):
    """The moving averages (`use_ema=True`) an optimizer keeps of each of `variables`."""
    found = [[] for _ in variables]
    for current in _optimizers(optimizer):
        averages_list = getattr(current, "_model_variables_moving_average", None)
        if not getattr(current, "use_ema", False) or averages_list is None:
            continue
        owned = {id(v) for v in current.variables}
        for result, variable in zip(found, variables):
            index = _index(current, variable)
            if index is not None and index < len(averages_list) and _own(owned, averages_list[index], arrays.shape(variable)):
                result.append(averages_list[index])
    return found


def has_averages(optimizer):
    """True if `optimizer`, or one it wraps, keeps moving averages of the weights."""
    return any(getattr(current, "use_ema", False) for current in _optimizers(optimizer))


def reset(optimizer, variables, masks):
    """Zeroes the optimizer state of each variable's entries under its mask.

    Every new value is computed before the first is assigned, and all are
    assigned at once.

    Args:
        optimizer: The optimizer stepping `variables` (wrappers included).
        variables: Keras variables.
        masks: One bool tensor per variable: the entries a rule wrote.

    Returns:
        The number of optimizer variables written.
    """
    pairs = [(slot, mask, None) for mask, found in zip(masks, _slots_of(optimizer, variables)) for slot in found]
    return _write_where(pairs)


def follow_averages(optimizer, variables, masks):
    """Sets the moving averages of each variable's entries under its mask to their new values.

    The average then holds what a rule wrote (a pruned zero stays zero while
    the weight is held at zero), and `fit`'s final overwrite keeps it.

    Returns:
        The number of optimizer variables written.
    """
    pairs = [
        (average, mask, variable)
        for variable, mask, found in zip(variables, masks, _averages_of(optimizer, variables))
        for average in found
    ]
    return _write_where(pairs)


def _write_where(targets):
    """Writes `source` (a variable's value, or zero where None) into each
    `(target, mask, source)` target under its mask; all at once."""
    accel.assign_where(
        [target for target, _, _ in targets],
        [mask for _, mask, _ in targets],
        [None if source is None else ops.cast(source.value, target.dtype) for target, _, source in targets],
    )
    return len(targets)
