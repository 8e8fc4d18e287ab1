"""PlasticityCallback: parameters, logs, schedules over epochs and batches, seeds, configs."""

import json

import keras
import numpy as np
import pytest

from kerastroke import NeuroPlast, PlasticityCallback, Pruning, Rule, Stroke, mutators, schedules, selectors
from kerastroke.core import seeds
from tests import models

MARK = np.float32(models.MARK)


def _mark(amount_schedule, **kwargs):
    """A callback writing MARK into `amount` of every kernel's entries."""
    rule = Rule(selectors.random_fraction(), mutators.constant(models.MARK), amount_schedule)
    return PlasticityCallback([rule], **kwargs)


def _linear_mlp():
    # No activation: every kernel entry gets a non-zero gradient, so an entry
    # set to MARK moves away from it at the next optimizer step.
    return models.mlp_sequential()


def _kernel_paths(model):
    return [v.path for v in model.weights if v.name == "kernel"]


def _check_application(before, after, kernel_paths, amount):
    """Exactly round(amount * size) entries of each kernel became MARK; all else kept."""
    changed_total = 0
    for path, old in before.items():
        new = after[path]
        if path not in kernel_paths:
            assert models.same_bits(new, old), path
            continue
        assert not np.any(old == MARK), path
        changed = new != old
        assert int(changed.sum()) == round(amount * old.size), path
        assert np.all(new[changed] == MARK), path
        changed_total += int(changed.sum())
    return changed_total


# -- construction ----------------------------------------------------------------


def _rule():
    return Rule(selectors.random_fraction(), mutators.zero())


@pytest.mark.parametrize(
    "kwargs, error, pieces",
    [
        ({"rules": []}, ValueError, ["rules", "[]"]),
        ({"rules": 5}, TypeError, ["rules", "5"]),
        ({"rules": [len]}, TypeError, ["rules[0]", "len"]),
        ({"layers": 1.5}, TypeError, ["layers", "1.5"]),
        ({"weights": "yes"}, TypeError, ["weights", "'yes'"]),
        ({"biases": None}, TypeError, ["biases", "None"]),
        ({"frequency": "batch"}, ValueError, ["frequency", "'batch'"]),
        ({"frequency": 0}, ValueError, ["frequency", "0"]),
        ({"frequency": 2.5}, TypeError, ["frequency", "2.5"]),
        ({"frequency": True}, TypeError, ["frequency", "True"]),
        ({"seed": -1}, ValueError, ["seed", "-1"]),
        ({"seed": 1.0}, TypeError, ["seed", "1.0"]),
        ({"seed": "1"}, TypeError, ["seed", "'1'"]),
        ({"verbose": -1}, ValueError, ["verbose", "-1"]),
        ({"verbose": "loud"}, TypeError, ["verbose", "'loud'"]),
        ({"name": ""}, TypeError, ["name", "''"]),
        ({"name": 3}, TypeError, ["name", "3"]),
    ],
)
def test_bad_parameters_fail_at_construction_naming_the_value(kwargs, error, pieces):
    kwargs = {"rules": [_rule()], **kwargs}
    with pytest.raises(error) as info:
        PlasticityCallback(**kwargs)
    for piece in pieces:
        assert piece in str(info.value)


def test_good_parameters_are_kept():
    callback = PlasticityCallback(
        _rule(), layers=[0, "out"], weights=False, biases=True, frequency=4, seed=9,
        verbose=True, name="rewire",
    )
    assert callback.rules == [_rule()]
    assert callback.layers == (0, "out")
    assert (callback.weights, callback.biases, callback.frequency) == (False, True, 4)
    assert (callback.seed, callback.verbose, callback.name) == (9, 1, "rewire")


def test_touching_nothing_warns_at_the_callers_line():
    with pytest.warns(UserWarning, match="weights=False and biases=False") as record:
        PlasticityCallback([_rule()], weights=False, biases=False)
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="nothing will be changed") as record:
        Stroke(do_weights=False)
    assert record[0].filename == __file__


def test_seed_none_picks_and_exposes_a_seed():
    callback = PlasticityCallback([_rule()])
    assert isinstance(callback.seed, int)
    assert 0 <= callback.seed < seeds.SEED_LIMIT
    assert callback.get_config()["seed"] == callback.seed
    assert PlasticityCallback.from_config(callback.get_config()).seed == callback.seed
    stroke = Stroke()
    assert isinstance(stroke.seed, int) and stroke.get_config()["seed"] == stroke.seed


