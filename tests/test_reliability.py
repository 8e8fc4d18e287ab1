"""A callback that rewrites weights must never lose a run or corrupt it silently:
mixed precision, bad weights already present, failing user pieces, odd inputs."""

import warnings

import keras
import numpy as np
import pytest

from kerastroke import NeuroPlast, PlasticityCallback, Pruning, Rule, Stroke, mutators, selectors


def _mlp(dtype=None, units=12):
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(units, activation="relu", dtype=dtype),
            keras.layers.Dense(3, dtype=dtype),
        ]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 1).astype("int32")


def _values(model):
    return [np.array(v.numpy()) for v in model.trainable_variables]


# -- mixed precision and half-precision variables ----------------------------


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_variables_and_finite_values(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = _mlp()
        history = model.fit(*_data(), epochs=2, verbose=0, callbacks=[Stroke(seed=0), NeuroPlast(seed=1)])
    finally:
        keras.config.set_dtype_policy(previous)
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert all(np.isfinite(v).all() for v in _values(model))
    assert history.history["stroke_changed"] == [round(0.05 * 72) + round(0.05 * 36)] * 2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_variables_get_representable_values_inside_the_bounds(dtype):
    model = _mlp(dtype=dtype, units=40)
    model.build((None, 6))
    # 0.05 is not representable in either dtype: its nearest values lie above it.
    stroke = Stroke(volatility_ratio=1.0, low_bound=-0.05, high_bound=0.05, seed=3)
    stroke.set_model(model)
    stroke.apply(0)
    for variable in model.trainable_variables:
        assert variable.dtype == dtype
        if len(variable.shape) < 2:
            continue
        values = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(variable.value, "float64")))
        assert np.isfinite(values).all()
        assert values.min() >= -0.05 and values.max() < 0.05


# -- weights that are already bad -------------------------------------------


def _poison(model):
    kernel = model.layers[0].kernel
    values = np.array(kernel.numpy())
    values[0, :4] = np.nan
    values[1, :2] = np.inf
    values[2, :2] = -np.inf
    values[3, :] = 0.001  # inside every default range
    kernel.assign(values)
    return values


@pytest.mark.parametrize(
    "callback",
    [lambda: Pruning(seed=0), lambda: NeuroPlast(seed=0), lambda: NeuroPlast(pruning_min=-0.1, pruning_max=0.1)],
)
def test_value_ranges_never_select_nan_or_inf(callback):
    model = _mlp()
    model.build((None, 6))
    before = _poison(model)
    cb = callback()
    cb.set_model(model)
    cb.apply(0)
    after = np.array(model.layers[0].kernel.numpy())
    assert np.array_equal(np.isnan(after), np.isnan(before))
    assert np.array_equal(after[np.isinf(before)], before[np.isinf(before)])
    assert not np.array_equal(after[3], before[3])  # the finite entries in range did change


def test_random_selection_may_replace_nan_with_finite_values_only():
    model = _mlp()
    model.build((None, 6))
    before = _poison(model)
    stroke = Stroke(volatility_ratio=1.0, seed=0)
    stroke.set_model(model)
    stroke.apply(0)
    after = np.array(model.layers[0].kernel.numpy())
    assert np.isfinite(after).all() and not np.isfinite(before).all()


# -- failures are clear and lose nothing --------------------------------------


def _wrong_shape(weights, amount, seed):
    return np.ones((2, 2), bool)


def _wrong_dtype(weights, mask, seed):
    return keras.ops.cast(weights, "int32")


def _raises(weights, mask, seed):
    raise RuntimeError("user mutator broke")


@pytest.mark.parametrize(
    "rule, error, piece",
    [
        (Rule(_wrong_shape, mutators.zero()), ValueError, "selector"),
        (Rule(selectors.random_fraction(), _wrong_dtype), ValueError, "mutator"),
        (Rule(selectors.random_fraction(), _raises), RuntimeError, "mutator"),
    ],
)
def test_a_failing_piece_names_rule_piece_and_variable_and_changes_nothing(rule, error, piece):
    model = _mlp()
    model.build((None, 6))
    before = _values(model)
    # A first rule that works: its effect must not be written either.
    callback = PlasticityCallback([Rule(selectors.random_fraction(), mutators.zero()), rule], seed=0)
    callback.set_model(model)
    with pytest.raises(error) as caught:
        callback.apply(0)
    text = str(caught.value) + " ".join(getattr(caught.value, "__notes__", []))
    assert "rule 1" in text and piece in text and "dense" in text and "kernel" in text
    for old, new in zip(before, _values(model)):
        assert np.array_equal(old, new)


class _NoNotes(KeyError):
    """An error as Python 3.10 has them: no `add_note`."""

    @property
    def add_note(self):
        raise AttributeError("add_note")


def _raises_without_notes(weights, mask, seed):
    raise _NoNotes("user mutator broke")


def test_a_piece_keeps_its_error_type_where_errors_have_no_notes():
    model = _mlp()
    model.build((None, 6))
    callback = PlasticityCallback([Rule(selectors.random_fraction(), _raises_without_notes)], seed=0)
    callback.set_model(model)
    with pytest.raises(_NoNotes) as caught:
        callback.apply(0)
    text = str(caught.value)
    assert "user mutator broke" in text and "rule 0" in text and "mutator" in text and "kernel" in text


def test_schedule_outside_unit_interval_is_a_clear_error():
    callback = PlasticityCallback([Rule(selectors.random_fraction(), mutators.zero(), lambda step: 1.5)])
    model = _mlp()
    model.build((None, 6))
    callback.set_model(model)
    with pytest.raises(ValueError, match=r"returned 1\.5 at step 0"):
        callback.apply(0)


def test_frequency_zero_and_string_layer_index_are_explained():
    with pytest.raises(ValueError, match="frequency"):
        Stroke(frequency=0)
    model = _mlp()
    with pytest.raises(ValueError, match=r"Did you mean the index layers=\[0\]"):
        model.fit(*_data(), epochs=1, verbose=0, callbacks=[Stroke(layers=["0"])])


def test_a_model_without_targets_warns():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, trainable=False)])
    model.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(np.zeros((8, 6)), np.zeros((8, 3)), epochs=1, verbose=0, callbacks=[Stroke()])
    assert any("targets no variable" in str(w.message) for w in caught)
