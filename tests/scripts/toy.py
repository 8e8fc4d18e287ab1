"""The data and model every distributed-training script trains.

Imported by the scripts after they have configured devices and the
backend: Keras is imported when a function is called, not here.
"""

import numpy as np


def data():
    """128 samples of 8 features; the label is the sign of the first."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def compiled_mlp():
    """An 8-16-2 MLP compiled with Adam (inside a strategy's scope where one is active)."""
    import keras

    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
