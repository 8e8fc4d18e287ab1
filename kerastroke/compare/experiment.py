"""The comparison itself: one small model, trained per seed without and with each preset.

Within a seed every technique starts from the same initial weights and sees
the same batches in the same order, so the runs of one seed differ only by the
technique. Both come from NumPy generators seeded with the run's seed, not
from the backend's random numbers, so a seed means the same initial weights
and batch order on TensorFlow, JAX and PyTorch; the presets' own draws are
counter-based and the same on every backend too. Layers have fixed names, so a
preset's draws, which depend on the variable paths, do not depend on how many
models the process built before.
"""

import contextlib
import dataclasses
import math
import time

import keras
import numpy as np

import kerastroke
from kerastroke.compare.options import BASELINE, DEFAULT_TECHNIQUES, TECHNIQUES, Settings

__all__ = [
    "BASELINE",
    "DEFAULT_TECHNIQUES",
    "TECHNIQUES",
    "Comparison",
    "Run",
    "Settings",
    "Trainer",
    "batches",
    "build_model",
    "compile_options",
    "initial_weights",
    "one_torch_thread",
    "run_comparison",
    "technique_settings",
]


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
    return TECHNIQUES[technique].build(seed)


def initial_weights(features, classes, hidden_units, seed):
    """The model's initial weights for `seed`, drawn with NumPy, in `get_weights` order.

    The distributions are Keras's defaults for `Dense` (Glorot-uniform kernels,
    zero biases), drawn from `numpy.random.default_rng(seed)` so that a seed
    gives the same weights on every backend; each backend's own generator
    would give different ones.

    Example:
    >>> [w.shape for w in initial_weights(4, 3, 8, seed=0)]
    [(4, 8), (8,), (8, 3), (3,)]
    """
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in ((features, hidden_units), (hidden_units, classes)):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype("float32"))
        weights.append(np.zeros(fan_out, "float32"))
    return weights


def batches(x, y, batch_size, seed, epochs, first_epoch=0):
    """Yields `epochs` epochs of `(x, y)` batches, each epoch in its own random order.

    The order of epoch `e` is `numpy.random.default_rng([seed, e])`'s
    permutation: the same on every backend and for every technique of a seed
    (Keras's own shuffling draws from each backend's generator). The last
    batch of an epoch holds the remainder, as `fit` on arrays does. The
    epochs are `first_epoch` to `first_epoch + epochs - 1` (a training that
    goes on, as `fit`'s `initial_epoch`).

    Example:
    >>> x, y = np.arange(5.0)[:, None], np.arange(5)
    >>> [len(b) for b, _ in batches(x, y, batch_size=2, seed=0, epochs=2)]
    [2, 2, 1, 2, 2, 1]
    """
    for epoch in range(first_epoch, first_epoch + epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(x))
        for start in range(0, len(x), batch_size):
            chosen = order[start : start + batch_size]
            yield x[chosen], y[chosen]


def compile_options(steps_per_epoch):
    """`compile` arguments that make a tiny model train fast on the current backend.

    TensorFlow: a `tf.function` without XLA (XLA compiles longer than it
    saves here), one call per epoch, since per-step Python overhead dominates
    on tiny batches and the presets act at epoch ends only. JAX: `jit` is its
    only compiled path (without it every step runs op by op), one call per
    epoch. PyTorch: Keras allows one step per call, and `torch.compile` costs
    more than it saves.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return {"jit_compile": False, "steps_per_execution": 1}
    return {"jit_compile": backend == "jax", "steps_per_execution": steps_per_epoch}


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
        self.steps_per_epoch = math.ceil(len(dataset.x_train) / settings.batch_size)
        self.model = build_model(dataset.features, dataset.classes, settings.hidden_units)
        self.model.compile(
            optimizer=keras.optimizers.Adam(settings.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            **compile_options(self.steps_per_epoch),
        )
        optimizer = self.model.optimizer
        optimizer.build(self.model.trainable_variables)
        self._fresh_optimizer = [keras.ops.convert_to_numpy(v) for v in optimizer.variables]
        self._fit(seed=0, epochs=1, callbacks=[])

    def _fit(self, seed, epochs, callbacks):
        # A generator, not arrays: the batch order is ours (see `batches`), not the backend's.
        data = batches(
            self.dataset.x_train, self.dataset.y_train, self.settings.batch_size, seed, epochs
        )
        return self.model.fit(
            data,
            epochs=epochs,
            steps_per_epoch=self.steps_per_epoch,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        ).history

    def _reset(self, initial_weights):
        # A persistent preset (MagnitudePruning, SET) leaves its zero masks on the variables;
        # the next run must not train under them.
        kerastroke.strip(self.model)
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
        history = self._fit(seed, self.settings.epochs, callbacks)
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
            settings=None if callback is None else technique_settings(callback),
        )


def run_comparison(
    dataset, techniques=DEFAULT_TECHNIQUES, seeds=(0, 1, 2), settings=Settings(), progress=None
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

    Raises:
        ValueError: An unknown technique, or no seeds.

    Example:
    >>> from kerastroke.compare.data import load_bundled
    >>> result = run_comparison(load_bundled("wine"), ["pruning"], seeds=[0],
    ...                         settings=Settings(epochs=2))
    >>> [run.technique for run in result.runs]
    ['baseline', 'pruning']
    """
    techniques = [BASELINE] + [t for t in dict.fromkeys(techniques) if t != BASELINE]
    for technique in techniques:
        if technique != BASELINE and technique not in TECHNIQUES:
            raise ValueError(
                f"Unknown technique {technique!r}; choose from {', '.join(TECHNIQUES)}."
            )
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError(f"seeds must name at least one seed, got {seeds!r}.")
    total = len(seeds) * len(techniques)
    on_epoch = None if progress is None else (lambda epoch: progress.epoch_ended(epoch, settings.epochs))

    runs = []
    with one_torch_thread():
        trainer = Trainer(dataset, settings)
        for seed in seeds:
            weights = initial_weights(dataset.features, dataset.classes, settings.hidden_units, seed)
            for technique in techniques:
                if progress is not None:
                    progress.run_started(len(runs), total, technique, seed)
                runs.append(trainer.run(technique, seed, weights, on_epoch))
    if progress is not None:
        progress.finished()
    return Comparison(
        dataset=dataset.describe(),
        settings=settings,
        seeds=seeds,
        techniques=techniques,
        runs=runs,
    )


@contextlib.contextmanager
def one_torch_thread():
    """On PyTorch, one intra-op thread within the block; elsewhere nothing."""
    # PyTorch's thread pool costs more than it saves on 32 x 64 matrices, and on a busy
    # machine its threads wait on each other: one thread trained 20x faster on 2 shared cores.
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def technique_settings(callback):
    """A preset's parameters: its config without the seed and the bookkeeping."""
    # The seed differs per run and verbose/name are bookkeeping, not the technique.
    config = callback.get_config()
    return {k: v for k, v in config.items() if k not in ("seed", "verbose", "name")}
