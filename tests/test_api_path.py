"""What a user meets on the way from `pip install` to a trained model (issue #14).

Each test is one thing that used to go silently wrong: it now either works as
a Keras user expects or fails at once with a message that says what to do.
"""

import contextlib
import json
import re
import warnings

import attrs
import keras
import numpy as np
import pytest

import kerastroke
from kerastroke import (
    SET,
    MagnitudePruning,
    NeuroPlast,
    PlasticityCallback,
    Pruning,
    Rule,
    ShrinkPerturb,
    Stroke,
    mutators,
    schedules,
    selectors,
)
from tests import models

KEYS = ("changed", "fraction", "sparsity")


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable))


# -- 2. TensorBoard (CSVLogger, History) see the figures, or training says why not --


class _Summary:
    """The few `tf.summary` calls TensorBoard makes at epoch frequency, recorded."""

    def __init__(self):
        self.scalars = {}

    def create_file_writer(self, logdir):
        return self

    def as_default(self, step=None):
        return contextlib.nullcontext()

    def record_if(self, condition):
        return contextlib.nullcontext()

    def close(self):
        pass

    def scalar(self, name, value, step):
        self.scalars.setdefault(name, []).append((int(step), float(value)))


class _RecordingTensorBoard(keras.callbacks.TensorBoard):
    """Keras's own TensorBoard callback, writing into `_Summary` instead of event files."""

    def __init__(self, log_dir):
        super().__init__(log_dir=str(log_dir), write_graph=False)
        self.recorded = _Summary()

    @property
    def summary(self):
        return self.recorded


def _logger(kind, tmp_path):
    if kind == "tensorboard":
        return _RecordingTensorBoard(tmp_path / "logs")
    if kind == "history":
        return keras.callbacks.History()  # passed by the user, so Keras adds none
    return keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))


def _logged_keys(kind, logger, tmp_path):
    if kind == "tensorboard":
        return {name.removeprefix("epoch_") for name in logger.recorded.scalars}
    if kind == "history":
        return set(logger.history)
    with open(tmp_path / "log.csv") as file:
        return set(file.readline().strip().split(","))


@pytest.mark.parametrize("kind", ["tensorboard", "csv", "history"])
def test_loggers_get_the_figures_after_the_callback_and_a_warning_before_it(kind, tmp_path):
    stroke_keys = {f"stroke_{key}" for key in KEYS}

    logger = _logger(kind, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # In this order nothing is worth one.
        models.fit(models.mlp_sequential(), [Stroke(seed=0), logger], epochs=2)
    assert stroke_keys <= _logged_keys(kind, logger, tmp_path)

    logger = _logger(kind, tmp_path)
    expected = f"{type(logger).__name__} comes before 'stroke'"
    with pytest.warns(UserWarning, match=expected) as record:
        models.fit(models.mlp_sequential(), [logger, Stroke(seed=0)], epochs=2)
    message = str(next(w.message for w in record if expected in str(w.message)))
    assert "Put the kerastroke callback before" in message and "stroke_changed" in message
    assert not stroke_keys & _logged_keys(kind, logger, tmp_path)  # what the warning says


def test_tensorboard_event_files_hold_the_figures(tmp_path):
    # End to end: Keras's own TensorBoard callback (after the kerastroke one)
    # writes event files; TensorBoard's reader finds the figures History has.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    history = models.fit(
        models.mlp_sequential(),
        [Stroke(volatility_ratio=0.25, seed=0), keras.callbacks.TensorBoard(str(tmp_path), write_graph=False)],
        epochs=2,
    )
    events = EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    assert {"epoch_stroke_changed", "epoch_stroke_fraction", "epoch_stroke_sparsity"} <= set(events.Tags()["tensors"])
    written = [tensor_util.make_ndarray(event.tensor_proto).item() for event in events.Tensors("epoch_stroke_changed")]
    # 25% of the kernels' 48 + 40 + 15 entries: 12 + 10 + 4 per epoch.
    assert history.history["stroke_changed"] == [26, 26]
    assert written == [26.0, 26.0]


# -- 3. the 2.x presets' cutoff and decay count epochs -------------------------------


