"""A rule composed from the pieces, changing a small model's weights during fit.

Run it from the repository root, after `make install` (or `make demo`, which
installs too, then runs `kerastroke compare` instead):

    .venv/bin/python examples/quickstart.py

It runs on every Keras backend: prefix `KERAS_BACKEND=jax` or
`KERAS_BACKEND=torch` to choose one (TensorFlow by default).
"""

import numpy as np
import keras

from kerastroke import PlasticityCallback, Rule, mutators, schedules, selectors

rng = np.random.default_rng(0)
x = rng.normal(size=(512, 16)).astype("float32")
y = (x[:, :4].sum(axis=1) > 0).astype("int32")

keras.utils.set_random_seed(0)
model = keras.Sequential(
    [keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(2)]
)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

# Re-initialise a quarter of the weights near zero, less each epoch, for 4 epochs.
rewire = Rule(
    selector=selectors.value_range(-0.02, 0.02),
    mutator=mutators.uniform(-0.1, 0.1),
    schedule=schedules.cutoff(schedules.decay(0.25, 0.5), 4),
)
history = model.fit(
    x, y, epochs=6, batch_size=64, verbose=2,
    callbacks=[PlasticityCallback([rewire], seed=0, verbose=1, name="rewire")],
)
print("\nentries rewired per epoch:", history.history["rewire_changed"])
print("fraction of kernel entries:", [round(f, 4) for f in history.history["rewire_fraction"]])
