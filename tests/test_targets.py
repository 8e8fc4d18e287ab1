"""Which variables a callback touches: `layers`, frozen layers, odd variables, bad entries."""

import keras
import numpy as np
import pytest

from kerastroke import PlasticityCallback, Rule, Stroke, mutators, selectors
from kerastroke.engine import targets
from tests import models

MARK = np.float32(models.MARK)


def _mark_all(**kwargs):
    """Sets every targeted entry to MARK: what changed shows what was targeted."""
    return Stroke(value=models.MARK, volatility_ratio=1.0, seed=0, **kwargs)


def _changed_paths(model, callback, **fit_kwargs):
    recorder = models.Recorder()
    models.fit(model, [recorder, callback], **fit_kwargs)
    before, after = recorder.before[0], models.snapshot(model)
    changed = set()
    for path, old in before.items():
        new = after[path]
        if not models.same_bits(old, new):
            assert np.all(new == MARK), f"{path} was partly written"
            changed.add(path)
    return changed


@pytest.mark.parametrize(
    "build, layers, expected",
    [
        (models.mlp_sequential, [0], ["hidden/kernel"]),
        (models.mlp_sequential, [0, -1], ["hidden/kernel", "out/kernel"]),
        (models.mlp_sequential, ["middle"], ["middle/kernel"]),
        (models.mlp_sequential, [2, "hidden"], ["out/kernel", "hidden/kernel"]),
        (models.mlp_subclassed, ["out"], ["out/kernel"]),
        # Functional models list their InputLayer first: index 1 is the nested model.
        (models.nested, [1], ["inner/inner_a/kernel", "inner/inner_b/kernel"]),
        (models.nested, ["inner"], ["inner/inner_a/kernel", "inner/inner_b/kernel"]),
        (models.nested, ["inner_b"], ["inner/inner_b/kernel"]),
        (models.lstm, ["lstm"], ["lstm_cell/kernel", "lstm_cell/recurrent_kernel"]),
    ],
    ids=["index", "indices", "name", "mixed", "subclassed-name", "nested-index", "nested-model-name",
         "nested-layer-name", "lstm-name"],
)
def test_layers_selects_exactly_those_layers_kernels(build, layers, expected):
    model = build()
    changed = _changed_paths(model, _mark_all(layers=layers))
    assert changed == models.select(changed, expected)
    assert len(changed) == len(expected)


def test_biases_alone_touch_only_biases():
    model = models.mlp_sequential()
    changed = _changed_paths(model, _mark_all(biases=True, do_weights=False))
    assert changed == models.select(changed, ["hidden/bias", "middle/bias", "out/bias"])


def test_repeated_entries_and_shared_layers_are_written_once():
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    outputs = shared(shared(inputs))
    model = keras.Model(inputs, outputs, name="shared_model")
    model.compile(keras.optimizers.SGD(0.01), "mse")
    recorder = models.Recorder()
    stroke = Stroke(value=models.MARK, volatility_ratio=0.5, layers=["shared", 1, "shared"], seed=3)
    history = models.fit(model, [recorder, stroke])
    old = recorder.before[0][shared.kernel.path]
    new = shared.kernel.numpy()
    assert int(np.sum(new != old)) == 8  # round(0.5 * 16): one draw, not two.
    assert history.history["stroke_changed"] == [8]
    assert targets.variables(model, ("shared", 1, "shared")) == [shared.kernel]


def test_frozen_layers_are_never_touched():
    model = models.mlp_sequential()
    model.get_layer("middle").trainable = False
    model.compile(keras.optimizers.SGD(0.01), "mse")
    changed = _changed_paths(model, _mark_all(biases=True))
    assert changed == models.select(
        changed, ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]
    )


class _OddLayer(keras.layers.Layer):
    """A kernel, plus a frozen 2-D float weight and (where the backend has one) a trainable integer weight."""

    def __init__(self, integer=True, **kwargs):
        super().__init__(**kwargs)
        self.integer = integer

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), name="kernel")
        self.fixed = self.add_weight(shape=(input_shape[-1], 3), name="fixed", trainable=False)
        if self.integer:
            self.counts = self.add_weight(
                shape=(2, 2), name="counts", dtype="int32", trainable=True, initializer="ones"
            )

    def call(self, inputs):
        return inputs @ (self.kernel + self.fixed)


