"""Checks of how plasticity callbacks are passed to `fit`.

Keras hands a callback its model and parameters but not the other callbacks
of the fit. Two things a user meets depend on them: loggers placed before a
plasticity callback write an epoch's logs before its figures are in them, and
two callbacks with one name write the same `logs` keys. `running_callbacks`
finds the `keras.callbacks.CallbackList` that is calling a hook, so both can be
checked when training begins.
"""

import inspect
import warnings

import keras

# Callbacks that record what they find in `logs` when their own hook runs:
# keys added by a later callback never reach them. (Keras appends its own
# History after the user's callbacks; one passed by the user may come first.)
LOGGERS = (keras.callbacks.TensorBoard, keras.callbacks.CSVLogger, keras.callbacks.History)

# How many callers up `running_callbacks` looks: the CallbackList is the
# caller of the hook, or a few frames above when subclasses call `super()`.
_FRAMES = 8


def running_callbacks(callback):
    """The callbacks of the `CallbackList` now calling a hook of `callback`.

    Returns:
        The list, in the order Keras calls it, or None when no
        `keras.callbacks.CallbackList` holding `callback` is among the
        callers (a hand-written training loop).
    """
    frame = inspect.currentframe()
    try:
        for _ in range(_FRAMES):
            frame = frame.f_back
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList) and any(
                other is callback for other in owner.callbacks
            ):
                return list(owner.callbacks)
    finally:
        del frame
    return None


def warn_loggers_before(callback, callbacks, keys):
    """Warns when a logger comes before `callback` in `callbacks`.

    Args:
        callback: A callback that writes `keys` into `logs`.
        callbacks: The fit's callbacks, in order.
        keys: The keys `callback` writes, for the message.
    """
    for other in callbacks:
        if other is callback:
            return
        if isinstance(other, LOGGERS):
            kind = type(other).__name__
            warnings.warn(
                f"{kind} comes before '{callback.name}' in `callbacks`, so it writes each "
                f"epoch's logs before '{callback.name}' adds {', '.join(keys)}: they will be "
                f"missing from {kind}. Put the kerastroke callback before {kind}, e.g. "
                f"callbacks=[{type(callback).__name__}(...), {kind}(...)].",
                stacklevel=2,
            )
            return


def unique_names(callbacks, is_named):
    """Gives the callbacks `is_named` selects distinct `name`s, in list order.

    A name passed as `name=` is kept; two alike raise. A default name that
    another callback already uses gets the first free suffix `_1`, `_2`, ...,
    kept in `callback.name` (and its config) from then on, as Keras numbers
    layer names; a warning gives the new name.

    Args:
        callbacks: The fit's callbacks, in order.
        is_named: Selects the callbacks that write `<name>_...` keys; each has
            `name` and `_name_is_default`.

    Raises:
        ValueError: if two callbacks were given the same `name=`.
    """
    named = [callback for callback in callbacks if is_named(callback)]
    given = {}
    for callback in named:
        if callback._name_is_default:
            continue
        if callback.name in given:
            raise ValueError(
                f"Two callbacks are named {callback.name!r} ({type(given[callback.name]).__name__} "
                f"and {type(callback).__name__}): their logs keys would overwrite each other. "
                f"Pass a distinct `name=` to each. Received: name={callback.name!r} twice."
            )
        given[callback.name] = callback
    taken = set(given)
    for callback in named:
        if not callback._name_is_default:
            continue
        if callback.name not in taken:
            taken.add(callback.name)
            continue
        old = callback.name
        suffix = 1
        while f"{old}_{suffix}" in taken:
            suffix += 1
        callback.name = f"{old}_{suffix}"
        taken.add(callback.name)
        warnings.warn(
            f"Another callback in `callbacks` is named {old!r}: this {type(callback).__name__} "
            f"is renamed {callback.name!r} and logs {callback.name}_changed, "
            f"{callback.name}_fraction and {callback.name}_sparsity. Pass `name=` to choose "
            "the names.",
            stacklevel=2,
        )


class instance_only:  # noqa: N801 -- used as a decorator, like `property`
    """A method that, looked up on the class itself, explains that Keras needs an instance.

    Keras's `CallbackList` calls `set_model(model)` on every entry of
    `callbacks`; for a class (`callbacks=[Stroke]`) that call would bind
    `model` to `self` and fail with "missing 1 required positional argument".
    Looked up on the class, this gives a function that does the same as the
    method when given an instance first (`Stroke.set_model(stroke, model)`),
    and otherwise raises a TypeError that says what to pass.

    Example:
    >>> class Example:
    ...     @instance_only
    ...     def set_model(self, model):
    ...         self.model = model
    >>> Example.set_model("a model")
    Traceback (most recent call last):
    ...
    TypeError: `callbacks` must hold callback instances, not the class Example. Pass `Example()` (with its arguments) instead. Received: Example
    """

    def __init__(self, method):
        self.method = method
        self.__doc__ = method.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is not None:
            return self.method.__get__(instance, owner)
        method = self.method

        def on_class(*args, **kwargs):
            if args and isinstance(args[0], owner):
                return method(*args, **kwargs)
            raise TypeError(
                f"`callbacks` must hold callback instances, not the class {owner.__name__}. "
                f"Pass `{owner.__name__}()` (with its arguments) instead. Received: {owner.__name__}"
            )

        on_class.__name__ = getattr(method, "__name__", "method")
        on_class.__doc__ = method.__doc__
        return on_class
