"""ReDo and continual backprop on hand-built models whose dormant units are known.

Exactly which entries of which variables change (incoming column, bias,
outgoing rows, nothing else), which optimizer slots are zeroed, the counts
in the logs, continual backprop's maturity and fractional carry, configs,
bad parameters, unit groups and activity, and a short fit with each preset."""

import json
import math

import keras
import numpy as np
import pytest

import kerastroke
from kerastroke import ContinualBackprop, ReDo, dormant_fraction, mutators, unit_activity
from kerastroke.core import seeds
from kerastroke.engine import activity, optimizer_state, units

# Positive inputs: a unit whose incoming weights are all negative (and bias
# <= 0) is silent under ReLU on every probe input.
PROBE = np.random.default_rng(0).uniform(0.5, 1.5, size=(16, 4)).astype("float32")
DEAD_1 = [1, 4]  # dormant units of "h1"
DEAD_2 = [2]  # dormant unit of "h2" (its inputs, h1's outputs, are >= 0)


def _hand_built_weights(rng):
    k1 = rng.uniform(0.1, 1.0, size=(4, 6)).astype("float32")
    k1[:, DEAD_1] *= -1
    b1 = np.full(6, 0.1, "float32")
    b1[DEAD_1] = -0.5  # becomes 0 when recycled: a visible change
    k2 = rng.uniform(0.1, 1.0, size=(6, 5)).astype("float32")
    k2[:, DEAD_2] *= -1
    b2 = np.full(5, 0.2, "float32")
    b2[DEAD_2] = -0.3
    k3 = rng.uniform(-1.0, 1.0, size=(5, 3)).astype("float32")
    b3 = np.array([0.1, -0.2, 0.3], "float32")
    return [k1, b1, k2, b2, k3, b3]


def _mlp(functional=False):
    """h1 (6 units, 2 dormant) -> h2 (5 units, 1 dormant) -> out (3)."""
    keras.utils.set_random_seed(0)
    if functional:
        x = keras.Input((4,), name="x")
        h = keras.layers.Dense(6, activation="relu", name="h1")(x)
        h = keras.layers.Dense(5, activation="relu", name="h2")(h)
        model = keras.Model(x, keras.layers.Dense(3, name="out")(h))
    else:
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(6, activation="relu", name="h1"),
            keras.layers.Dense(5, activation="relu", name="h2"),
            keras.layers.Dense(3, name="out"),
        ])
    model.set_weights(_hand_built_weights(np.random.default_rng(1)))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def _short(path):
    return "/".join(path.split("/")[-2:])


def _values(model):
    return {_short(v.path): np.array(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables}


def _fill_slots(model):
    """Builds the optimizer and puts distinct non-zero values in every slot."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(5)
    filled = {}
    for variable in model.trainable_variables:
        for index, slot in enumerate(optimizer_state.slots(optimizer, variable)):
            value = rng.uniform(0.5, 1.0, size=tuple(slot.shape)).astype("float32")
            slot.assign(value)
            filled[(_short(variable.path), index)] = value
    return filled


def _slot_values(model):
    return {
        (_short(v.path), index): np.array(keras.ops.convert_to_numpy(slot.value))
        for v in model.trainable_variables
        for index, slot in enumerate(optimizer_state.slots(model.optimizer, v))
    }


def _expected_recycled():
    """Masks of every variable's recycled entries for the dormant units above."""
    masks = {
        "h1/kernel": np.zeros((4, 6), bool), "h1/bias": np.zeros(6, bool),
        "h2/kernel": np.zeros((6, 5), bool), "h2/bias": np.zeros(5, bool),
        "out/kernel": np.zeros((5, 3), bool), "out/bias": np.zeros(3, bool),
    }
    masks["h1/kernel"][:, DEAD_1] = True
    masks["h1/bias"][DEAD_1] = True
    masks["h2/kernel"][DEAD_1, :] = True  # h1's outgoing rows
    masks["h2/kernel"][:, DEAD_2] = True  # h2's incoming column
    masks["h2/bias"][DEAD_2] = True
    masks["out/kernel"][DEAD_2, :] = True
    return masks


# -- unit groups and activity -------------------------------------------------


@pytest.mark.parametrize("functional", [False, True])
def test_unit_groups_of_an_mlp(functional):
    model = _mlp(functional)
    groups, skipped = units.analyse(model)
    assert [(g.layer.name, g.consumer.name, g.units, g.positions) for g in groups] == [
        ("h1", "h2", 6, 1), ("h2", "out", 5, 1)
    ]
    assert "output of the model" in skipped["out"]
    assert [v.path.split("/")[-2:] for v in units.variables(groups)] == [
        ["h1", "kernel"], ["h1", "bias"], ["h2", "kernel"], ["h2", "bias"], ["out", "kernel"]
    ]


@pytest.mark.parametrize("functional", [False, True])
def test_unit_activity_and_dormant_fraction_of_known_units(functional):
    model = _mlp(functional)
    found = unit_activity(model, PROBE)
    assert list(found) == ["h1", "h2"]
    h1 = np.maximum(PROBE @ model.get_layer("h1").kernel.numpy() + model.get_layer("h1").bias.numpy(), 0)
    np.testing.assert_allclose(found["h1"], np.abs(h1).mean(axis=0), rtol=1e-5)
    assert (found["h1"][DEAD_1] == 0).all() and (np.delete(found["h1"], DEAD_1) > 0).all()
    assert (found["h2"][DEAD_2] == 0).all() and (np.delete(found["h2"], DEAD_2) > 0).all()
    assert dormant_fraction(found) == pytest.approx(3 / 11)
    assert dormant_fraction(found["h1"]) == pytest.approx(2 / 6)
    # Named layers: the output layer can be probed too.
    assert list(unit_activity(model, PROBE, layers=["out", "h2"])) == ["out", "h2"]


def test_a_sequential_model_never_called_is_probed_layer_by_layer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(6, activation="relu", name="h1"), keras.layers.Dense(2)])
    found = unit_activity(model, PROBE, layers=["h1"])  # builds the layers as it runs them
    kernel, bias = model.get_layer("h1").kernel.numpy(), model.get_layer("h1").bias.numpy()
    np.testing.assert_allclose(found["h1"], np.maximum(PROBE @ kernel + bias, 0).mean(axis=0), rtol=1e-5)