def _apply_everywhere(integer):
    """Paths a rule that selects every value changes in a model with odd variables.

    Applied without `fit`: JAX cannot differentiate through an integer variable.
    """
    model = keras.Sequential(
        [keras.Input((6,)), _OddLayer(integer=integer, name="odd"), keras.layers.Dense(3, name="out")]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")
    # Pruning with a range holding every value would write any variable it could reach.
    callback = PlasticityCallback(
        [Rule(selectors.value_range(-np.inf, np.inf), mutators.constant(models.MARK))],
        biases=True,
        seed=0,
    )
    before = models.snapshot(model)
    callback.set_model(model)
    callback.on_train_begin()
    callback.apply(0)
    after = models.snapshot(model)
    changed = {path for path in before if not models.same_bits(before[path], after[path])}
    for path in changed:
        assert np.all(after[path] == models.MARK), f"{path} was partly written"
    return changed


def test_non_trainable_variables_are_never_touched():
    changed = _apply_everywhere(integer=False)
    assert changed == models.select(changed, ["odd/kernel", "out/kernel", "out/bias"])


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="PyTorch has no trainable integer variables"
)
def test_trainable_integer_variables_are_never_touched():
    changed = _apply_everywhere(integer=True)
    assert changed == models.select(changed, ["odd/kernel", "out/kernel", "out/bias"])


def test_batch_norm_alone_is_not_a_target_and_warns():
    model = models.batch_norm()
    with pytest.warns(UserWarning, match=r"targets no variable of model 'bn_model'"):
        history = models.fit(model, [Stroke(layers=["bn"], biases=True, seed=0)])
    assert history.history["stroke_changed"] == [0]
    assert history.history["stroke_fraction"] == [0.0]


def test_a_layer_without_weights_warns():
    model = models.mlp_functional()
    with pytest.warns(UserWarning, match=r"layers=\['merge'\]"):
        models.fit(model, [Stroke(layers=["merge"], seed=0)])


@pytest.mark.parametrize(
    "layers, pieces",
    [
        ([7], ["Layer index 7", "has 3 layers", "0: 'hidden'", "1: 'middle'", "2: 'out'"]),
        ([-4], ["Layer index -4", "2: 'out'"]),
        (["hidden", "nope"], ["No layer named 'nope'", "0: 'hidden'", "2: 'out'"]),
        (["1"], ["No layer named '1'", "layers=[1]"]),
    ],
    ids=["index-too-large", "index-too-small", "unknown-name", "index-as-string"],
)
def test_a_missing_layer_fails_at_train_begin_naming_it(layers, pieces):
    model = models.mlp_sequential()
    stroke = Stroke(layers=layers, seed=0)  # Construction cannot know the model: no error yet.
    before = models.snapshot(model)
    with pytest.raises(ValueError) as info:
        models.fit(model, [stroke])
    for piece in pieces:
        assert piece in str(info.value)
    after = models.snapshot(model)
    for path, old in before.items():
        assert models.same_bits(after[path], old), path


def test_a_missing_nested_layer_lists_the_top_level_layers():
    with pytest.raises(ValueError, match=r"No layer named 'inner_c'.*1: 'inner', 2: 'out'"):
        targets.resolve_layers(models.nested(), ("inner_c",))


@pytest.mark.parametrize("layers", [1.5, [1.5], [True], [None], [[0]], object()])
def test_layers_of_the_wrong_type_fail_at_construction(layers):
    with pytest.raises(TypeError, match="layers"):
        Stroke(layers=layers)


def test_layers_accepts_a_single_entry_and_numpy_integers():
    assert Stroke(layers=2).layers == (2,)
    assert Stroke(layers="out").layers == ("out",)
    assert Stroke(layers=[np.int64(1), "out"]).layers == (1, "out")
    assert type(Stroke(layers=[np.int64(1)]).layers[0]) is int


def test_is_target_separates_kernels_from_biases_by_name_not_rank():
    model = models.attention()
    kernels = {v.path for v in model.weights if targets.is_target(v, weights=True, biases=False)}
    biases = {v.path for v in model.weights if targets.is_target(v, weights=False, biases=True)}
    assert kernels == models.select(
        kernels, ["query/kernel", "key/kernel", "value/kernel", "attention_output/kernel", "out/kernel"]
    )
    assert biases == models.select(
        biases, ["query/bias", "key/bias", "value/bias", "attention_output/bias", "out/bias"]
    )
    assert targets.variables(model, None, weights=False, biases=False) == []
