"""Config dicts for pieces, so callbacks round-trip through get_config.

A registered piece is an attrs class, whose config is its fields (nested
pieces, such as a schedule inside `cutoff`, serialised in turn), or a plain
function, whose config is empty. The built-ins register themselves with
`register`; a user registers their own with `register_piece`.
"""

import inspect

import attrs

_REGISTRY = {}


def _add(name, piece):
    """Registers `piece` under `name`; redefining a piece (a re-run cell) replaces it."""
    known = _REGISTRY.get(name)
    if known is not None and known is not piece and not _same_definition(known, piece):
        raise ValueError(
            f"A piece is already registered as {name!r}: {known!r}. "
            f"Pass another name to register_piece. Received: name={name!r}"
        )
    _REGISTRY[name] = piece
    piece._kerastroke_name = name
    return piece


def _same_definition(known, piece):
    return (getattr(known, "__module__", None), getattr(known, "__qualname__", None)) == (
        getattr(piece, "__module__", None),
        getattr(piece, "__qualname__", None),
    )


def register(name):
    """Class decorator for the built-in pieces: registers an attrs class under `name`.

    Users register their own pieces with `kerastroke.register_piece`.

    Args:
        name: The name stored in configs, e.g. "selectors.value_range".
    """

    def decorate(cls):
        return _add(name, cls)

    return decorate


def register_piece(piece=None, *, name=None):
    """Registers a selector, mutator or schedule of your own, so configs can hold it.

    `PlasticityCallback.get_config()` (and `keras.saving.serialize_keras_object`)
    stores each piece as its registered name and its config. A piece can be:

    - an attrs class (`@attrs.frozen`), whose config is its fields: each
      instance is stored with its own parameters;
    - a plain function, stored by name only.

    Use it bare (`@register_piece`, stored as "Custom>" plus the class or
    function name, as Keras's `register_keras_serializable` names objects) or
    with a name (`@register_piece(name="mine.flip")`, or
    `@register_piece("mine.flip")`). The piece must be registered, i.e. its
    module imported, before a config holding it is loaded.

    Args:
        piece: The class or function, when used bare; or the name, as a
            string.
        name: The name stored in configs; default "Custom>" plus its name.

    Returns:
        The piece, unchanged but registered (bare use), or a decorator.

    Raises:
        TypeError: if the piece is neither an attrs class nor a function.
        ValueError: if another piece is registered under the same name.

    Example:
    >>> import attrs
    >>> import kerastroke
    >>> @kerastroke.register_piece
    ... @attrs.frozen
    ... class Flip:
    ...     def __call__(self, weights, mask, seed):
    ...         return -weights
    >>> serialize(Flip())
    {'class_name': 'Custom>Flip', 'config': {}}
    >>> @kerastroke.register_piece(name="mine.halve")
    ... def halve(step):
    ...     return 0.5 / (1 + step)
    >>> deserialize(serialize(halve)) is halve
    True
    """
    if isinstance(piece, str):
        if name is not None and name != piece:
            raise ValueError(
                f"register_piece got two names. Received: {piece!r} and name={name!r}"
            )
        piece, name = None, piece
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"`name` must be a non-empty string. Received: name={name!r}")

    def decorate(piece):
        if not (attrs.has(piece) or inspect.isfunction(piece)):
            raise TypeError(
                "register_piece registers an attrs class (decorate it with @attrs.frozen "
                "first, so its fields are its config) or a plain function. "
                f"Received: {piece!r}"
            )
        return _add(f"Custom>{piece.__name__}" if name is None else name, piece)

    return decorate if piece is None else decorate(piece)


def _encode(value):
    if attrs.has(type(value)) or inspect.isfunction(value):
        return serialize(value)
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return deserialize(value)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def serialize(piece):
    """Returns `{"class_name": ..., "config": {...}}` for a registered piece."""
    name = getattr(piece, "_kerastroke_name", None)
    if inspect.isfunction(piece) and name is not None and _REGISTRY.get(name) is piece:
        return {"class_name": name, "config": {}}
    name = getattr(type(piece), "_kerastroke_name", None)
    if name is None or _REGISTRY.get(name) is not type(piece):
        raise TypeError(
            f"Cannot serialize {piece!r}: only registered pieces have a config. Decorate its "
            "function, or its class made with @attrs.frozen, with @kerastroke.register_piece "
            "(see help(kerastroke.register_piece))."
        )
    config = {
        field.name: _encode(getattr(piece, field.name))
        for field in attrs.fields(type(piece))
        if field.init
    }
    return {"class_name": name, "config": config}


def deserialize(config):
    """Rebuilds a piece from the output of `serialize`."""
    name = config.get("class_name")
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown piece {name!r} in config: register it with @kerastroke.register_piece, "
            f"and import the module that does so before loading. Known pieces: {sorted(_REGISTRY)}"
        )
    piece = _REGISTRY[name]
    if inspect.isfunction(piece):
        return piece
    kwargs = {key: _decode(value) for key, value in config["config"].items()}
    return piece(**kwargs)
