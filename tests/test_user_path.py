"""What a Keras user meets: unbuilt models, several models, optimizer state and
averages, layer constraints, broken pieces and custom training loops.

Each test runs on the backend selected by KERAS_BACKEND (tensorflow, jax, torch).
"""

import warnings

import keras
import numpy as np
import pytest

from kerastroke import MagnitudePruning, PlasticityCallback, Rule, mutators, schedules, selectors
from tests import models

MARK = np.float32(models.MARK)


def _mark(amount=0.5, **kwargs):
    """A callback writing MARK into `amount` of every kernel's entries."""
    rule = Rule(selectors.random_fraction(), mutators.constant(models.MARK), schedules.constant(amount))
    return PlasticityCallback([rule], seed=0, **kwargs)


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def _kernels(model):
    return [v for v in model.trainable_variables if v.name == "kernel"]


def _data(inputs=6, outputs=3, samples=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, inputs)).astype("float32")
    y = rng.normal(size=(samples, outputs)).astype("float32")
    return x, y


def _built_mlp(name="mlp"):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="hidden"), keras.layers.Dense(3, name="out")], name=name
    )
    for variable in model.weights:  # weights set here: no entry equals MARK
        variable.assign(np.full(variable.shape, 0.25, "float32"))
    return model


def _error_text(info):
    return str(info.value) + " ".join(getattr(info.value, "__notes__", []))


# -- 1. models whose weights appear with the first batch --------------------------------


class _TwoDense(keras.Model):
    def __init__(self):
        super().__init__(name="two_dense")
        self.hidden = keras.layers.Dense(5, name="hidden")
        self.out = keras.layers.Dense(3, name="out")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def _sequential_without_input():
    model = keras.Sequential(name="no_input")
    model.add(keras.layers.Dense(5, name="hidden"))
    model.add(keras.layers.Dense(3, name="out"))
    return model


@pytest.mark.parametrize("build", [_sequential_without_input, _TwoDense], ids=["sequential", "subclassed"])
def test_a_model_built_by_its_first_batch_is_targeted(build):
    model = build()
    model.compile(keras.optimizers.SGD(0.0), "mse")  # no learning: every change is the callback's
    callback = _mark(0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(*_data(), epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    assert not [w for w in caught if "targets no variable" in str(w.message)]
    kernels = _kernels(model)
    assert len(kernels) == 2
    expected = sum(round(0.5 * int(np.prod(k.shape))) for k in kernels)
    assert history.history["plasticity_changed"] == [expected]
    assert sum(int(np.sum(v == MARK)) for v in _values(kernels)) == expected


# -- 4. caches follow the model ------------------------------------------------------


def test_apply_after_set_model_writes_the_model_that_was_set():
    first, second = _built_mlp("first"), _built_mlp("second")
    first.compile(keras.optimizers.SGD(0.0), "mse")
    callback = _mark(0.5)
    first.fit(*_data(), epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    first_before = _values(first.weights)
    second_before = _values(second.weights)

    callback.set_model(second)
    result = callback.apply(3)

    for old, new in zip(first_before, _values(first.weights)):
        assert models.same_bits(old, new)
    changed = 0
    for variable, old, new in zip(second.weights, second_before, _values(second.weights)):
        if variable.name != "kernel":
            assert models.same_bits(old, new), variable.path
            continue
        assert int(np.sum(new != old)) == round(0.5 * old.size), variable.path
        assert np.all(new[new != old] == MARK)
        changed += int(np.sum(new != old))
    assert result["changed"] == changed


# -- 5. optimizer slots found by identity ------------------------------------------


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.Adam(0.01, amsgrad=True),
        lambda: keras.optimizers.AdamW(0.01),
        lambda: keras.optimizers.SGD(0.01, momentum=0.9),
        lambda: keras.optimizers.RMSprop(0.01, momentum=0.9, centered=True),
        lambda: keras.optimizers.Adagrad(0.01),
    ],
    ids=["adam", "adam_amsgrad", "adamw", "sgd_momentum", "rmsprop_centered", "adagrad"],
)
def test_reset_optimizer_touches_only_the_targeted_variable_s_slots(make_optimizer):
    # Layers `a` and `a_kernel`: `a/kernel`'s slots are named `a_kernel_<slot>`,
    # a prefix of `a_kernel/kernel`'s (`a_kernel_kernel_<slot>`), and both are 3x3.
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(3, name="a_kernel")]
    )
    optimizer = make_optimizer()
    model.compile(optimizer, "mse")
    model.fit(*_data(3, 3), epochs=1, batch_size=8, verbose=0)  # every slot moves away from its start
    target = model.get_layer("a").kernel
    index = optimizer._get_variable_index(target)
    own = [
        slots[index] for slots in vars(optimizer).values()
        if isinstance(slots, list) and len(slots) == len(model.trainable_variables)
        and slots is not optimizer._trainable_variables
        and isinstance(slots[index], keras.Variable)
    ]
    assert own  # every optimizer here keeps per-entry state
    before = {id(v): _values([v])[0] for v in optimizer.variables}

    callback = _mark(1.0, layers=["a"], reset_optimizer=True)
    callback.set_model(model)
    callback.apply(0)

    for variable in optimizer.variables:
        value = _values([variable])[0]
        if any(variable is slot for slot in own):
            assert np.all(value == 0.0), variable.path
        else:
            assert models.same_bits(before[id(variable)], value), variable.path