# -- configs ---------------------------------------------------------------------


def test_config_round_trip_rebuilds_the_same_rules_and_json_survives():
    rules = [
        Rule(
            selectors.random_fraction(),
            mutators.uniform(-0.1, 0.2),
            schedules.cutoff(schedules.decay(0.5, 0.9), 7),
        ),
        Rule(selectors.value_range(-0.01, 0.01), mutators.zero()),
        Rule(selectors.value_range(0.5, 1.0), mutators.constant(-2.0), schedules.constant(0.25)),
    ]
    callback = PlasticityCallback(
        rules, layers=[1, "out"], biases=True, frequency=3, seed=42, verbose=1, name="mixed"
    )
    config = callback.get_config()
    config = json.loads(json.dumps(config))
    rebuilt = PlasticityCallback.from_config(config)
    assert rebuilt.rules == rules
    assert rebuilt.get_config() == callback.get_config()
    assert (rebuilt.layers, rebuilt.biases, rebuilt.frequency, rebuilt.seed, rebuilt.name) == (
        (1, "out"), True, 3, 42, "mixed",
    )


def test_config_of_an_unregistered_piece_is_a_type_error():
    callback = PlasticityCallback([Rule(selectors.random_fraction(), lambda w, m, s: w)], seed=0)
    with pytest.raises(TypeError, match="Cannot serialize"):
        callback.get_config()


def test_rebuilt_callback_changes_weights_identically():
    callback = Stroke(volatility_ratio=0.3, decay=0.8, biases=True, seed=21)
    rebuilt = Stroke.from_config(json.loads(json.dumps(callback.get_config())))
    first, second = models.mlp_sequential(), models.mlp_sequential()
    second.set_weights(first.get_weights())
    models.fit(first, [callback], epochs=2)
    models.fit(second, [rebuilt], epochs=2)
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert models.same_bits(a, b)


# -- logs, schedules and epochs ---------------------------------------------------


def test_schedule_follows_the_absolute_epoch_and_history_records_each_application():
    model = _linear_mlp()
    kernels = _kernel_paths(model)
    sizes = [v.numpy().size for v in model.weights if v.path in kernels]
    stroke = Stroke(value=models.MARK, volatility_ratio=0.5, decay=0.5, cutoff=4, seed=2)

    recorder = models.Recorder()
    history = models.fit(model, [recorder, stroke], epochs=2)
    after_first = models.snapshot(model)
    resumed = models.Recorder()
    resumed_history = models.fit(model, [resumed, stroke], epochs=6, initial_epoch=2)

    amounts = [min(1.0, 0.5 * 0.5**epoch) for epoch in range(4)] + [0.0, 0.0]
    expected = [sum(round(a * size) for size in sizes) for a in amounts]
    assert history.history["stroke_changed"] == expected[:2]
    assert resumed_history.history["stroke_changed"] == expected[2:]
    assert expected[2:] == [13, 6, 0, 0]  # 0.125 and 0.0625 of kernels of 48, 40 and 15 entries.
    fractions = history.history["stroke_fraction"] + resumed_history.history["stroke_fraction"]
    assert fractions == pytest.approx([n / sum(sizes) for n in expected])
    # The first fit's last application, checked entry by entry.
    assert _check_application(recorder.before[1], after_first, kernels, amounts[1]) == expected[1]
    # After the cutoff nothing is written at all.
    final = models.snapshot(model)
    assert all(models.same_bits(final[p], resumed.before[5][p]) for p in final)


def test_verbose_prints_one_line_per_application(capsys):
    model = _linear_mlp()
    callbacks = [
        Stroke(cutoff=2, verbose=1, seed=0),
        Stroke(cutoff=2, verbose=0, seed=0, name="quiet"),
    ]
    models.fit(model, callbacks, epochs=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].startswith("stroke at step 0: changed ")
    assert lines[1].startswith("stroke at step 1: changed ")
    assert "of 103 entries" in lines[0]  # 48 + 40 + 15 kernel entries.


def test_history_keys_follow_the_name():
    model = _linear_mlp()
    history = models.fit(model, [Stroke(seed=1, name="seizure")], epochs=1)
    assert set(history.history) == {"loss", "seizure_changed", "seizure_fraction", "seizure_sparsity"}
    assert history.history["seizure_changed"] == [2 + 2 + 1]  # round(0.05 * 48, 40, 15)


