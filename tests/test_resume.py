"""Exact resume through BackupAndRestore: a crashed run, restarted, gives the
same bits as a straight run (test_callback.py covers `initial_epoch`).

Every draw depends only on (seed, epoch, variable, rule), and the presets
keep no state, so new callback instances pick up where the old ones stopped.
"""

import keras
import numpy as np
import pytest

from kerastroke import MagnitudePruning, NeuroPlast, Pruning, Stroke, schedules

EPOCHS = 4


def _data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 5)).astype("float32")
    return x, (x.sum(axis=1) > 0).astype("int32")


def _model():
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _callbacks():
    return [
        Stroke(volatility_ratio=0.1, decay=0.8, cutoff=3, seed=11),
        Pruning(min_value=-0.02, max_value=0.02, seed=12),
        NeuroPlast(min_value=-0.005, max_value=0.005, seed=13),
    ]


def _bits(model):
    return [np.asarray(v.numpy()).view(np.uint32).copy() for v in model.weights]


def _straight():
    model = _model()
    model.fit(*_data(), epochs=EPOCHS, batch_size=32, shuffle=False, verbose=0, callbacks=_callbacks())
    return _bits(model)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("simulated crash at the start of epoch 2")


def test_resume_through_backup_and_restore_is_bit_identical(tmp_path, op_determinism):
    expected = _straight()
    x, y = _data()
    backup = str(tmp_path / "backup")
    # kerastroke callbacks come first, so each backup holds the weights after their step.
    model = _model()
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(x, y, epochs=EPOCHS, batch_size=32, shuffle=False, verbose=0,
                  callbacks=_callbacks() + [keras.callbacks.BackupAndRestore(backup), _Interrupt()])
    model = _model()  # a new process would start from fresh weights too
    model.fit(x, y, epochs=EPOCHS, batch_size=32, shuffle=False, verbose=0,
              callbacks=_callbacks() + [keras.callbacks.BackupAndRestore(backup)])
    for want, got in zip(expected, _bits(model)):
        assert np.array_equal(want, got)


def test_persistent_pruning_at_batch_frequency_resumes_bit_identically(tmp_path, op_determinism):
    """The held masks are not saved: the restored weights' zeros are the held set."""

    def callbacks():
        ramp = schedules.polynomial(0.1, 0.7, begin=0, end=3 * EPOCHS, power=1)
        return [MagnitudePruning(ramp, frequency=2, seed=14)]

    x, y = _data()
    fit = dict(epochs=EPOCHS, batch_size=32, shuffle=False, verbose=0)  # 3 steps per epoch
    straight = _model()
    straight.fit(x, y, callbacks=callbacks(), **fit)
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _model().fit(x, y, callbacks=callbacks() + [keras.callbacks.BackupAndRestore(backup), _Interrupt()], **fit)
    resumed = _model()
    resumed.fit(x, y, callbacks=callbacks() + [keras.callbacks.BackupAndRestore(backup)], **fit)
    for want, got in zip(_bits(straight), _bits(resumed)):
        assert np.array_equal(want, got)
