"""The subjects: one-layer Dense models, the three presets, a way to put weights back."""

import keras
import numpy as np

from kerastroke import NeuroPlast, Pruning, Stroke

# Default parameters (kerastroke 2.1.1's), a fixed seed.
PRESETS = {"Stroke": Stroke, "Pruning": Pruning, "NeuroPlast": NeuroPlast}


def dense_model(side, seed=0):
    """Dense(side) on `side` inputs, with a bias: kerastroke 2.1.1 reads both.

    The kernel has Keras's default Glorot-uniform initial values, so every
    entry is within +-sqrt(6 / (2 * side)): inside Pruning's default +-0.2
    (it zeroes the whole kernel), and about 0.01 / limit of them inside
    NeuroPlast's default +-0.01.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((side,)), keras.layers.Dense(side)], name=f"dense_{side}")


def applied(preset_class, model, seed=0):
    """A preset bound to `model`, its targets resolved as `fit` would."""
    callback = preset_class(seed=seed)
    callback.set_model(model)
    callback.on_train_begin()
    return callback


def kernel_of(model):
    return model.layers[-1].kernel


def changed_fraction(before, after):
    """Fraction of entries whose value differs (NaN-safe: NaN == NaN counts as unchanged)."""
    before, after = np.asarray(before), np.asarray(after)
    same = (before == after) | (np.isnan(before) & np.isnan(after))
    return float(1.0 - np.count_nonzero(same) / same.size)
