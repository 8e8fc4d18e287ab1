"""Runs presets under tf.distribute.MirroredStrategy on two logical CPUs.

Prints one JSON line: for every targeted variable, whether all replicas hold
bit-identical values, how many entries the callbacks changed, and the kernels'
sparsity after every batch (a persistent MagnitudePruning holds half of them). Run in its
own process: logical devices must be set before TensorFlow starts.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import toy  # noqa: E402

from kerastroke import MagnitudePruning, NeuroPlast, Pruning, Stroke, schedules  # noqa: E402


class ReplicaCheck(keras.callbacks.Callback):
    """After every epoch (and batch), records whether replicas agree."""

    def __init__(self):
        super().__init__()
        self.disagreements = 0
        self.checks = 0
        self.batch_sparsity = []

    def _check(self):
        for variable in self.model.trainable_variables:
            replicas = [np.asarray(r.numpy()) for r in variable.value.values]
            self.checks += 1
            first = replicas[0].view(np.uint32)
            if any(not np.array_equal(first, r.view(np.uint32)) for r in replicas[1:]):
                self.disagreements += 1

    def on_train_batch_end(self, batch, logs=None):
        self._check()
        self.batch_sparsity.append(kernel_sparsity(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self._check()


def kernel_sparsity(model):
    """Zero entries over all entries of the model's kernels (every replica agrees, as checked)."""
    kernels = [np.asarray(v.numpy()) for v in model.trainable_variables if len(v.shape) == 2]
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / sum(k.size for k in kernels)


def main(frequency):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = toy.data()
    with strategy.scope():
        model = toy.compiled_mlp()
    replicas = len(model.trainable_variables[0].value.values)
    callbacks = [
        Stroke(volatility_ratio=0.2, seed=1, frequency=frequency),
        Pruning(min_value=-0.05, max_value=0.05, seed=2, frequency=frequency),
        NeuroPlast(min_value=-0.01, max_value=0.01, seed=3, frequency=frequency),
        MagnitudePruning(schedules.constant(0.5), seed=4, frequency=frequency, name="held"),
    ]
    check = ReplicaCheck()
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=callbacks + [check])
    print(json.dumps({
        "replicas": replicas,
        "checks": check.checks,
        "disagreements": check.disagreements,
        "stroke_changed": history.history["stroke_changed"],
        "held_sparsity": history.history["held_sparsity"],
        "batch_sparsity": check.batch_sparsity,
    }))


if __name__ == "__main__":
    main("epoch" if sys.argv[1] == "epoch" else int(sys.argv[1]))
