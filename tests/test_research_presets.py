"""Persistent sparsity, magnitude and global pruning, SET and shrink-and-perturb
on real small models: exactly what changed, and what stays changed."""

import keras
import numpy as np
import pytest

import kerastroke
from kerastroke import (
    SET,
    MagnitudePruning,
    PlasticityCallback,
    Pruning,
    Rule,
    ShrinkPerturb,
    mutators,
    schedules,
    selectors,
)


def _data(n=128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 10)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int32")


def _mlp(optimizer="adam"):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(24, activation="relu", name="middle"),
            keras.layers.Dense(2, name="out"),
        ]
    )
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _short(path):
    """"sequential_3/hidden/kernel" -> "hidden/kernel": model names vary between tests."""
    return "/".join(path.split("/")[-2:])


def _kernels(model):
    return {_short(v.path): np.array(v.numpy()) for v in model.trainable_variables if len(v.shape) >= 2}


class _RecordEveryBatch(keras.callbacks.Callback):
    """Keeps the kernels after every optimizer step."""

    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(_kernels(self.model))


def test_magnitude_pruning_holds_zeros_through_every_step():
    model = _mlp()
    record = _RecordEveryBatch()
    pruning = MagnitudePruning(0.5, seed=0)
    history = model.fit(*_data(), epochs=3, batch_size=16, verbose=0, callbacks=[pruning, record])
    final = _kernels(model)
    for path, kernel in final.items():
        assert (kernel == 0).sum() == round(0.5 * kernel.size), path
    # After the first application (end of epoch 0, 8 steps), pruned entries never regrow.
    zeros_after_first = {p: k == 0 for p, k in record.kernels[8].items()}
    for step in record.kernels[8:]:
        for path, kernel in step.items():
            held = kernel[zeros_after_first[path]]
            # Exactly +0.0: the constraint's multiply by zero must not leave a -0.0 behind.
            assert (held == 0).all() and not np.signbit(held).any(), path
    assert history.history["magnitude_pruning_sparsity"][-1] == pytest.approx(
        sum(round(0.5 * k.size) for k in final.values()) / sum(k.size for k in final.values())
    )


def test_without_persistence_zeros_regrow():
    model = _mlp()
    model.fit(*_data(), epochs=1, batch_size=16, verbose=0,
              callbacks=[PlasticityCallback([Rule(selectors.smallest_magnitude(), mutators.zero(),
                                                  schedules.constant(0.5))], seed=0)])
    zeros = {p: k == 0 for p, k in _kernels(model).items()}
    model.fit(*_data(), epochs=1, batch_size=16, verbose=0)
    regrown = sum(int((k[zeros[p]] != 0).sum()) for p, k in _kernels(model).items())
    assert regrown > 0


def test_polynomial_schedule_at_batch_frequency_grows_nested_masks():
    model = _mlp()
    schedule = schedules.polynomial(0.0, 0.8, begin=0, end=16, power=3)
    record = _RecordEveryBatch()
    model.fit(*_data(), epochs=3, batch_size=16, verbose=0,
              callbacks=[MagnitudePruning(schedule, frequency=4, seed=0), record])
    kernel = "hidden/kernel"
    sparsities = [float((step[kernel] == 0).mean()) for step in record.kernels]
    assert sparsities == sorted(sparsities)  # never decreases
    assert sparsities[-1] == pytest.approx(round(0.8 * 320) / 320)
    # At step 8 the schedule asks for 0.8 * (1 - (1 - 8/16)**3) = 0.7.
    assert sparsities[7] == pytest.approx(round(0.7 * 320) / 320)


def test_global_scope_ranks_all_kernels_together():
    model = _mlp()
    model.build((None, 10))
    big = model.get_layer("hidden").kernel
    big.assign(np.full(big.shape, 5.0, "float32"))  # nothing here is small
    pruning = MagnitudePruning(0.3, scope="global", seed=0)
    pruning.set_model(model)
    pruning.apply(0)
    kernels = _kernels(model)
    total = sum(k.size for k in kernels.values())
    assert sum(int((k == 0).sum()) for k in kernels.values()) == round(0.3 * total)
    assert (kernels["hidden/kernel"] == 5.0).all()


def test_strip_leaves_a_plain_model_that_saves_and_loads(tmp_path):
    model = _mlp()
    model.fit(*_data(), epochs=2, batch_size=32, verbose=0, callbacks=[MagnitudePruning(0.6, seed=1)])
    assert kerastroke.strip(model) is model
    assert all(v.constraint is None for v in model.trainable_variables)
    path = tmp_path / "pruned.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(model.weights, loaded.weights):
        assert np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))
    report = kerastroke.sparsity(loaded)
    assert {_short(path) for path in report["layers"]} == {"hidden/kernel", "middle/kernel", "out/kernel"}
    assert all(value == pytest.approx(0.6, abs=0.02) for value in report["layers"].values())


def test_saving_works_while_masks_are_attached(tmp_path):
    model = _mlp()
    model.fit(*_data(), epochs=1, batch_size=32, verbose=0, callbacks=[MagnitudePruning(0.5, seed=1)])
    model.save(tmp_path / "m.keras")
    keras.saving.load_model(tmp_path / "m.keras")


