"""Exact-count picks on a batch of tensors, in `keras.ops`, so they trace.

A batch is a tensor whose leading axis holds R variables of one shape (the
writer stacks them); `keys` has shape (R, 2), one `kerastroke.core.hashing`
key per variable. Every function returns masks of the batch's shape with an
exact number of True entries per variable, without a sort and without a
shape that depends on the data, so the same code runs under `jax.jit`,
`tf.function(jit_compile=True)` and eagerly on PyTorch, and gives the same
bits on each.

- `choose` picks `round(amount * eligible)` of each row's eligible entries
  uniformly at random: an entry's rank is a keyed bijection of its position
  (`hashing.bits`), so ranks never tie, and the `k` smallest ranks win.
- `smallest` picks the `k` eligible entries with the smallest scores; ties
  at the threshold go to the smallest random ranks, so uniformly at random.

Example:
>>> import numpy as np
>>> from kerastroke.core import hashing
>>> keys = hashing.keys_of([7])
>>> mask = choose(np.ones((1, 10), bool), 0.3, keys)
>>> int(np.asarray(mask).sum())
3
"""

import keras
import numpy as np
from keras import ops

from kerastroke.core import hashing, ranking


def flat(batch):
    """`batch` as (R, N): one row per variable."""
    return ops.reshape(batch, (batch.shape[0], -1))


def count(batch):
    """The True entries of each row of a boolean batch (R, ...), as int32 (R,)."""
    return ranking.count(flat(batch))


def counts(*batches):
    """`count` of several boolean batches of one shape, computed together."""
    return ranking.counts([flat(batch) for batch in batches])


def _positions(size):
    return ops.arange(size, dtype="int32")


def wide_float():
    """The widest float the backend computes in: float64, except JAX without 64-bit mode."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


def to_pick(amount, total):
    """`round(amount * total)` per row, as int32: Python's rounding (half to even).

    Computed in float64, where `amount * total` is the product Python forms
    (on JAX without 64-bit mode, float32: an amount that puts the product
    within float32 rounding of a half may round the other way).

    Args:
        amount: A float or 0-d float tensor in [0, 1].
        total: int32 tensor (R,): the eligible entries of each row.
    """
    wide = wide_float()
    if isinstance(amount, (int, float)):
        amount = np.asarray(amount, dtype=wide)  # ops.cast would go through float32
    product = ops.multiply(ops.cast(amount, wide), ops.cast(total, wide))
    return ops.cast(ops.round(product), "int32")


def ranks(keys, size, label="pick"):
    """Random ranks of positions 0..size-1, distinct within each row: (R, size) int32."""
    return hashing.bits(hashing.derive(keys, label), _positions(size))


def choose_count(eligible, k, keys):
    """Exactly `min(k, eligible)` of each row's eligible entries, uniformly at random.

    Args:
        eligible: Boolean batch (R, ...).
        k: int32 tensor (R,).
        keys: int32 tensor (R, 2).
    """
    rows = flat(eligible)
    picked = ranking.smallest(ranks(keys, rows.shape[1]), rows, k, distinct=True)
    return ops.reshape(picked, eligible.shape)


def choose(eligible, amount, keys):
    """`round(amount * eligible)` of each row's eligible entries, uniformly at random."""
    rows = flat(eligible)
    return choose_count(eligible, to_pick(amount, ranking.count(rows)), keys)


def smallest(scores, eligible, k, keys):
    """The `k` eligible entries of each row with the smallest `scores`.

    Args:
        scores: Integer batch (R, ...) ordered like the quantity ranked (e.g.
            `magnitude(w)`); int32 or int64.
        eligible: Boolean batch of the same shape.
        k: int32 tensor (R,); a row with fewer eligible entries takes them all.
        keys: int32 tensor (R, 2); ties at the threshold go to the entries
            with the smallest random rank.
    """
    rows = flat(eligible)
    tiebreak = ranks(keys, rows.shape[1], "ties")
    picked = ranking.smallest(flat(scores), rows, k, tiebreak=tiebreak)
    return ops.reshape(picked, eligible.shape)
