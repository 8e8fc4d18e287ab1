"""The continual scenario: one network trained through a sequence of tasks, never reset.

Loss of plasticity (Lyle et al. 2023; Dohare et al. 2024) shows only when the
same model keeps training as the task changes: its units go dormant, its
weights grow, and each new task is learnt less well than the one before. Each
run here trains one model, with one optimizer and one technique callback,
through every task in turn; task `t` is epochs `t * epochs` to
`(t + 1) * epochs - 1` of one long training (`fit`'s `initial_epoch`), so a
technique's schedule sees the absolute epoch, as in a single long `fit`.

Two task sequences, both drawn with NumPy from the run's seed (the same for
every technique of a seed, and on every backend):

- `random-labels`: a fixed subset of the training images gets new random
  labels at each task; the score is the accuracy on those images with those
  labels (memorisation is the point: a network that keeps its plasticity
  keeps memorising).
- `permuted`: a new fixed permutation of the input features at each task,
  applied to the same fixed subset of training images (with their true
  labels) and to the whole held-out split; the score is the held-out
  accuracy.

Initial weights and batch order come from NumPy as in the stationary
comparison (`experiment.initial_weights`, `experiment.batches`).
"""

import dataclasses
import math
import time

import keras
import numpy as np

import kerastroke
from kerastroke.compare import experiment
from kerastroke.engine.activity import ActivityProbe
from kerastroke.compare.options import (
    BASELINE,
    CONTINUAL_TECHNIQUES,
    PERMUTED,
    RANDOM_LABELS,
    TASK_KINDS,
    ContinualSettings,
)

__all__ = [
    "ContinualComparison",
    "ContinualRun",
    "ContinualTrainer",
    "Task",
    "make_tasks",
    "permuted_tasks",
    "random_label_tasks",
    "run_continual",
]

