"""Seeds derived from a base seed and a path of labels.

Every random draw in kerastroke uses an integer seed derived from
(base seed, step, variable, rule, piece), so that a draw depends on nothing
but its own coordinates: no generator state, no global RNG.
"""

import hashlib
import secrets

# keras.random passes integer seeds to 32-bit seed tensors on some backends.
SEED_LIMIT = 2**31 - 1


def derive(seed, *labels):
    """Returns a seed in [0, 2**31 - 1) that depends only on `seed` and `labels`.

    Args:
        seed: A Python int.
        *labels: Ints or strings naming the draw (a step, a variable path, ...).

    Example:
    >>> derive(7, "select") == derive(7, "select")
    True
    >>> derive(7, "select") != derive(7, "mutate")
    True
    """
    text = repr((int(seed),) + tuple(labels)).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") % SEED_LIMIT


def fresh():
    """A new random base seed, for callbacks built with `seed=None`."""
    return secrets.randbelow(SEED_LIMIT)
