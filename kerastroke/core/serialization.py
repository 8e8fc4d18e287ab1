"""Config dicts for the built-in pieces, so callbacks round-trip through get_config.

A registered piece is an attrs class; its config is its fields, with nested
pieces (a schedule inside `cutoff`, selectors inside `intersection`) serialised
in turn. User callables can be registered too with `register`.
"""

import attrs

_REGISTRY = {}


def register(name):
    """Class decorator: registers an attrs class under `name` for configs.

    Args:
        name: The name stored in configs, e.g. "selectors.value_range".
            A user's own pieces should use their own prefix.

    Example:
    >>> import attrs
    >>> @register("mine.flip")
    ... @attrs.frozen
    ... class Flip:
    ...     def __call__(self, weights, mask, seed):
    ...         return -weights
    >>> serialize(Flip())
    {'class_name': 'mine.flip', 'config': {}}
    """

    def decorate(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A piece is already registered as {name!r}: {_REGISTRY[name]!r}")
        _REGISTRY[name] = cls
        cls._kerastroke_name = name
        return cls

    return decorate


def _encode(value):
    if attrs.has(type(value)):
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
    name = getattr(type(piece), "_kerastroke_name", None)
    if name is None or _REGISTRY.get(name) is not type(piece):
        raise TypeError(
            f"Cannot serialize {piece!r}: only registered pieces have a config. "
            "Make it an attrs class and call kerastroke.core.serialization.register on it."
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
            f"Unknown piece {name!r} in config. Known pieces: {sorted(_REGISTRY)}"
        )
    kwargs = {key: _decode(value) for key, value in config["config"].items()}
    return _REGISTRY[name](**kwargs)
