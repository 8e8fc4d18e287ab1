"""Seeds derived from a base seed and a path of labels.

Every random draw in kerastroke uses an integer seed derived from
(base seed, step, variable, rule, piece), so that a draw depends on nothing
but its own coordinates: no generator state, no global RNG.
"""

import hashlib
import operator
import secrets

# keras.random passes integer seeds to 32-bit seed tensors on some backends.
SEED_LIMIT = 2**31 - 1


def derive(seed, *labels):
    """Returns a seed in [0, 2**31 - 1) that depends only on `seed` and `labels`.

    Args:
        seed: Any integer (Python, NumPy, or a scalar integer tensor), of any size.
        *labels: Ints or strings naming the draw (a step, a variable path, ...).

    Raises:
        TypeError: If `seed` is not an integer (None, a float, a bool).

    Example:
    >>> derive(7, "select") == derive(7, "select")
    True
    >>> derive(7, "select") != derive(7, "mutate")
    True
    """
    return _digest(seed, labels) % SEED_LIMIT


def fresh():
    """A new random base seed, for callbacks built with `seed=None`."""
    return secrets.randbelow(SEED_LIMIT)


def key(seed, *labels):
    """A 64-bit key for `kerastroke.core.draws`, from `seed` and `labels` as in `derive`.

    Example:
    >>> 0 <= key(7, "uniform") < 2**64
    True
    """
    return _digest(seed, labels)


def _digest(seed, labels):
    """64 bits of blake2b over `(seed, *labels)`; the seed must be an integer."""
    # int() would accept 1.5 or "7" and quietly give the draws of another seed.
    try:
        if isinstance(seed, bool):
            raise TypeError
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"`seed` must be an integer. Received: seed={seed!r}") from None
    text = repr((seed,) + tuple(labels)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
