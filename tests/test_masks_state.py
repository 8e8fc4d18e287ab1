"""Persistent masks are training state: an application assigns them, and no
backend retraces or rebuilds its train step for it.

What is checked on every backend: how often the train step's Python function
is traced (JAX's jit and TensorFlow's tf.function call it once per trace;
PyTorch calls it at every step, so there the count equals a plain fit's
too), that the train function stays the same object through `fit`, that the
zeros hold after every optimizer step, exact resume from a saved model, and
that a stripped or saved model is exactly a plain one, optimizer state
included.
"""

import keras
import numpy as np
import pytest

import kerastroke
from kerastroke import MagnitudePruning, schedules
from kerastroke.engine import persistence

BATCHES = 8  # per epoch


def _data(n=16 * BATCHES):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int32")


def _mlp(optimizer=None, built=True):
    keras.utils.set_random_seed(3)
    layers = [
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(24, activation="relu", name="middle"),
        keras.layers.Dense(2, name="out"),
    ]
    model = keras.Sequential(([keras.Input((10,))] if built else []) + layers, name="mlp")  # the same paths in every model
    model.compile(optimizer or keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _pruning(frequency=3):
    # A ramp that moves at every application: every one of them changes the masks.
    return MagnitudePruning(schedules.polynomial(0.1, 0.8, begin=0, end=2 * BATCHES), frequency=frequency, seed=0)


def _fit(model, callbacks=(), epochs=2, **kwargs):
    return model.fit(*_data(), batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks), **kwargs)


def _count_traces(model):
    """Counts calls of `model.train_step`: one per trace where the backend compiles."""
    calls = []
    step = model.train_step

    def train_step(*args, **kwargs):
        calls.append(None)
        return step(*args, **kwargs)

    model.train_step = train_step  # make_train_function reads the instance's attribute
    return calls


class _TrainFunctions(keras.callbacks.Callback):
    """The train function in use at every batch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(self.model.train_function)


class _Kernels(keras.callbacks.Callback):
    """The kernels at every batch's end, as the callbacks before this one left them."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append([np.array(v.numpy()) for v in self.model.trainable_variables if len(v.shape) == 2])


def _masks(model):
    return [v.constraint.keep for v in model.trainable_variables if isinstance(v.constraint, persistence.HoldZeros)]


def _described(variables):
    """Names, shapes and dtypes (paths start with the optimizer's name: adam, adam_1, ...)."""
    return [(v.path.rsplit("/", 1)[-1], tuple(v.shape), str(v.dtype)) for v in variables]


def _assert_holds_through_every_step(before, after):
    """`before[s]`: kernels after optimizer step s; `after[s]`: the same once the pruning applied."""
    for s in range(1, len(before)):
        for held, stepped in zip(after[s - 1], before[s]):
            kept = stepped[held == 0]
            # Exactly +0.0: nothing may regrow, not even to -0.0.
            assert not kept.view(np.uint32).any(), f"step {s}: a held entry changed"


# -- no retracing -----------------------------------------------------------------------


def test_applications_never_retrace_the_train_step():
    plain = _mlp()
    plain_traces = _count_traces(plain)
    _fit(plain)

    model = _mlp()
    traces = _count_traces(model)
    functions = _TrainFunctions()
    history = _fit(model, [_pruning(frequency=2), functions])

    assert len(history.history["magnitude_pruning_changed"]) == 2  # 8 applications, all changing entries
    assert all(changed > 0 for changed in history.history["magnitude_pruning_changed"])
    assert len(traces) == len(plain_traces)
    assert all(function is functions.seen[0] for function in functions.seen)
    # A second fit with the holds attached and tracked already reuses the train function.
    _fit(plain, epochs=3, initial_epoch=2)
    _fit(model, [_pruning(frequency=2), functions], epochs=3, initial_epoch=2)
    assert len(traces) == len(plain_traces)
    assert all(function is functions.seen[0] for function in functions.seen)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the optimizer passes the masks as state on JAX only")