# -- batch frequency ----------------------------------------------------------------


class _StepsSeen:
    """A schedule that remembers the steps it is asked about (test-only, impure)."""

    def __init__(self, amount):
        self.amount = amount
        self.steps = []

    def __call__(self, step):
        self.steps.append(step)
        return self.amount


def test_batch_frequency_applies_every_n_optimizer_steps():
    model = _linear_mlp()
    kernels = _kernel_paths(model)
    schedule = _StepsSeen(0.25)
    callback = _mark(schedule, frequency=3, seed=4, name="every3")
    before, after = models.Recorder(every_batch=True), models.Recorder(every_batch=True)
    batch_logs = models.BatchLogs("every3_changed")
    # 32 samples in batches of 4: 8 optimizer steps per epoch.
    history = models.fit(
        model, [before, callback, after, batch_logs], epochs=2, samples=32, batch_size=4
    )

    assert schedule.steps == [3, 6, 9, 12, 15]
    per_application = sum(round(0.25 * before.batches[3][p].size) for p in kernels)
    assert batch_logs.seen == {step: per_application for step in (3, 6, 9, 12, 15)}
    for step in range(1, 17):
        if step % 3:
            assert all(models.same_bits(after.batches[step][p], before.batches[step][p])
                       for p in before.batches[step]), step
        else:
            changed = _check_application(before.batches[step], after.batches[step], kernels, 0.25)
            assert changed == per_application
    assert history.history["every3_changed"] == [2 * per_application, 3 * per_application]
    size = sum(before.batches[3][p].size for p in kernels)
    assert history.history["every3_fraction"] == pytest.approx([per_application / size] * 2)


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="Keras on PyTorch runs one step per execution"
)
def test_batch_frequency_with_several_steps_per_execution_applies_once_per_multiple_passed():
    model = _linear_mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=2)
    schedule = _StepsSeen(0.1)
    history = models.fit(model, [_mark(schedule, frequency=3, seed=4)], epochs=2, samples=32,
                         batch_size=4)
    # Keras reports after steps 2, 4, ..., 16; multiples of 3 are passed at 4, 6, 10, 12, 16.
    assert schedule.steps == [4, 6, 10, 12, 16]
    assert len(history.history["plasticity_changed"]) == 2


def test_batch_frequency_counts_steps_across_fits():
    model = _linear_mlp()
    schedule = _StepsSeen(0.1)
    callback = _mark(schedule, frequency=5, seed=4)
    models.fit(model, [callback], epochs=1, samples=32, batch_size=4)
    models.fit(model, [callback], epochs=2, initial_epoch=1, samples=32, batch_size=4)
    assert schedule.steps == [5, 10, 15]


def test_only_batch_frequency_defines_a_batch_hook():
    # Keras dispatches batch callbacks asynchronously only when none overrides them.
    for callback in (PlasticityCallback([_rule()]), Stroke(), NeuroPlast()):
        assert "on_train_batch_end" not in vars(callback)
        assert type(callback).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end
    assert "on_train_batch_end" in vars(PlasticityCallback([_rule()], frequency=2))


# -- seeds and resumed training -----------------------------------------------------


def _unnamed_mlp():
    # Auto-named layers: each build gets new names (dense_7, ...), which must not matter.
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.25),
         keras.layers.Dense(3)]
    )
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


def test_same_seed_same_weights_different_seed_different_weights():
    def run(seed):
        model = _unnamed_mlp()
        models.fit(model, [Stroke(volatility_ratio=0.3, biases=True, seed=seed)], epochs=1)
        return model.get_weights()

    first, again, other = run(8), run(8), run(9)
    assert all(models.same_bits(a, b) for a, b in zip(first, again))
    assert not all(models.same_bits(a, b) for a, b in zip(first, other))


def test_resumed_training_repeats_a_straight_run_bit_for_bit(op_determinism):
    def fresh_callbacks():
        return [
            Stroke(volatility_ratio=0.2, decay=0.7, cutoff=3, seed=5),
            NeuroPlast(pruning_min=0.2, pruning_max=0.3, biases=True, seed=9),
            _mark(schedules.constant(0.05), frequency=3, seed=13, name="batches"),
        ]

    fit = dict(samples=32, batch_size=8, shuffle=True)
    keras.utils.set_random_seed(0)
    straight = _unnamed_mlp()
    straight_history = models.fit(straight, fresh_callbacks(), epochs=4, **fit)

    keras.utils.set_random_seed(0)
    resumed = _unnamed_mlp()
    models.fit(resumed, fresh_callbacks(), epochs=2, **fit)
    resumed_history = models.fit(resumed, fresh_callbacks(), epochs=4, initial_epoch=2, **fit)

    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        assert models.same_bits(a, b)
    for key in ("stroke_changed", "neuroplast_changed", "batches_changed", "loss"):
        assert straight_history.history[key][2:] == resumed_history.history[key]
    assert straight_history.history["stroke_changed"][1] > 0