def test_redo_scores_and_a_threshold_above_zero():
    values = np.array([0.0, 0.25, 1.0, 2.75])  # mean 1.0
    np.testing.assert_array_equal(activity.redo_scores(values), np.float32([0.0, 0.25, 1.0, 2.75]))
    assert dormant_fraction({"a": values}, threshold=0.25) == 0.5
    assert dormant_fraction({"a": values}, threshold=0.24) == 0.25
    # Scores are float32, compared exactly: float32(0.2) lies above 0.2.
    assert dormant_fraction({"a": np.array([0.0, 0.2, 1.0, 2.8])}, threshold=0.2) == 0.25
    assert dormant_fraction({"a": np.zeros(3)}) == 1.0  # a silent layer is all dormant
    assert dormant_fraction({}) == 0.0


def test_running_activity_is_a_bias_corrected_average():
    running = activity.RunningActivity(decay=0.75)
    running.update({"h": np.array([4.0, 0.0])})
    value = running.update({"h": np.array([0.0, 4.0])})["h"]
    # m2 = 0.75 * 0.25 * 4 + 0.25 * x2, corrected by 1 - 0.75**2.
    np.testing.assert_allclose(value, [0.75 / 1.75 * 4, 1 / 1.75 * 4])
    assert running.update({"h": np.ones(3)})["h"].tolist() == [1.0, 1.0, 1.0]  # new shape: restart
    with pytest.raises(ValueError, match="decay"):
        activity.RunningActivity(decay=1.0)


