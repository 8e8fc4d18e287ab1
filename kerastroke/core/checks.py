"""Parameter checks shared by every piece.

Each check raises at construction time with a message that names the parameter
and shows the value received, as Keras's own errors do.
"""

import math
import numbers


def real(name, value):
    """Returns `value` as a float, or raises TypeError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number. Received: {name}={value!r}")
    return float(value)


def not_nan(name, value):
    value = real(name, value)
    if math.isnan(value):
        raise ValueError(f"`{name}` must not be NaN. Received: {name}={value!r}")
    return value


def finite(name, value):
    value = not_nan(name, value)
    if math.isinf(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value!r}")
    return value


def fraction(name, value):
    """A float in [0, 1]: an amount, ratio or rate of entries."""
    value = not_nan(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")
    return value


def amount(value):
    """A selector's `amount`: a float in [0, 1]."""
    return fraction("amount", value)


def step(value):
    """A schedule's `step`: an int >= 0."""
    return integer("step", value, minimum=0)


def non_negative(name, value):
    value = finite(name, value)
    if value < 0.0:
        raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
    return value


def ordered(low_name, low, high_name, high):
    """Checks `low <= high`, both not NaN; returns them as floats."""
    low = not_nan(low_name, low)
    high = not_nan(high_name, high)
    if low > high:
        raise ValueError(
            f"`{low_name}` must be <= `{high_name}`. "
            f"Received: {low_name}={low!r}, {high_name}={high!r}"
        )
    return low, high


def integer(name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value!r}")
    return value


def boolean(name, value):
    if not isinstance(value, (bool,)) and not (
        hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype == bool
    ):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def callable_(name, value):
    if not callable(value):
        raise TypeError(f"`{name}` must be callable. Received: {name}={value!r}")
    return value