# -- failures leave weights whole ---------------------------------------------------


def _failing_mutator(weights, mask, seed):
    raise RuntimeError("mutator broke")


def test_a_failing_rule_leaves_every_variable_untouched():
    model = _linear_mlp()
    recorder = models.Recorder()
    callback = PlasticityCallback(
        [Rule(selectors.random_fraction(), mutators.constant(models.MARK)),
         Rule(selectors.random_fraction(), _failing_mutator)],
        seed=0,
    )
    with pytest.raises(RuntimeError, match="mutator broke"):
        models.fit(model, [recorder, callback])
    after = models.snapshot(model)
    assert all(models.same_bits(after[p], old) for p, old in recorder.before[0].items())


def _fails_on_the_last_kernel(weights, mask, seed):
    # The output kernel of `_linear_mlp`, the last of three, is the only one with 3 columns.
    if tuple(weights.shape)[-1] == 3:
        raise RuntimeError("mutator broke on the last kernel")
    return mutators.constant(models.MARK)(weights, mask, seed)


def test_a_rule_failing_on_a_later_variable_changes_nothing_in_the_model():
    # Variables before the failing one are not written either, nor their
    # optimizer moments reset, nor their zeros held.
    model = _linear_mlp()
    model.compile(keras.optimizers.Adam(0.01), "mse")
    models.fit(model, [])  # Adam's moments are non-zero now
    callback = PlasticityCallback(
        [Rule(selectors.random_fraction(), _fails_on_the_last_kernel)],
        seed=0, persistent=True, reset_optimizer=True,
    )
    callback.set_model(model)
    before = models.snapshot(model)
    constraints = [v.constraint for v in model.weights]
    with pytest.raises(RuntimeError, match="broke on the last kernel"):
        callback.apply(0)
    after = models.snapshot(model)
    assert all(models.same_bits(after[p], old) for p, old in before.items())
    assert [v.constraint for v in model.weights] == constraints


def test_an_amount_outside_0_1_fails_before_any_write():
    model = _linear_mlp()
    recorder = models.Recorder()
    callback = _mark(lambda step: 1.5, seed=0)
    with pytest.raises(ValueError, match=r"returned 1.5 at step 0"):
        models.fit(model, [recorder, callback])
    after = models.snapshot(model)
    assert all(models.same_bits(after[p], old) for p, old in recorder.before[0].items())


def test_one_instance_serves_several_models():
    stroke = Stroke(value=models.MARK, volatility_ratio=1.0, seed=0)
    first, second = models.mlp_sequential(), models.conv1d()
    models.fit(first, [stroke])
    models.fit(second, [stroke])
    assert np.all(second.get_layer("conv").kernel.numpy() == MARK)
    assert np.all(first.get_layer("out").kernel.numpy() == MARK)


def _read_address(variable):
    # A fresh read of the variable, seen through DLPack without a copy.
    return np.from_dlpack(variable.value.read_value()).__array_interface__["data"][0]


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="copy-on-read is a mode of TensorFlow's resource variables only",
)
@pytest.mark.parametrize(
    "callback",
    [Stroke(volatility_ratio=0.05, seed=0), NeuroPlast(min_value=-0.2, max_value=0.2, seed=0)],
    ids=["Stroke", "NeuroPlast"],
)
def test_applying_leaves_reads_of_the_variables_free(callback):
    # TensorFlow switches a variable written by an in-place sparse update to
    # copy-on-read for good: every later read, each training step's included,
    # would copy it. Reads of an untouched variable share its buffer.
    model = _linear_mlp()
    callback.set_model(model)
    callback.on_train_begin()
    kernels = [v for v in model.weights if v.name == "kernel"]
    before = [v.numpy() for v in kernels]
    assert callback.apply(0)["changed"] > 0
    for variable, old in zip(kernels, before):
        assert not models.same_bits(variable.numpy(), old), variable.path
        assert _read_address(variable) == _read_address(variable), variable.path
