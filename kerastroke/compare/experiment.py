"""The comparison itself: one small model, trained per seed without and with each preset.

Within a seed every technique starts from the same initial weights (built
once, then copied) and sees the same batches in the same order (the global
seed is reset before every `fit`), so the runs of one seed differ only by the
technique. Layers have fixed names, so a preset's draws, which depend on the
variable paths, do not depend on how many models the process built before.
"""

import dataclasses
import math
import time

import keras
import numpy as np

from kerastroke.strategies.presets import NeuroPlast, Pruning, Stroke

BASELINE = "baseline"
# Preset defaults (those of kerastroke 2.1.1): the comparison shows what a user gets out of the box.
TECHNIQUES = {"stroke": Stroke, "pruning": Pruning, "neuroplast": NeuroPlast}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the model is built and trained; the same for every technique.

    Attributes:
        epochs: Epochs per run.
        hidden_units: Width of the one hidden ReLU layer.
        batch_size: Samples per optimizer step.
        learning_rate: Adam's learning rate.
    """

    epochs: int = 20
    hidden_units: int = 64
    batch_size: int = 32
    learning_rate: float = 1e-3


@dataclasses.dataclass
class Run:
    """What one (technique, seed) training run produced.

    Validation figures are measured at the end of every epoch *after* the
    technique has changed the weights, i.e. on the weights the model really
    has; the last entry is therefore the trained model's own score.

    Attributes:
        technique: "baseline" or a key of `TECHNIQUES`.
        seed: The seed of this run.
        val_accuracy: Validation accuracy per epoch.
        val_loss: Validation cross-entropy per epoch.
        changed_fraction: Per epoch, the fraction of targeted entries the
            technique changed (from its `<name>_fraction` log); None for the
            baseline.
        sparsity: Fraction of kernel entries exactly 0.0 after training.
        seconds: Wall time of the run (weight reset and fit; the one-off
            tracing is not counted).
        kernel_values: Every kernel entry after training, flat; for the plots.
        settings: The technique's parameters (its config without seed and
            bookkeeping); None for the baseline.
    """

    technique: str
    seed: int
    val_accuracy: list
    val_loss: list
    changed_fraction: list | None
    sparsity: float
    seconds: float
    kernel_values: np.ndarray = dataclasses.field(repr=False)
    settings: dict | None = None


@dataclasses.dataclass
class Comparison:
    """All runs of one comparison, in the order they ran."""

    dataset: dict
    settings: Settings
    seeds: list
    techniques: list
    runs: list

    def runs_of(self, technique):
        """The runs of one technique, in seed order."""
        return [run for run in self.runs if run.technique == technique]


def build_model(features, classes, hidden_units):
    """The compared model: features -> Dense(hidden_units, relu) -> Dense(classes) logits.

    Example:
    >>> build_model(64, 10, 32).count_params()
    2410
    """
    return keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(hidden_units, activation="relu", name="hidden"),
            keras.layers.Dense(classes, name="logits"),
        ],
        name="compare_mlp",
    )


def kernels(model):
    """The weights the presets touch: trainable float variables with 2+ dimensions."""
    return [
        v
        for v in model.trainable_variables
        if len(v.shape) >= 2 and keras.backend.is_float_dtype(v.dtype)
    ]


class ValidationRecorder(keras.callbacks.Callback):
    """Writes `val_loss` and `val_accuracy` into the epoch's logs.

    Placed after the technique's callback, so it measures the weights as the
    technique left them; Keras's own validation runs before any callback.
    """

    def __init__(self, x_val, y_val, on_epoch=None):
        super().__init__()
        self.x_val = x_val
        self.y_val = y_val
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch, logs=None):
        logits = self.model(self.x_val, training=False)
        loss = keras.losses.sparse_categorical_crossentropy(self.y_val, logits, from_logits=True)
        predicted = keras.ops.convert_to_numpy(keras.ops.argmax(logits, axis=-1))
        if logs is not None:
            logs["val_loss"] = float(keras.ops.convert_to_numpy(keras.ops.mean(loss)))
            logs["val_accuracy"] = float(np.mean(predicted == self.y_val))
        if self.on_epoch is not None:
            self.on_epoch(epoch)


def make_technique(technique, seed):
    """The preset callback for `technique`, seeded; None for the baseline."""
    if technique == BASELINE:
        return None
    return TECHNIQUES[technique](seed=seed)


class Trainer:
    """One compiled model that every run of a comparison reuses.

    Tracing the training step costs more than a whole short run on this model,
    so it is done once (with a warm-up epoch, which also keeps that cost out of
    the first run's `seconds`). Each run then starts from exactly the state a
    freshly built model would have: the given initial weights and the
    optimizer's variables as they were right after it was built.

    Args:
        dataset: A `data.Dataset`.
        settings: A `Settings`.
    """

    def __init__(self, dataset, settings):
        self.dataset = dataset
        self.settings = settings
        self.model = build_model(dataset.features, dataset.classes, settings.hidden_units)
        self.model.compile(
            optimizer=keras.optimizers.Adam(settings.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            # XLA compilation costs more than it saves on a model this small.
            jit_compile=False,
            # One graph call per epoch: per-step Python overhead dominates on tiny
            # batches, and the presets act at epoch ends only, so the numbers are the same.
            steps_per_execution=math.ceil(len(dataset.x_train) / settings.batch_size),
        )
        optimizer = self.model.optimizer
        optimizer.build(self.model.trainable_variables)
        self._fresh_optimizer = [keras.ops.convert_to_numpy(v) for v in optimizer.variables]
        # Unshuffled: the warm-up draws nothing from the global RNG.
        self.model.fit(
            dataset.x_train, dataset.y_train, epochs=1, batch_size=settings.batch_size,
            shuffle=False, verbose=0,
        )

    def _reset(self, initial_weights):
        self.model.set_weights(initial_weights)
        for variable, value in zip(self.model.optimizer.variables, self._fresh_optimizer):
            variable.assign(value)

    def run(self, technique, seed, initial_weights, on_epoch=None):
        """Trains from `initial_weights` with one technique; returns a `Run`."""
        start = time.perf_counter()
        self._reset(initial_weights)
        callback = make_technique(technique, seed)
        callbacks = [] if callback is None else [callback]
        callbacks.append(ValidationRecorder(self.dataset.x_val, self.dataset.y_val, on_epoch))
        # Same seed before every fit: every technique of a seed sees the same batch order.
        keras.utils.set_random_seed(seed)
        history = self.model.fit(
            self.dataset.x_train,
            self.dataset.y_train,
            epochs=self.settings.epochs,
            batch_size=self.settings.batch_size,
            callbacks=callbacks,
            verbose=0,
        ).history
        values = np.concatenate(
            [keras.ops.convert_to_numpy(v).ravel() for v in kernels(self.model)]
        )
        return Run(
            technique=technique,
            seed=seed,
            val_accuracy=[float(a) for a in history["val_accuracy"]],
            val_loss=[float(a) for a in history["val_loss"]],
            changed_fraction=None
            if callback is None
            else [float(f) for f in history[f"{callback.name}_fraction"]],
            sparsity=float(np.mean(values == 0.0)),
            seconds=time.perf_counter() - start,
            kernel_values=values,
            settings=None if callback is None else _settings(callback),
        )


def run_comparison(
    dataset, techniques=tuple(TECHNIQUES), seeds=(0, 1, 2), settings=Settings(), progress=None
):
    """Trains the baseline and each technique once per seed.

    Args:
        dataset: A `data.Dataset`.
        techniques: Keys of `TECHNIQUES`; the baseline always runs first.
        seeds: Ints >= 0. Each seed fixes the initial weights, the batch
            order and the technique's own draws.
        settings: A `Settings`.
        progress: Optional object with `run_started(index, total, technique,
            seed)`, `epoch_ended(epoch, epochs)` and `finished()`.

    Returns:
        A `Comparison`. The numbers (all but `seconds`) are the same for the
        same dataset, seeds and settings.

    Example:
    >>> from kerastroke.compare.data import load_bundled
    >>> result = run_comparison(load_bundled("wine"), ["pruning"], seeds=[0],
    ...                         settings=Settings(epochs=2))
    >>> [run.technique for run in result.runs]
    ['baseline', 'pruning']
    """
    techniques = [BASELINE] + [t for t in techniques if t != BASELINE]
    for technique in techniques:
        if technique != BASELINE and technique not in TECHNIQUES:
            raise ValueError(
                f"Unknown technique {technique!r}; choose from {', '.join(TECHNIQUES)}."
            )
    seeds = [int(seed) for seed in seeds]
    total = len(seeds) * len(techniques)
    on_epoch = None if progress is None else (lambda epoch: progress.epoch_ended(epoch, settings.epochs))

    trainer = Trainer(dataset, settings)
    runs = []
    for seed in seeds:
        # A fresh model per seed gives that seed's initial weights; every technique copies them.
        keras.utils.set_random_seed(seed)
        initial_weights = build_model(
            dataset.features, dataset.classes, settings.hidden_units
        ).get_weights()
        for technique in techniques:
            if progress is not None:
                progress.run_started(len(runs), total, technique, seed)
            runs.append(trainer.run(technique, seed, initial_weights, on_epoch))
    if progress is not None:
        progress.finished()
    return Comparison(
        dataset=dataset.describe(),
        settings=settings,
        seeds=seeds,
        techniques=techniques,
        runs=runs,
    )


def _settings(callback):
    # The seed differs per run and verbose/name are bookkeeping, not the technique.
    config = callback.get_config()
    return {k: v for k, v in config.items() if k not in ("seed", "verbose", "name")}