# -- 6. an optimizer's moving average --------------------------------------------------


def test_pruning_survives_the_moving_average_written_at_the_end_of_fit():
    keras.utils.set_random_seed(1)
    model = _built_mlp()
    rng = np.random.default_rng(1)
    for variable in model.weights:  # distinct magnitudes: no ties at the pruning threshold
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    model.compile(keras.optimizers.Adam(0.01, use_ema=True), "mse")
    pruning = MagnitudePruning(0.8, seed=0)
    history = model.fit(*_data(), epochs=2, batch_size=8, verbose=0, callbacks=[pruning])
    logged = history.history["magnitude_pruning_sparsity"][-1]
    kernels = _values(_kernels(model))
    final = sum(int(np.sum(k == 0.0)) for k in kernels) / sum(k.size for k in kernels)
    assert logged == pytest.approx(0.8, abs=0.05)
    assert final == pytest.approx(logged)


def test_a_write_survives_the_moving_average_written_at_the_end_of_fit():
    model = _built_mlp()
    model.compile(keras.optimizers.SGD(0.0, use_ema=True), "mse")  # the average is the weights
    history = model.fit(*_data(), epochs=1, batch_size=8, verbose=0, callbacks=[_mark(0.5)])
    kernels = _values(_kernels(model))
    assert sum(int(np.sum(k == MARK)) for k in kernels) == history.history["plasticity_changed"][0]
    assert history.history["plasticity_changed"][0] == sum(round(0.5 * k.size) for k in kernels)