# Fixes which training images the random-label tasks use, whatever the run's seed.
SUBSET_SEED = 0


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of a sequence: what to train on and what to score.

    Attributes:
        index: The task's position in the sequence, from 0.
        x_train: float32 inputs, shape (samples, features).
        y_train: int32 labels, shape (samples,).
        x_score: The inputs the task is scored on (the training inputs for
            random labels, the permuted held-out split for permutations).
        y_score: Their labels.
        permutation: The feature permutation (permuted tasks), else None.
    """

    index: int
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_score: np.ndarray = dataclasses.field(repr=False)
    y_score: np.ndarray = dataclasses.field(repr=False)
    permutation: np.ndarray | None = dataclasses.field(default=None, repr=False)


def training_subset(dataset, samples):
    """The indices of the training images every task uses: the same for every run.

    The first `samples` (capped at the split's size) of a permutation drawn
    with a fixed seed, in increasing order.

    Example:
    >>> from kerastroke.compare.data import load_bundled
    >>> len(training_subset(load_bundled("wine"), 1000))
    142
    """
    order = np.random.default_rng(SUBSET_SEED).permutation(len(dataset.x_train))
    return np.sort(order[: min(samples, len(dataset.x_train))])


def random_label_tasks(dataset, count, samples, seed):
    """`count` tasks on one fixed subset of images, each with new uniform random labels.

    The subset (`training_subset`) is the same for every run; the labels of
    task `t` come from `numpy.random.default_rng([seed, t])`.

    Args:
        dataset: A `data.Dataset`; its training split provides the images.
        count: Number of tasks (int >= 1).
        samples: Images per task; capped at the training split's size.
        seed: The run's seed.

    Example:
    >>> from kerastroke.compare.data import load_bundled
    >>> tasks = random_label_tasks(load_bundled("wine"), 2, 50, seed=0)
    >>> [t.x_train.shape for t in tasks], bool((tasks[0].y_train != tasks[1].y_train).any())
    ([(50, 13), (50, 13)], True)
    """
    images = dataset.x_train[training_subset(dataset, samples)]
    tasks = []
    for index in range(count):
        labels = np.random.default_rng([seed, index]).integers(0, dataset.classes, len(images))
        labels = labels.astype("int32")
        tasks.append(Task(index, images, labels, images, labels))
    return tasks


def permuted_tasks(dataset, count, samples, seed):
    """`count` tasks, each the dataset with its features in a new fixed order.

    Task `t`'s permutation is `numpy.random.default_rng([seed, t])`'s; it
    is applied to the fixed subset of training images (`training_subset`)
    and to the whole held-out split; the labels are the true ones.

    Example:
    >>> from kerastroke.compare.data import load_bundled
    >>> tasks = permuted_tasks(load_bundled("wine"), 2, 100, seed=0)
    >>> sorted(tasks[1].permutation) == list(range(13)), tasks[1].x_train.shape
    (True, (100, 13))
    """
    chosen = training_subset(dataset, samples)
    images, labels = dataset.x_train[chosen], dataset.y_train[chosen]
    tasks = []
    for index in range(count):
        order = np.random.default_rng([seed, index]).permutation(dataset.features)
        tasks.append(
            Task(
                index,
                np.ascontiguousarray(images[:, order]),
                labels,
                np.ascontiguousarray(dataset.x_val[:, order]),
                dataset.y_val,
                permutation=order,
            )
        )
    return tasks


def make_tasks(dataset, kind, settings, seed):
    """The task sequence of `kind` (`TASK_KINDS`) for one seed."""
    if kind == RANDOM_LABELS:
        return random_label_tasks(dataset, settings.tasks, settings.samples, seed)
    if kind == PERMUTED:
        return permuted_tasks(dataset, settings.tasks, settings.samples, seed)
    raise ValueError(f"Unknown task kind {kind!r}; choose from {', '.join(TASK_KINDS)}.")


@dataclasses.dataclass
class ContinualRun:
    """What one (technique, seed) run through the task sequence produced.

    Attributes:
        technique: "baseline" or a key of `CONTINUAL_TECHNIQUES`.
        seed: The seed of this run.
        accuracy: Per task, the accuracy at the task's end (after the
            technique's last change), on the task's scoring set.
        loss: Per task, the cross-entropy on the same set.
        dormant: Per task, the fraction of hidden units dormant at the
            task's end on the task's probe batch.
        changed_fraction: Per epoch, over all tasks, the fraction of targeted
            entries the technique changed; None for the baseline.
        seconds: Wall time of the run.
        settings: The technique's parameters; None for the baseline.
    """

    technique: str
    seed: int
    accuracy: list
    loss: list
    dormant: list
    changed_fraction: list | None
    seconds: float
    settings: dict | None = None


@dataclasses.dataclass
class ContinualComparison:
    """All runs of one continual comparison, in the order they ran."""

    dataset: dict
    settings: ContinualSettings
    task_kind: str
    seeds: list
    techniques: list
    runs: list
    scenario: str = "continual"

    def runs_of(self, technique):
        """The runs of one technique, in seed order."""
        return [run for run in self.runs if run.technique == technique]


class ContinualTrainer:
    """One compiled model that every run of a continual comparison reuses.

    As `experiment.Trainer`: the training step is traced once, with a warm-up
    epoch, and each run starts from the given initial weights and the
    optimizer's state as built. Within a run nothing is reset between tasks.

    Args:
        dataset: A `data.Dataset`.
        settings: A `ContinualSettings`.
        train_samples: Samples per task's training set (fixes the steps per epoch).
    """

    def __init__(self, dataset, settings, train_samples):
        self.settings = settings
        self.steps_per_epoch = math.ceil(train_samples / settings.batch_size)
        self.model = experiment.build_model(dataset.features, dataset.classes, settings.hidden_units)
        # One probe of the hidden layer for the whole run (its sub-model compiled once).
        self.hidden_activity = ActivityProbe(self.model, layers=["hidden"])
        self.model.compile(
            optimizer=keras.optimizers.Adam(settings.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            **experiment.compile_options(self.steps_per_epoch),
        )
        optimizer = self.model.optimizer
        optimizer.build(self.model.trainable_variables)
        self._fresh_optimizer = [keras.ops.convert_to_numpy(v) for v in optimizer.variables]
        warm_up = np.zeros((train_samples, dataset.features), "float32")
        self._fit(warm_up, np.zeros(train_samples, "int32"), seed=0, first_epoch=0, callbacks=[])

    def _fit(self, x, y, seed, first_epoch, callbacks):
        epochs = self.settings.epochs
        data = experiment.batches(x, y, self.settings.batch_size, seed, epochs, first_epoch)
        return self.model.fit(
            data,
            initial_epoch=first_epoch,
            epochs=first_epoch + epochs,
            steps_per_epoch=self.steps_per_epoch,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        ).history

    def _reset(self, initial_weights):
        kerastroke.strip(self.model)
        self.model.set_weights(initial_weights)
        for variable, value in zip(self.model.optimizer.variables, self._fresh_optimizer):
            variable.assign(value)

    def score(self, task):
        """`(accuracy, loss, dormant fraction)` of the model as it is, on `task`."""
        logits = self.model(task.x_score, training=False)
        loss = keras.losses.sparse_categorical_crossentropy(task.y_score, logits, from_logits=True)
        predicted = keras.ops.convert_to_numpy(keras.ops.argmax(logits, axis=-1))
        probe = task.x_train[: self.settings.probe_samples]
        # Mean |activation| per unit of the hidden layer, ReDo's score, as the library measures it.
        activity = self.hidden_activity(probe)
        dormant = kerastroke.dormant_fraction(activity, self.settings.dormant_threshold)
        return (
            float(np.mean(predicted == task.y_score)),
            float(keras.ops.convert_to_numpy(keras.ops.mean(loss))),
            dormant,
        )

    def run(self, technique, seed, initial_weights, tasks, on_task=None):
        """Trains through `tasks` from `initial_weights` with one technique; a `ContinualRun`."""
        start = time.perf_counter()
        self._reset(initial_weights)
        probe = tasks[0].x_train[: self.settings.probe_samples]
        callback = make_technique(technique, seed, probe=probe)
        callbacks = [] if callback is None else [callback]
        accuracy, loss, dormant, changed = [], [], [], []
        for task in tasks:
            history = self._fit(
                task.x_train, task.y_train, seed, task.index * self.settings.epochs, callbacks
            )
            if callback is not None:
                changed += [float(f) for f in history[f"{callback.name}_fraction"]]
            task_accuracy, task_loss, task_dormant = self.score(task)
            accuracy.append(task_accuracy)
            loss.append(task_loss)
            dormant.append(task_dormant)
            if on_task is not None:
                on_task(task.index)
        return ContinualRun(
            technique=technique,
            seed=seed,
            accuracy=accuracy,
            loss=loss,
            dormant=dormant,
            changed_fraction=None if callback is None else changed,
            seconds=time.perf_counter() - start,
            settings=None if callback is None else experiment.technique_settings(callback),
        )


def make_technique(technique, seed, **context):
    """The preset callback for `technique` in the continual table, seeded; None for the baseline.

    `context` holds what the scenario can give a preset beside its parameters
    (`probe`: a batch of the first task's training inputs); each technique
    takes the entries its `takes` names.
    """
    if technique == BASELINE:
        return None
    return CONTINUAL_TECHNIQUES[technique].build(seed, **context)


def run_continual(
    dataset,
    techniques=tuple(CONTINUAL_TECHNIQUES),
    seeds=(0, 1, 2),
    settings=ContinualSettings(),
    task_kind=RANDOM_LABELS,
    progress=None,
):
    """Trains the baseline and each technique once per seed through a task sequence.

    Args:
        dataset: A `data.Dataset`.
        techniques: Keys of `CONTINUAL_TECHNIQUES`; the baseline always runs first.
        seeds: Ints >= 0. Each seed fixes the initial weights, the batch order,
            the tasks (labels or permutations) and the technique's own draws.
        settings: A `ContinualSettings`.
        task_kind: "random-labels" or "permuted".
        progress: Optional object with `run_started(index, total, technique,
            seed)`, `task_ended(task, tasks)` and `finished()`.

    Returns:
        A `ContinualComparison`; all but `seconds` is the same for the same input.

    Raises:
        ValueError: An unknown technique or task kind, or no seeds.

    Example:
    >>> from kerastroke.compare.data import load_bundled
    >>> result = run_continual(load_bundled("wine"), ["stroke"], seeds=[0],
    ...                        settings=ContinualSettings(tasks=2, epochs=1))
    >>> [(run.technique, len(run.accuracy)) for run in result.runs]
    [('baseline', 2), ('stroke', 2)]
    """
    techniques = [BASELINE] + [t for t in dict.fromkeys(techniques) if t != BASELINE]
    for technique in techniques:
        if technique != BASELINE and technique not in CONTINUAL_TECHNIQUES:
            raise ValueError(
                f"Unknown technique {technique!r}; choose from {', '.join(CONTINUAL_TECHNIQUES)}."
            )
    if task_kind not in TASK_KINDS:
        raise ValueError(f"Unknown task kind {task_kind!r}; choose from {', '.join(TASK_KINDS)}.")
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError(f"seeds must name at least one seed, got {seeds!r}.")
    total = len(seeds) * len(techniques)
    on_task = None if progress is None else (lambda task: progress.task_ended(task, settings.tasks))

    runs = []
    with experiment.one_torch_thread():
        trainer = None
        for seed in seeds:
            tasks = make_tasks(dataset, task_kind, settings, seed)
            if trainer is None:
                trainer = ContinualTrainer(dataset, settings, len(tasks[0].x_train))
            weights = experiment.initial_weights(
                dataset.features, dataset.classes, settings.hidden_units, seed
            )
            for technique in techniques:
                if progress is not None:
                    progress.run_started(len(runs), total, technique, seed)
                runs.append(trainer.run(technique, seed, weights, tasks, on_task))
    if progress is not None:
        progress.finished()
    return ContinualComparison(
        dataset=dataset.describe(),
        settings=settings,
        task_kind=task_kind,
        seeds=seeds,
        techniques=techniques,
        runs=runs,
    )
