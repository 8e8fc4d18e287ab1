"""Runs presets under keras.distribution.DataParallel on two virtual CPU devices (JAX).

Prints one JSON line: how many devices held each variable, how many times
every targeted variable was checked and found to hold the same bits on
every device, how often it did not, and what the callbacks logged. Run in
its own process: XLA's device count must be set before JAX starts.

Usage: python data_parallel.py FREQUENCY   ("epoch" or a number of steps)
"""

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import toy  # noqa: E402

from kerastroke import MagnitudePruning, Stroke, schedules  # noqa: E402


class ShardCheck(keras.callbacks.Callback):
    """After every batch and epoch, records whether each variable's device copies agree."""

    def __init__(self):
        super().__init__()
        self.checks = 0
        self.disagreements = 0
        self.devices = set()
        self.batch_sparsity = []

    def _check(self):
        for variable in self.model.trainable_variables:
            shards = [np.asarray(shard.data) for shard in variable.value.addressable_shards]
            self.devices.add(len(shards))
            bits = [shard.view(np.uint8) for shard in shards]
            self.checks += 1
            if any(not np.array_equal(bits[0], other) for other in bits[1:]):
                self.disagreements += 1

    def on_train_batch_end(self, batch, logs=None):
        self._check()
        self.batch_sparsity.append(kernel_sparsity(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self._check()


def kernel_sparsity(model):
    """Zero entries over all entries of the model's kernels."""
    kernels = [np.asarray(v.value) for v in model.trainable_variables if len(v.shape) == 2]
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels)


def main(frequency):
    devices = jax.devices("cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    x, y = toy.data()
    model = toy.compiled_mlp()
    callbacks = [
        Stroke(volatility_ratio=0.2, seed=1, frequency=frequency),
        MagnitudePruning(schedules.constant(0.5), seed=2, frequency=frequency, name="pruning"),
        MagnitudePruning(
            schedules.polynomial(0.0, 0.6, begin=0, end=8, power=1), seed=3, frequency=frequency, name="held"
        ),
    ]
    check = ShardCheck()
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=callbacks + [check])
    print(json.dumps({
        "devices": len(devices),
        "copies": sorted(check.devices),
        "checks": check.checks,
        "disagreements": check.disagreements,
        "stroke_changed": history.history["stroke_changed"],
        "held_sparsity": history.history["held_sparsity"],
        "batch_sparsity": check.batch_sparsity,
        "final_sparsity": kernel_sparsity(model),
    }))


if __name__ == "__main__":
    main("epoch" if sys.argv[1] == "epoch" else int(sys.argv[1]))
