"""Compiles the CPU path's loops into Numba's cache before their first use.

Numba compiles each loop the first time it runs and caches the machine code
beside `kerastroke.accel.loops`, in `__pycache__`; later processes load it
(a fraction of a second). Compiling takes seconds per loop, so the first
application of a preset ever made on a machine took 8 to 12 s with a cold
cache (Stroke and SET on 4 x 1024^2, TensorFlow). `make install` runs this
module once; a user who installs with pip alone can run it too:

    python -m kerastroke.accel.warm_up

It applies each of the six built-in presets of the CPU path once to a
small model, so every loop is compiled for the argument types an
application gives it.
"""

import time

import keras
import numpy as np


def main():
    import kerastroke
    from kerastroke.accel import host

    if not host.available():
        print("kerastroke: Numba is not installed; no CPU path to compile.")
        return
    started = time.perf_counter()
    presets = [
        kerastroke.Stroke(seed=0),
        kerastroke.Pruning(seed=0),
        kerastroke.NeuroPlast(seed=0),
        kerastroke.MagnitudePruning(0.5, seed=0),
        kerastroke.SET(0.5, 0.3, seed=0),
        kerastroke.ShrinkPerturb(0.4, 0.1, seed=0),
    ]
    for preset in presets:
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(4)])
        model.compile(optimizer="adam", loss="mse")
        model.train_on_batch(np.ones((2, 8), "float32"), np.zeros((2, 4), "float32"))
        preset.set_model(model)
        preset.apply(0)
        preset.apply(1)
    # The summary's loop is compiled for each set of arrays it writes or
    # reads; the presets above use some of them, rules of one's own may use
    # the others.
    weights = np.ones((2, 4), np.float32)
    for with_masks in (False, True):
        for with_keeps in (False, True):
            for mask in (None, np.ones((2, 4), np.bool_)):
                host.summary(weights, weights, with_masks, with_keeps, mask)
    print(f"kerastroke: the CPU path's loops are compiled and cached ({time.perf_counter() - started:.1f} s).")


if __name__ == "__main__":
    main()
