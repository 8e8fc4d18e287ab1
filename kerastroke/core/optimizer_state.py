"""Resetting optimizer state for entries a rule re-initialised.

A re-initialised weight with Adam's old moments keeps moving the way the old
weight did. Keras 3 names every optimizer slot after the variable it tracks
(`<variable path with / as _>_<slot>`), which is how slots are found here,
on any optimizer that keeps per-entry state.
"""

from keras import ops


def slots(optimizer, variable):
    """The optimizer variables that hold per-entry state for `variable`."""
    if optimizer is None:
        return []
    prefix = variable.path.replace("/", "_") + "_"
    shape = tuple(variable.shape)
    return [
        slot
        for slot in optimizer.variables
        if slot.name.startswith(prefix) and tuple(slot.shape) == shape
    ]


def reset(optimizer, variable, changed):
    """Zeroes the optimizer state of `variable`'s entries under `changed`.

    Returns:
        The number of optimizer variables written.
    """
    touched = slots(optimizer, variable)
    for slot in touched:
        slot.assign(ops.where(changed, ops.zeros_like(slot.value), slot.value))
    return len(touched)