def test_set_keeps_sparsity_and_exchanges_connections():
    model = _mlp()
    set_callback = SET(sparsity=0.75, drop_fraction=0.3, seed=4)
    record = _RecordEveryBatch()
    history = model.fit(*_data(), epochs=3, batch_size=32, verbose=0, callbacks=[set_callback, record])
    after_first = record.kernels[3]  # last step of epoch 1, before the second application
    final = _kernels(model)
    for path, kernel in final.items():
        assert (kernel == 0).sum() == round(0.75 * kernel.size), path
        # Some connections moved: the zero pattern differs from the one held before.
        assert ((kernel == 0) != (after_first[path] == 0)).any(), path
    assert history.history["set_sparsity"][-1] == pytest.approx(
        sum(round(0.75 * k.size) for k in final.values()) / sum(k.size for k in final.values())
    )


def test_shrink_perturb_applies_the_update_to_weights_and_biases():
    model = _mlp()
    model.build((None, 10))
    before = [np.array(v.numpy()) for v in model.trainable_variables]
    sp = ShrinkPerturb(shrink=0.5, perturb=0.0, seed=0)
    sp.set_model(model)
    sp.apply(0)
    for old, variable in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(np.array(variable.numpy()), np.float32(0.5) * old)


def test_shrink_perturb_period():
    sp = ShrinkPerturb(period=3)
    assert [sp.rules[0].schedule(e) for e in range(6)] == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]


def test_initializer_mutator_uses_the_layers_own_initializer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, kernel_initializer="ones")])
    model.build((None, 4))
    model.layers[0].kernel.assign(np.zeros((4, 6), "float32"))
    callback = PlasticityCallback([Rule(selectors.random_fraction(), mutators.initializer())], seed=0)
    callback.set_model(model)
    callback.apply(0)
    assert (np.array(model.layers[0].kernel.numpy()) == 1.0).all()


def test_reset_optimizer_zeroes_moments_of_rewritten_entries_only():
    model = _mlp()
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    kernel = model.get_layer("hidden").kernel
    slots = [s for s in model.optimizer.variables if s.name.startswith(kernel.path.replace("/", "_") + "_")]
    assert len(slots) == 2  # Adam's momentum and velocity
    before = [np.array(s.numpy()) for s in slots]
    callback = PlasticityCallback([Rule(selectors.value_range(-0.05, 0.05), mutators.constant(0.5))],
                                  layers=["hidden"], seed=0, reset_optimizer=True)
    selected = np.abs(np.array(kernel.numpy())) <= 0.05
    callback.set_model(model)
    callback.apply(1)
    for old, slot in zip(before, slots):
        new = np.array(slot.numpy())
        assert (new[selected] == 0).all()
        assert np.array_equal(new[~selected], old[~selected])


def test_sparsity_report_and_logs_from_plain_pruning():
    model = _mlp()
    history = model.fit(*_data(), epochs=1, verbose=0, callbacks=[Pruning(min_value=-0.05, max_value=0.05)])
    report = kerastroke.sparsity(model)
    assert history.history["pruning_sparsity"][0] == pytest.approx(report["total"])
    assert 0 < report["total"] < 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MagnitudePruning(1.5), "sparsity"),
        (lambda: MagnitudePruning(0.5, scope="layer"), "scope"),
        (lambda: SET(sparsity=-0.1), "sparsity"),
        (lambda: SET(drop_fraction=2.0), "drop_fraction"),
        (lambda: ShrinkPerturb(shrink=2.0), "shrink"),
        (lambda: ShrinkPerturb(period=0), "period"),
        (lambda: PlasticityCallback([Rule(selectors.random_fraction(), mutators.zero())], persistent=1), "persistent"),
    ],
)
def test_bad_parameters_fail_at_construction(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_configs_round_trip():
    for callback in [
        MagnitudePruning(schedules.polynomial(0.0, 0.5, 0, 10), frequency=5, scope="global", seed=1),
        SET(sparsity=0.8, drop_fraction=schedules.cosine(0.3, 10), seed=2),
        ShrinkPerturb(0.3, 0.05, period=2, seed=3),
    ]:
        config = callback.get_config()
        rebuilt = type(callback).from_config(config)
        assert rebuilt.get_config() == config
        assert rebuilt.rules == callback.rules


class _CrashAtEpoch2(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("simulated crash")


def test_persistent_pruning_resumes_bit_identically(tmp_path, op_determinism):
    """A restarted process rebuilds the model: the held zeros come back from the weights."""
    x, y = _data()

    def pruning():
        return MagnitudePruning(schedules.polynomial(0.2, 0.7, begin=0, end=3, power=1), seed=5)

    def fit(model, callbacks):
        model.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0, callbacks=callbacks)

    straight = _mlp()
    fit(straight, [pruning()])
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(_mlp(), [pruning(), backup, _CrashAtEpoch2()])
    resumed = _mlp()
    fit(resumed, [pruning(), keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))])
    for a, b in zip(straight.weights, resumed.weights):
        assert np.array_equal(np.asarray(a.numpy()).view(np.uint32), np.asarray(b.numpy()).view(np.uint32))


def test_strip_stops_holding_zeros_in_the_next_fit():
    model = _mlp()
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[MagnitudePruning(0.6, seed=1)])
    kerastroke.strip(model)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert kerastroke.sparsity(model)["total"] < 0.1  # the zeros regrew