def _conv_model():
    """conv_a (4 filters) -> ReLU -> conv_b (3) -> MaxPool -> Flatten -> out (2)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    h = keras.layers.ReLU(name="relu_a")(h)
    h = keras.layers.Conv2D(3, 3, activation="relu", name="conv_b")(h)  # 4x4x3
    h = keras.layers.MaxPooling2D(2, name="pool")(h)  # 2x2x3
    h = keras.layers.Flatten(name="flat")(h)  # 12
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(h))
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    return model


def test_conv_groups_read_input_channels_and_flattened_strided_rows():
    model = _conv_model()
    a, b = units.find(model)
    assert (a.layer.name, a.activation.name, a.consumer.name, a.positions) == ("conv_a", "relu_a", "conv_b", 1)
    assert (b.layer.name, b.activation.name, b.consumer.name, b.positions) == ("conv_b", "conv_b", "out", 4)
    chosen = np.array([False, True, False])
    rows = np.asarray(b.outgoing_mask(chosen))[:, 0]
    assert np.flatnonzero(rows).tolist() == [1, 4, 7, 10]  # channel 1 of 3 at 4 positions
    slice_mask = np.asarray(a.outgoing_mask(np.array([False, False, True, False])))
    assert slice_mask.shape == (3, 3, 4, 3)
    assert slice_mask[:, :, 2, :].all() and not np.delete(slice_mask, 2, axis=2).any()


def test_conv_recycle_touches_filter_bias_and_outgoing_slices_only():
    model = _conv_model()
    conv_a = model.get_layer("conv_a")
    kernel = conv_a.kernel.numpy()
    kernel[..., 3] = -np.abs(kernel[..., 3])  # filter 3 silent on positive images
    conv_a.kernel.assign(kernel)
    conv_a.bias.assign(np.array([0.1, 0.1, 0.1, -0.2], "float32"))
    probe = np.random.default_rng(2).uniform(0.1, 1.0, size=(8, 6, 6, 2)).astype("float32")
    model.optimizer.build(model.trainable_variables)
    before, slots_before = _values(model), None
    for variable in model.trainable_variables:
        for slot in optimizer_state.slots(model.optimizer, variable):
            slot.assign(np.ones(tuple(slot.shape), "float32"))
    slots_before = _slot_values(model)
    redo = ReDo(probe=probe, layers=["conv_a"], seed=3)
    redo.set_model(model)
    result = redo.apply(0)
    after, slots_after = _values(model), _slot_values(model)
    recycled = {name: np.zeros(value.shape, bool) for name, value in before.items()}
    recycled["conv_a/kernel"][..., 3] = True
    recycled["conv_a/bias"][3] = True
    recycled["conv_b/kernel"][:, :, 3, :] = True
    for name, mask in recycled.items():
        assert np.array_equal(after[name][~mask], before[name][~mask]), name
        changed = after[name] != before[name]
        assert np.array_equal(changed, mask & (before[name] != 0)), name
    for (name, index), old in slots_before.items():
        mask = recycled[name]
        assert (slots_after[(name, index)][mask] == 0).all() and np.array_equal(slots_after[(name, index)][~mask], old[~mask])
    assert result["replaced"] == 1 and result["dormant"] == 0.25
    assert result["changed"] == sum(int((after[n] != before[n]).sum()) for n in before)


def test_verbose_prints_what_an_application_did(capsys):
    model = _mlp()
    model.optimizer.build(model.trainable_variables)
    redo = ReDo(probe=PROBE, seed=0, verbose=1)
    redo.set_model(model)
    redo.apply(4)
    assert "redo at step 4: recycled 3 units (27.27% dormant); changed 28 of 80 entries" in capsys.readouterr().out


def test_a_normalisation_layer_between_units_and_consumer_is_refused():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="h"),
                              keras.layers.BatchNormalization(name="bn"), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"'bn' \(BatchNormalization\) follows 'h'.*elementwise"):
        units.find(model, ["h"])


def test_groups_refused_with_reasons():
    x = keras.Input((4,))
    h = keras.layers.Dense(3, name="fork")(x)
    a = keras.layers.Dense(2, name="a")(h)
    b = keras.layers.Dense(2, name="b")(h)
    model = keras.Model(x, keras.layers.Concatenate(name="join")([a, b]))
    groups, skipped = units.analyse(model)
    assert groups == []
    assert "read by 2 layers" in skipped["fork"]
    assert "takes several inputs" in skipped["a"]
    with pytest.raises(ValueError, match=r"Layer 'fork' in `layers` has no units to recycle: .*read by 2"):
        units.find(model, ["fork"])
    with pytest.raises(ValueError, match="No layer named 'nope'"):
        units.find(model, ["nope"])


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(5, activation="relu", name="hidden")
        self.unused = keras.layers.Dense(5, name="unused")
        self.top = keras.layers.Dense(2, name="top")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.unused.build(input_shape)
        self.top.build((None, 5))

    def call(self, x):
        return self.top(self.hidden(x))


def test_subclassed_models_probe_named_layers_and_refuse_recycling():
    model = _Subclassed()
    model(PROBE)
    found = unit_activity(model, PROBE, layers=["hidden"])
    kernel, bias = model.hidden.kernel.numpy(), model.hidden.bias.numpy()
    np.testing.assert_allclose(found["hidden"], np.maximum(PROBE @ kernel + bias, 0).mean(axis=0), rtol=1e-5)
    assert "call" not in vars(model.hidden)  # the layer's own call is back
    with pytest.raises(ValueError, match=r"subclassed.*layers=\["):
        unit_activity(model, PROBE)
    with pytest.raises(ValueError, match="'unused' was not called"):
        unit_activity(model, PROBE, layers=["unused"])
    with pytest.raises(ValueError, match="subclassed model has no graph"):
        units.find(model)


# -- ReDo: exactly what changes ---------------------------------------------------


@pytest.mark.parametrize("functional", [False, True])
def test_redo_recycles_exactly_the_dormant_units(functional):
    model = _mlp(functional)
    slots_before = _fill_slots(model)
    before = _values(model)
    outputs_before = np.array(keras.ops.convert_to_numpy(model(PROBE)))
    redo = ReDo(threshold=0.0, probe=PROBE, seed=11)
    redo.set_model(model)
    result = redo.apply(7)
    after = _values(model)
    recycled = _expected_recycled()
    for name, mask in recycled.items():
        assert np.array_equal(after[name][~mask], before[name][~mask]), name  # bit-identical elsewhere
    # Incoming: the layer's own initializer, drawn with the callback's seed for
    # (step, variable position); the fresh h2 column also covers h1's zeroed rows.
    for name, dead in (("h1", DEAD_1), ("h2", DEAD_2)):
        layer = model.get_layer(name)
        seed = seeds.derive(redo.variable_seed(layer.kernel, 7), "incoming")
        shape = tuple(layer.kernel.shape)
        everything = np.ones(shape, bool)
        fresh = np.asarray(keras.ops.convert_to_numpy(
            mutators.initializer(layer.kernel_initializer)(np.zeros(shape, "float32"), everything, seed)))
        np.testing.assert_array_equal(after[f"{name}/kernel"][:, dead], fresh[:, dead])
        assert (after[f"{name}/bias"][dead] == 0).all()
    h2_rows = after["h2/kernel"][DEAD_1][:, [0, 1, 3, 4]]
    assert (h2_rows == 0).all()  # h1's outgoing rows, outside h2's recycled column
    assert (after["out/kernel"][DEAD_2] == 0).all()
    # Optimizer slots: zero on recycled entries, untouched elsewhere.
    for (name, index), old in slots_before.items():
        new = _slot_values(model)[(name, index)]
        mask = recycled[name]
        assert (new[mask] == 0).all(), name
        assert np.array_equal(new[~mask], old[~mask]), name
    # Logs: counts of the application.
    changed = sum(int((after[n] != before[n]).sum()) for n in before)
    size = sum(before[n].size for n in before if n != "out/bias")
    zeros = sum(int((after[n] == 0).sum()) for n in before if n != "out/bias")
    assert result == {
        "changed": changed, "fraction": changed / size, "sparsity": zeros / size,
        "dormant": 3 / 11, "replaced": 3,
    }
    # h1: 2 columns of 4 and 2 biases; h2: 2 rows of 5 and a column of 6 (2 shared), 1 bias; out: a row of 3.
    assert changed == 8 + 2 + (10 + 6 - 2) + 1 + 3
    # The network computes the same function on the probe (recycled units are silent downstream).
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(PROBE)), outputs_before, rtol=1e-6, atol=1e-6)


def test_redo_with_nothing_dormant_changes_nothing_and_threshold_widens_it():
    model = _mlp()
    redo = ReDo(threshold=0.0, probe=PROBE, layers=["h1"], seed=0)
    redo.set_model(model)
    model.get_layer("h1").kernel.assign(np.abs(model.get_layer("h1").kernel.numpy()))
    model.get_layer("h1").bias.assign(np.full(6, 0.1, "float32"))
    before = _values(model)
    result = redo.apply(0)
    assert result["replaced"] == 0 and result["changed"] == 0 and result["dormant"] == 0.0
    assert all(np.array_equal(before[n], v) for n, v in _values(model).items())
    scores = activity.redo_scores(unit_activity(model, PROBE)["h1"])
    wide = ReDo(threshold=float(np.sort(scores)[1]), probe=PROBE, layers=["h1"], seed=0)
    wide.set_model(model)
    assert wide.apply(1)["replaced"] == 2  # the two lowest scores, at or below the threshold


def test_redo_logs_during_fit_at_epoch_and_batch_frequency():
    model = _mlp()
    x = np.tile(PROBE, (4, 1))
    y = np.zeros((64, 3), "float32")
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0,
                        callbacks=[ReDo(probe=PROBE, seed=0)])
    assert history.history["redo_dormant"][0] == pytest.approx(3 / 11)
    assert history.history["redo_replaced"][0] == 3
    assert history.history["redo_changed"][0] > 0
    model = _mlp()
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0,
                        callbacks=[ReDo(probe=PROBE, frequency=2, seed=0, name="r")])
    assert history.history["r_replaced"][0] >= 3  # two applications; the first finds 3
    assert set(history.history) >= {"r_changed", "r_fraction", "r_sparsity", "r_dormant", "r_replaced"}


# -- ContinualBackprop ------------------------------------------------------------


def _cbp_model():
    """h (4 units, activities 1:2:3:4 on the probe, equal outgoing weights) -> out (1)."""
    model = keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(4, activation="relu", name="h"),
        keras.layers.Dense(1, name="out"),
    ])
    model.set_weights([np.array([[3.0, 1.0, 4.0, 2.0]], "float32"), np.zeros(4, "float32"),
                       np.full((4, 1), 0.5, "float32"), np.zeros(1, "float32")])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


CBP_PROBE = np.ones((4, 1), "float32")


def test_cbp_utility_is_activity_times_outgoing_magnitude():
    model = _cbp_model()
    cbp = ContinualBackprop(replacement_rate=0.0, maturity=0, probe=CBP_PROBE, seed=0)
    cbp.set_model(model)
    cbp.apply(5)
    utility, age, carry = cbp.unit_state("h")
    np.testing.assert_allclose(utility, np.array([3.0, 1.0, 4.0, 2.0]) * 0.5)
    assert age.tolist() == [1, 1, 1, 1] and carry == 0.0


def test_cbp_replaces_the_lowest_utility_mature_unit_and_restarts_its_age():
    model = _cbp_model()
    before = _values(model)
    cbp = ContinualBackprop(replacement_rate=0.25, maturity=0, probe=CBP_PROBE, seed=0)
    cbp.set_model(model)
    result = cbp.apply(1)  # owes 0.25 * 4 mature units * 1 step = 1
    assert result["replaced"] == 1
    after = _values(model)
    assert after["out/kernel"][1, 0] == 0 and np.array_equal(np.delete(after["out/kernel"], 1), [0.5] * 3)
    assert after["h/kernel"][0, 1] != before["h/kernel"][0, 1]
    assert np.array_equal(np.delete(after["h/kernel"], 1, axis=1), np.delete(before["h/kernel"], 1, axis=1))
    utility, age, _ = cbp.unit_state("h")
    assert age.tolist() == [1, 0, 1, 1] and utility[1] == 0.0


def _oracle_replacements(units_count, rate, maturity, steps, frequency):
    """Replacements per application, by counting: a mature unit stays mature until replaced."""
    born = [steps[0] - frequency] * units_count
    carry, last, counts = 0.0, steps[0] - frequency, []
    for step in steps:
        mature = [i for i, b in enumerate(born) if step - b > maturity]
        carry += rate * len(mature) * (step - last)
        owed = math.floor(carry)
        carry -= owed
        count = min(owed, len(mature))
        for i in mature[:count]:
            born[i] = step
        counts.append(count)
        last = step
    return counts


@pytest.mark.parametrize("frequency", [1, 2, 3])
def test_cbp_maturity_and_fractional_carry(frequency):
    model = _cbp_model()
    cbp = ContinualBackprop(replacement_rate=0.125, maturity=3, probe=CBP_PROBE, frequency=frequency, seed=0)
    cbp.set_model(model)
    steps = list(range(frequency, 31, frequency))
    counts = []
    for step in steps:
        _, age_before, _ = cbp.unit_state("h") if step > frequency else (None, None, None)
        counts.append(cbp.apply(step)["replaced"])
        utility, age, _ = cbp.unit_state("h")
        replaced = age == 0
        assert int(replaced.sum()) == counts[-1]
        if age_before is not None and counts[-1]:
            assert (age_before[replaced] + frequency > 3).all()  # only mature units
        assert (utility[replaced] == 0).all()
    assert counts == _oracle_replacements(4, 0.125, 3, steps, frequency)
    assert sum(counts) > 0 and counts[0] == 0  # nobody is mature at the start


def test_cbp_state_carries_over_fits_and_restarts_for_another_model():
    model = _cbp_model()
    cbp = ContinualBackprop(replacement_rate=0.0, maturity=0, probe=CBP_PROBE, seed=0)
    cbp.set_model(model)
    cbp.apply(10)
    cbp.apply(20)
    assert cbp.unit_state("h")[1].tolist() == [11] * 4
    other = _cbp_model()
    cbp.set_model(other)
    cbp.apply(3)
    assert cbp.unit_state("h")[1].tolist() == [1] * 4


# -- configs and bad parameters ------------------------------------------------------


def _presets():
    probe = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    return [
        ReDo(threshold=0.1, frequency=5, probe=probe, layers=["h1"], seed=1, name="r"),
        ContinualBackprop(replacement_rate=1e-3, decay=0.9, maturity=7, probe=probe, frequency=4, seed=2),
        ReDo(probe=[probe, probe.astype("float16")], seed=3),
        ReDo(probe={"x": probe.astype("bfloat16")}, seed=4),
    ]


@pytest.mark.parametrize("callback", _presets(), ids=lambda c: type(c).__name__)
def test_configs_round_trip_through_json_and_keras(callback):
    config = callback.get_config()
    rebuilt = type(callback).from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config
    assert rebuilt.rules == callback.rules
    _same_probe(rebuilt.probe, callback.probe)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(callback)))
    assert serialized["registered_name"] == f"kerastroke>{type(callback).__name__}"
    again = keras.saving.deserialize_keras_object(serialized)
    assert type(again) is type(callback) and again.get_config() == config


def _same_probe(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same_probe(a[key], b[key])
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            _same_probe(x, y)
    else:
        assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: ReDo(probe=None), "probe"),
        (lambda: ReDo(threshold=-0.1, probe=PROBE), "threshold"),
        (lambda: ReDo(threshold=float("nan"), probe=PROBE), "threshold"),
        (lambda: ReDo(frequency=0, probe=PROBE), "frequency"),
        (lambda: ReDo(probe=np.zeros((0, 4), "float32")), "probe"),
        (lambda: ReDo(probe=np.array(["a", "b"])), "probe"),
        (lambda: ReDo(probe=PROBE, layers=[1.5]), "layers"),
        (lambda: ContinualBackprop(probe=None), "probe"),
        (lambda: ContinualBackprop(replacement_rate=1.5, probe=PROBE), "replacement_rate"),
        (lambda: ContinualBackprop(decay=1.0, probe=PROBE), "decay"),
        (lambda: ContinualBackprop(decay=-0.1, probe=PROBE), "decay"),
        (lambda: ContinualBackprop(maturity=-1, probe=PROBE), "maturity"),
        (lambda: ContinualBackprop(maturity=2.5, probe=PROBE), "maturity"),
        (lambda: ContinualBackprop(frequency="epoch", probe=PROBE), "frequency"),
        (lambda: ContinualBackprop(probe=PROBE, seed=-1), "seed"),
    ],
)
def test_bad_parameters_fail_at_construction_naming_them(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_recycling_needs_an_optimizer_and_a_graph():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(1)])
    model.layers[0].kernel.assign(-np.abs(model.layers[0].kernel.numpy()))
    redo = ReDo(probe=PROBE, seed=0)
    redo.set_model(model)
    with pytest.raises(ValueError, match="no optimizer"):
        redo.apply(0)
    subclassed = _Subclassed()
    subclassed(PROBE)
    redo.set_model(subclassed)
    with pytest.raises(ValueError, match="keras.Sequential or the functional API"):
        redo.apply(0)


def test_public_names():
    assert {"ReDo", "ContinualBackprop", "unit_activity", "dormant_fraction"} <= set(kerastroke.__all__)
    assert kerastroke.ReDo is ReDo


# -- integration: a small model trained with each preset ------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda probe: ReDo(threshold=0.1, probe=probe, frequency=4, seed=0),
        lambda probe: ContinualBackprop(replacement_rate=0.01, maturity=4, probe=probe, frequency=2, seed=0),
    ],
    ids=["ReDo", "ContinualBackprop"],
)
def test_fit_with_each_preset(make):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6)).astype("float32")
    y = (x[:, :1] - x[:, 1:2] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.Dense(8),
        keras.layers.ReLU(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    first = model.layers[0]
    first.kernel.assign(keras.ops.where(np.arange(12) == 0, 0.0, first.kernel.value))
    first.bias.assign(np.where(np.arange(12) == 0, -1.0, 0.0).astype("float32"))  # unit 0 is dead
    callback = make(x[:32])
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[callback])
    prefix = callback.name
    for key in ("changed", "fraction", "sparsity", "dormant", "replaced"):
        assert len(history.history[f"{prefix}_{key}"]) == 3
    assert sum(history.history[f"{prefix}_replaced"]) > 0
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