# -- 7. a layer's own constraint --------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
def test_written_values_obey_the_layer_constraint(persistent):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4, kernel_constraint=keras.constraints.NonNeg(), name="pos")]
    )
    kernel = model.get_layer("pos").kernel
    kernel.assign(np.full(kernel.shape, 0.5, "float32"))
    model.compile(keras.optimizers.SGD(0.0), "mse")
    rule = Rule(selectors.random_fraction(), mutators.constant(-0.25), schedules.constant(0.5))
    callback = PlasticityCallback([rule], seed=0, persistent=persistent)
    history = model.fit(*_data(6, 4), epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    value = _values([kernel])[0]
    written = round(0.5 * value.size)
    assert np.all(value >= 0.0)
    assert int(np.sum(value == 0.0)) == written  # NonNeg(-0.25) is 0
    assert int(np.sum(value == 0.5)) == value.size - written
    assert history.history["plasticity_changed"] == [written]


# -- 9. pieces that return what a rule cannot write -------------------------------------


def _nan_mutator(weights, mask, seed):
    return keras.ops.where(mask, np.float32("nan"), weights)


class _InfiniteValues:
    """A mutator with a batched form (compiled with the rest) whose values are infinite."""

    def __call__(self, weights, mask, seed):
        return keras.ops.where(mask, np.float32("inf"), weights)

    def mutate_batch(self, weights, mask, keys):
        return keras.ops.where(mask, np.float32("inf"), weights)


@pytest.mark.parametrize("mutator", [_nan_mutator, _InfiniteValues()], ids=["nan", "inf_batched"])
def test_a_mutator_giving_non_finite_values_writes_nothing(mutator):
    model = _built_mlp()
    callback = PlasticityCallback([Rule(selectors.random_fraction(), mutator, schedules.constant(0.5))], seed=0)
    callback.set_model(model)
    before = _values(model.weights)
    with pytest.raises(ValueError) as info:
        callback.apply(0)
    text = _error_text(info)
    assert "rule 0" in text and "mutator" in text and "hidden/kernel" in text and "NaN or infinite" in text
    for old, new in zip(before, _values(model.weights)):
        assert models.same_bits(old, new)


def test_weights_already_nan_do_not_stop_a_rule():
    model = _built_mlp()
    kernel = model.get_layer("hidden").kernel
    value = np.full(kernel.shape, 0.25, "float32")
    value[0, 0] = np.nan
    kernel.assign(value)
    # value_range never selects NaN; the NaN entry is left as it is.
    rule = Rule(selectors.value_range(-1.0, 1.0), mutators.constant(models.MARK))
    callback = PlasticityCallback([rule], seed=0)
    callback.set_model(model)
    callback.apply(0)
    after = _values([kernel])[0]
    assert np.isnan(after[0, 0])
    assert int(np.sum(after == MARK)) == value.size - 1


@pytest.mark.parametrize("returned", ["0.5", True, None, "abc"], ids=repr)
def test_a_schedule_returning_a_non_number_is_refused_with_its_value(returned):
    model = _built_mlp()
    rule = Rule(selectors.random_fraction(), mutators.constant(models.MARK), lambda step: returned)
    callback = PlasticityCallback([rule], seed=0)
    callback.set_model(model)
    before = _values(model.weights)
    with pytest.raises(TypeError, match=f"returned {returned!r}"):
        callback.apply(0)
    for old, new in zip(before, _values(model.weights)):
        assert models.same_bits(old, new)


@pytest.mark.parametrize("piece", ["selector", "mutator"])
def test_a_piece_returning_none_is_named(piece):
    model = _built_mlp()
    pieces = {"selector": selectors.random_fraction(), "mutator": mutators.constant(models.MARK)}
    pieces[piece] = lambda *args: None
    rule = Rule(pieces["selector"], pieces["mutator"], schedules.constant(0.5))
    callback = PlasticityCallback([rule], seed=0)
    callback.set_model(model)
    with pytest.raises(TypeError) as info:
        callback.apply(0)
    text = _error_text(info)
    assert "rule 0" in text and piece in text and "hidden/kernel" in text and "returned None" in text


# -- 10. custom training loops ---------------------------------------------------------


def _train_step(model, optimizer, x, y):
    """One optimizer step written for the running backend, outside `fit`."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.ops.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(trainable):
            prediction, _ = model.stateless_call(trainable, non_trainable, x)
            return jax.numpy.mean(jax.numpy.square(prediction - y))

        grads = jax.grad(loss_of)([v.value for v in model.trainable_variables])
    else:
        import torch

        model.zero_grad()
        loss = torch.mean(torch.square(model(x) - torch.as_tensor(y)))
        loss.backward()
        grads = [v.value.grad for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)


def test_a_custom_training_loop_applies_through_set_model_and_apply():
    model = _built_mlp()
    optimizer = keras.optimizers.SGD(0.01)  # the loop's own: the model is not compiled
    x, y = _data()
    callback = _mark(0.25, frequency=3)
    with pytest.raises(RuntimeError, match=r"set_model\(model\)"):
        callback.apply(0)
    callback.set_model(model)
    for step in range(2):
        before = _values(model.weights)
        _train_step(model, optimizer, x, y)
        moved = _values(model.weights)
        assert any(not np.array_equal(a, b) for a, b in zip(before, moved))  # the loop trains
        result = callback.apply(step)  # step 1 is no multiple of frequency=3: applied all the same
        changed = 0
        for variable, old, new in zip(model.weights, moved, _values(model.weights)):
            if variable.name != "kernel":
                assert models.same_bits(old, new), variable.path
                continue
            assert not np.any(old == MARK)
            differs = new != old
            assert int(differs.sum()) == round(0.25 * old.size), variable.path
            assert np.all(new[differs] == MARK), variable.path
            changed += int(differs.sum())
        assert result["changed"] == changed


def test_reset_optimizer_in_a_custom_loop_resets_the_loop_s_optimizer():
    model = _built_mlp()
    optimizer = keras.optimizers.Adam(0.01)
    _train_step(model, optimizer, *_data())
    callback = _mark(1.0, layers=["hidden"], reset_optimizer=True)
    callback.set_model(model)
    before = _values(model.weights)
    with pytest.raises(ValueError, match=r"set `model.optimizer`"):
        callback.apply(0)  # no optimizer to reset: refused, not silently skipped
    for old, new in zip(before, _values(model.weights)):
        assert models.same_bits(old, new)

    model.optimizer = optimizer
    slots_before = {id(v): _values([v])[0] for v in optimizer.variables}
    callback.apply(0)
    index = optimizer._get_variable_index(model.get_layer("hidden").kernel)
    reset = [optimizer._momentums[index], optimizer._velocities[index]]
    for variable in optimizer.variables:
        value = _values([variable])[0]
        if any(variable is slot for slot in reset):
            assert np.any(slots_before[id(variable)] != 0.0) and np.all(value == 0.0), variable.path
        else:
            assert models.same_bits(slots_before[id(variable)], value), variable.path