@pytest.mark.parametrize(
    "preset, kwargs, name",
    [
        (Stroke, {"cutoff": 3}, "cutoff"),
        (Stroke, {"decay": 0.9}, "decay"),
        (Pruning, {"cutoff": 2}, "cutoff"),
        (NeuroPlast, {"cutoff": 5}, "cutoff"),
    ],
)
def test_epoch_counts_of_the_2x_presets_are_refused_at_batch_frequency(preset, kwargs, name):
    value = kwargs[name]
    with pytest.raises(ValueError, match=rf"`{name}` counts epochs") as error:
        preset(frequency=10, **kwargs)
    assert f"Received: {name}={value!r}, frequency=10" in str(error.value)
    assert 'frequency="epoch"' in str(error.value)
    # The same values keep their 2.x meaning at epoch frequency, and the
    # defaults (no cutoff, no decay) still work at batch frequency.
    preset(**kwargs)
    preset(frequency=10, **{name: -1 if name == "cutoff" else 1.0})
    preset(frequency=10)


# -- 8. two callbacks with one name -------------------------------------------------


def test_two_default_names_get_distinct_keys_and_two_given_names_fail():
    first, second = Stroke(seed=0), Stroke(volatility_ratio=0.5, seed=1)
    with pytest.warns(UserWarning, match="renamed 'stroke_1'.*Pass `name=`"):
        history = models.fit(models.mlp_sequential(), [first, second], epochs=2)
    assert (first.name, second.name) == ("stroke", "stroke_1")
    assert second.get_config()["name"] == "stroke_1"
    for key in KEYS:
        assert len(history.history[f"stroke_{key}"]) == 2
        assert len(history.history[f"stroke_1_{key}"]) == 2
    # 5% and 50% of 103 kernel entries: two series, not one written twice.
    assert history.history["stroke_changed"] != history.history["stroke_1_changed"]

    # A name given with `name=` is kept; the default one makes way.
    given, default = Stroke(seed=0, name="stroke"), Stroke(seed=1)
    with pytest.warns(UserWarning, match="renamed 'stroke_1'"):
        models.fit(models.mlp_sequential(), [default, given], epochs=1)
    assert (given.name, default.name) == ("stroke", "stroke_1")

    twins = [Stroke(seed=0, name="plastic"), Pruning(seed=1, name="plastic")]
    with pytest.raises(ValueError, match=r"Pass a distinct `name=`.*Received: name='plastic' twice"):
        models.fit(models.mlp_sequential(), twins, epochs=1)


# -- 11. custom pieces and Keras's own serialization ------------------------------


@kerastroke.register_piece
@attrs.frozen
class _Negate:
    scale: float = 1.0

    def __call__(self, weights, mask, seed):
        return keras.ops.where(mask, -self.scale * weights, weights)


@kerastroke.register_piece(name="tests.api_path.halving")
def _halving(step):
    return 0.5**step


def _every_callback():
    return [
        PlasticityCallback(
            [Rule(selectors.value_range(-0.1, 0.1), _Negate(2.0), _halving)], layers=["out"], seed=0
        ),
        Stroke(value=0.0, volatility_ratio=0.3, cutoff=4, decay=0.5, seed=1),
        Pruning(set_value=0.25, min_value=-0.1, max_value=0.3, biases=True, seed=2),
        NeuroPlast(pruning_min=0.0, pruning_max=0.001, set_value=0.3, seed=3),
        MagnitudePruning(schedules.polynomial(0.0, 0.8, 0, 100), frequency=10, seed=4),
        SET(sparsity=0.8, grow=_Negate(), seed=5),
        ShrinkPerturb(shrink=0.5, perturb=0.2, period=2, seed=6),
    ]


@pytest.mark.parametrize("callback", _every_callback(), ids=lambda callback: type(callback).__name__)
def test_keras_serialization_round_trips_every_callback_with_registered_pieces(callback):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(callback)))
    assert config["registered_name"] == f"kerastroke>{type(callback).__name__}"
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(callback)
    assert rebuilt.get_config() == callback.get_config()
    assert rebuilt.rules == callback.rules


def test_unregistered_piece_points_to_register_piece():
    callback = PlasticityCallback([Rule(selectors.random_fraction(), lambda w, m, s: w)], seed=0)
    with pytest.raises(TypeError, match=r"@kerastroke\.register_piece") as error:
        callback.get_config()
    assert "kerastroke.core" not in str(error.value)  # no internal module to hunt for
    assert "register_piece" in kerastroke.__all__
    with pytest.raises(ValueError, match=r"Unknown piece 'Custom>Gone'.*register_piece"):
        Rule.from_config({
            "selector": {"class_name": "Custom>Gone", "config": {}},
            "mutator": {"class_name": "mutators.constant", "config": {"value": 0.0}},
            "schedule": {"class_name": "schedules.constant", "config": {"value": 1.0}},
        })
    def quarter(step):
        return 0.25

    assert kerastroke.register_piece("tests.api_path.quarter")(quarter) is quarter  # name given positionally
    config = Rule(selectors.random_fraction(), mutators.zero(), quarter).get_config()
    assert config["schedule"] == {"class_name": "tests.api_path.quarter", "config": {}}
    assert Rule.from_config(json.loads(json.dumps(config))).schedule is quarter
    with pytest.raises(TypeError, match="register_piece registers an attrs class"):
        kerastroke.register_piece(type("Plain", (), {"__call__": lambda self, step: 1.0}))