def test_on_jax_the_masks_are_optimizer_state_during_fit():
    plain = _mlp()
    _fit(plain, epochs=1)
    model = _mlp()

    class Check(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.tracked = {id(v) for v in self.model.optimizer.variables}

    check = Check()
    _fit(model, [_pruning(), check], epochs=1)
    masks = _masks(model)
    assert len(masks) == 3
    assert {id(mask) for mask in masks} <= check.tracked
    assert len(model.optimizer.variables) == len(plain.optimizer.variables) + 3


# -- holds ------------------------------------------------------------------------------


def test_the_hold_passes_kept_bits_through_and_writes_plus_zero_where_held():
    # Kept: a subnormal of each sign, a NaN and -0.0 keep their bits; held:
    # -0.0, NaN and 2.5 all become +0.0 (an AND of the bits, or on TensorFlow
    # a `where`, which selects without arithmetic).
    weights = np.array([1e-45, -1e-45, np.nan, -0.0, -0.0, np.nan, 2.5], np.float32)
    keep = keras.Variable(np.array([-1, -1, -1, -1, 0, 0, 0], "int32"), trainable=False)
    held = keras.ops.convert_to_numpy(persistence.HoldZeros(keep)(keras.ops.convert_to_tensor(weights)))
    assert held.view(np.uint32).tolist() == weights.view(np.uint32)[:4].tolist() + [0, 0, 0]


@pytest.mark.parametrize("frequency", [1, 3])
def test_zeros_hold_after_every_optimizer_step(frequency):
    model = _mlp()
    before, after = _Kernels(), _Kernels()
    _fit(model, [before, _pruning(frequency), after], epochs=2)
    _assert_holds_through_every_step(before.kernels, after.kernels)
    # The held set grew with the ramp, so each application's new masks were used.
    zeros = [sum(int((k == 0).sum()) for k in step) for step in after.kernels]
    assert zeros == sorted(zeros) and zeros[-1] > zeros[frequency - 1] > 0


def test_a_model_built_by_its_first_batch_holds_from_its_first_application():
    # TensorFlow builds a Sequential without `keras.Input` inside the first traced
    # step: its holds attach at the first application, which rebuilds the train
    # function that once. JAX and PyTorch build the model before `on_train_begin`.
    model = _mlp(built=False)
    before, after, functions = _Kernels(), _Kernels(), _TrainFunctions()
    _fit(model, [before, _pruning(), after, functions], epochs=2)
    _assert_holds_through_every_step(before.kernels, after.kernels)
    assert len(_masks(model)) == 3
    rebuilt = [i for i in range(1, len(functions.seen)) if functions.seen[i] is not functions.seen[i - 1]]
    # The first application comes at the end of the third batch (step 3).
    assert rebuilt == ([2] if keras.backend.backend() == "tensorflow" else [])


def test_a_loss_scale_optimizer_holds_and_strips():
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))
    model = _mlp(optimizer)
    plain = _mlp(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01)))
    _fit(plain)
    before, after = _Kernels(), _Kernels()
    _fit(model, [before, _pruning(), after])
    _assert_holds_through_every_step(before.kernels, after.kernels)
    kerastroke.strip(model)
    assert _described(model.optimizer.variables) == _described(plain.optimizer.variables)
    assert _described(model.optimizer.inner_optimizer.variables) == _described(plain.optimizer.inner_optimizer.variables)
    for optimizer in (model.optimizer, model.optimizer.inner_optimizer):
        assert "save_own_variables" not in vars(optimizer) and "load_own_variables" not in vars(optimizer)


# -- strip, save, resume ----------------------------------------------------------------


def test_strip_leaves_the_variables_of_a_model_never_given_the_callback():
    plain = _mlp()
    _fit(plain)
    model = _mlp()
    _fit(model, [_pruning()])
    assert kerastroke.strip(model) is model
    assert [v.path for v in model.variables] == [v.path for v in plain.variables]  # both named "mlp"
    assert _described(model.variables) == _described(plain.variables)
    assert _described(model.optimizer.variables) == _described(plain.optimizer.variables)
    assert all(v.constraint is None for v in model.variables)
    assert "save_own_variables" not in vars(model.optimizer) and "load_own_variables" not in vars(model.optimizer)
    # It trains on as a plain model: the zeros regrow.
    zeros = kerastroke.sparsity(model)["total"]
    _fit(model, epochs=1)
    assert kerastroke.sparsity(model)["total"] < zeros / 2


def test_a_model_compiled_again_moves_its_masks_to_the_new_optimizer():
    model = _mlp()
    _fit(model, [_pruning()], epochs=1)
    first = model.optimizer
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before, after = _Kernels(), _Kernels()
    _fit(model, [before, _pruning(), after], epochs=1)
    _assert_holds_through_every_step(before.kernels, after.kernels)
    masks = {id(mask) for mask in _masks(model)}
    assert not masks & {id(v) for v in first.variables}
    assert "save_own_variables" not in vars(first)
    kerastroke.strip(model)
    assert not masks & {id(v) for v in model.optimizer.variables}


def _optimizer_values(model):
    return [np.array(v.numpy()) for v in model.optimizer.variables if "kerastroke" not in v.name]


def test_a_model_saved_with_its_holds_loads_as_a_plain_model_with_its_adam_state(tmp_path):
    model = _mlp()
    _fit(model, [_pruning()])
    assert _masks(model)
    model.save(tmp_path / "held.keras")  # no custom objects, no strip first
    loaded = keras.saving.load_model(tmp_path / "held.keras")
    assert all(v.constraint is None for v in loaded.variables)
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    saved = _optimizer_values(model)
    assert len(saved) == len(loaded.optimizer.variables)
    for want, got in zip(saved, _optimizer_values(loaded)):
        assert want.dtype == got.dtype and np.array_equal(want, got)
    assert int(np.asarray(loaded.optimizer.iterations.numpy())) == 2 * BATCHES
    # Weights only, into a plain model of the same layout (BackupAndRestore's way).
    model.save_weights(tmp_path / "held.weights.h5")
    plain = _mlp()
    _fit(plain, epochs=1)  # builds its optimizer
    plain.load_weights(tmp_path / "held.weights.h5")
    for want, got in zip(saved, _optimizer_values(plain)):
        assert np.array_equal(want, got)


def test_weights_saved_by_a_plain_model_load_while_holds_are_attached(tmp_path):
    plain = _mlp()
    _fit(plain)
    plain.save_weights(tmp_path / "plain.weights.h5")
    model = _mlp()
    _fit(model, [_pruning()], epochs=1)
    model.load_weights(tmp_path / "plain.weights.h5")
    for want, got in zip(_optimizer_values(plain), _optimizer_values(model)):
        assert np.array_equal(want, got)


def test_training_resumed_from_a_saved_model_repeats_a_straight_run(tmp_path, op_determinism):
    straight = _mlp()
    _fit(straight, [_pruning()], epochs=4)
    first = _mlp()
    _fit(first, [_pruning()], epochs=2)
    first.save(tmp_path / "half.keras")
    resumed = keras.saving.load_model(tmp_path / "half.keras")
    _fit(resumed, [_pruning()], epochs=4, initial_epoch=2)
    for a, b in zip(straight.weights, resumed.weights):
        assert np.array_equal(np.asarray(a.numpy()).view(np.uint32), np.asarray(b.numpy()).view(np.uint32))