# -- 12. the class instead of an instance -----------------------------------------


@pytest.mark.parametrize("cls", [Stroke, MagnitudePruning, PlasticityCallback])
def test_passing_the_class_fails_at_once_saying_to_pass_an_instance(cls):
    model = models.mlp_sequential()
    with pytest.raises(TypeError, match=rf"Pass `{cls.__name__}\(\)`"):
        models.fit(model, [cls], epochs=1)
    # Explicit calls through the class still work.
    stroke = Stroke(seed=0)
    Stroke.set_model(stroke, model)
    assert stroke.model is model


# -- 14. verbose lines under the progress bar --------------------------------------


def test_verbose_line_stands_on_its_own_line_and_names_the_callback(capsys):
    model = models.mlp_sequential()
    x, y = models.data(model)
    callbacks = [MagnitudePruning(0.5, frequency=2, verbose=1, seed=0, name="mp")]
    model.fit(x, y, epochs=1, batch_size=4, verbose=1, callbacks=callbacks)
    out = capsys.readouterr().out
    lines = [line for line in re.split(r"[\r\n]", out) if "at step" in line]
    assert len(lines) == 2  # steps 2 and 4
    assert all(re.match(r"mp at step [24]: changed \d+ of 103 entries", line) for line in lines), lines
    assert "MagnitudePruning" not in out


# -- 16. a saved model's held zeros, held again -------------------------------------


class _ZerosStayZero(keras.callbacks.Callback):
    """Counts, after every batch, the entries of `zeros` (by path) that are non-zero."""

    def __init__(self, zeros):
        super().__init__()
        self.zeros = zeros
        self.regrown = []

    def on_train_batch_end(self, batch, logs=None):
        self.regrown.append(
            sum(int((_numpy(v)[self.zeros[v.path]] != 0).sum()) for v in self.model.weights if v.path in self.zeros)
        )


def test_reloaded_model_holds_its_zeros_again_once_the_callback_is_attached(tmp_path):
    model = models.mlp_sequential()
    models.fit(model, [MagnitudePruning(0.6, seed=1)], epochs=2)
    path = tmp_path / "pruned.keras"
    model.save(path)  # during training: the holds are not saved

    def reloaded():
        loaded = keras.saving.load_model(path)
        assert all(v.constraint is None for v in loaded.trainable_variables)
        zeros = {v.path: _numpy(v) == 0 for v in loaded.trainable_variables if len(v.shape) == 2}
        assert all(mask.mean() == pytest.approx(0.6, abs=0.05) for mask in zeros.values())
        return loaded, _ZerosStayZero(zeros)

    loaded, probe = reloaded()
    models.fit(loaded, [probe], epochs=1)
    assert min(probe.regrown) > 0  # without the callback the zeros regrow

    loaded, probe = reloaded()
    # Sparsity 0 from here on: the callback only holds, it never prunes again.
    models.fit(loaded, [probe, MagnitudePruning(0.0, seed=1)], epochs=4, initial_epoch=2)
    assert probe.regrown == [0] * 4


# -- 17. strip returns the model; every preset's default name ----------------------


@pytest.mark.parametrize(
    "preset, name",
    [
        (Stroke, "stroke"),
        (Pruning, "pruning"),
        (NeuroPlast, "neuroplast"),
        (MagnitudePruning, "magnitude_pruning"),
        (SET, "set"),
        (ShrinkPerturb, "shrink_perturb"),
    ],
)
def test_strip_returns_the_model_and_presets_document_their_default_name(preset, name):
    callback = preset(seed=0)
    assert callback.name == name
    assert f'default "{name}"' in preset.__doc__
    assert f"`{name}_changed`" in preset.__doc__
    model = models.mlp_sequential()
    history = models.fit(model, [callback], epochs=1)
    assert {f"{name}_{key}" for key in KEYS} <= set(history.history)
    assert kerastroke.strip(model) is model
    assert all(v.constraint is None for v in model.trainable_variables)
