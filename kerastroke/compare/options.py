"""What `kerastroke compare` can run, by name; importable without Keras.

The command line reads these names, defaults and descriptions to build its
`--help`, which must not wait for a deep-learning framework to import. Keras
and the presets are imported only when a technique is built.
"""

import dataclasses
import importlib
import math

BASELINE = "baseline"
STATIONARY = "stationary"
CONTINUAL = "continual"
SCENARIOS = (STATIONARY, CONTINUAL)
RANDOM_LABELS = "random-labels"
PERMUTED = "permuted"
TASK_KINDS = (RANDOM_LABELS, PERMUTED)


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


@dataclasses.dataclass(frozen=True)
class ContinualSettings:
    """How the continual scenario builds and trains its model, for every technique.

    The defaults are chosen so that the baseline visibly loses plasticity on
    the digits' random-label tasks within a few minutes on two CPU cores:
    Adam at 0.03 (Keras's default 0.001 keeps learning each task for longer
    than such a run lasts) and 15 epochs per task.

    Attributes:
        tasks: Tasks in the sequence.
        epochs: Epochs per task (the fixed training budget of every task).
        hidden_units: Width of the one hidden ReLU layer.
        batch_size: Samples per optimizer step.
        learning_rate: Adam's learning rate.
        samples: Training images every task trains on (at most the training
            split): relabelled at random, or permuted with their labels.
        probe_samples: At most this many of a task's training inputs form the
            probe batch that dormant units are measured on.
        dormant_threshold: tau: a unit is dormant when its mean |activation|
            over the probe batch, divided by its layer's mean, is <= tau
            (ReDo's definition; 0 for ReLU: exactly silent).
    """

    tasks: int = 12
    epochs: int = 15
    hidden_units: int = 64
    batch_size: int = 32
    learning_rate: float = 0.03
    samples: int = 512
    probe_samples: int = 512
    dormant_threshold: float = 0.0

    def __post_init__(self):
        for name in ("tasks", "epochs", "hidden_units", "batch_size", "samples", "probe_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}.")
        for name, least in (("learning_rate", None), ("dormant_threshold", 0.0)):
            value = getattr(self, name)
            good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not good or (value <= 0 if least is None else value < least):
                bound = "> 0" if least is None else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {name}={value!r}.")


@dataclasses.dataclass(frozen=True)
class Technique:
    """One preset of `kerastroke` with the parameters the comparison gives it.

    Attributes:
        preset: The preset's class name in the `kerastroke` package.
        params: Keyword arguments beside `seed`; empty means the preset's defaults.
        about: What it does, in a few words, for `--help`.
        takes: Keyword arguments the scenario supplies when it builds the
            preset (the continual scenario offers `probe`, a batch of the
            first task's training inputs).

    Example:
    >>> Technique("SET", {"sparsity": 0.9}, "sparse training").call
    'SET(sparsity=0.9)'
    """

    preset: str
    params: dict
    about: str
    takes: tuple = ()

    @property
    def call(self):
        """The constructor call as a user would write it, seed left out."""
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{self.preset}({args})"

    def build(self, seed, **context):
        """The preset callback with these parameters and `seed`.

        Args:
            seed: The run's seed.
            **context: What the scenario offers; the entries named in `takes`
                are passed on, the others ignored.
        """
        preset = getattr(importlib.import_module("kerastroke"), self.preset)
        missing = [name for name in self.takes if name not in context]
        if missing:
            raise ValueError(f"{self.preset} needs {', '.join(missing)} from the scenario.")
        taken = {name: context[name] for name in self.takes}
        return preset(seed=seed, **self.params, **taken)


# Stroke, Pruning and NeuroPlast run at the defaults of kerastroke 2.1.1: the comparison shows
# what a 2.x user gets out of the box. The research presets get the parameters their papers use
# where those fit a 20-epoch run of a small model; each choice is said in `about`.
TECHNIQUES = {
    "stroke": Technique("Stroke", {}, "re-draws a random 5% of the weights in ±0.05 every epoch"),
    "pruning": Technique("Pruning", {}, "sets every weight in [-0.2, 0.2] to 0.0 every epoch"),
    "neuroplast": Technique(
        "NeuroPlast", {}, "re-draws every weight in [-0.01, 0.01] in ±0.05 every epoch"
    ),
    "magnitude_pruning": Technique(
        "MagnitudePruning",
        {"sparsity": 0.5},
        "holds the smallest 50% of each kernel at 0.0 from the first epoch's end",
    ),
    "set": Technique(
        "SET",
        {"sparsity": 0.9, "drop_fraction": 0.3},
        "90% sparse kernels; swaps 30% of the kept weights each epoch (Mocanu et al.)",
    ),
    "shrink_perturb": Technique(
        "ShrinkPerturb",
        {"shrink": 0.4, "perturb": 0.1, "period": 6},
        "w = 0.4 w + 0.1 fresh draw, every 6th epoch (Ash and Adams)",
    ),
}

# What a bare `kerastroke compare` runs: the three 2.x presets, the ones the README's table
# shows, so that the default run stays under a minute; `--techniques all` runs every one.
DEFAULT_TECHNIQUES = ("stroke", "pruning", "neuroplast")
ALL = "all"

# The continual scenario (`--scenario continual`): training goes on through a sequence of
# tasks, where plasticity is lost and where the techniques that restore it are meant to help.
# Stroke and NeuroPlast run at their 2.x defaults, as in the stationary table. ShrinkPerturb
# acts every epoch, mildly, as in the continual experiments of Dohare et al. (2024), rather than
# every 6th epoch with shrink 0.4: an application at a task's last epoch would otherwise be
# what that task is scored on. A technique that needs data from the scenario names it in
# `takes`; the first task's inputs are offered as `probe`.
CONTINUAL_TECHNIQUES = {
    "shrink_perturb": Technique(
        "ShrinkPerturb",
        {"shrink": 0.9, "perturb": 0.01, "period": 1},
        "w = 0.9 w + 0.01 fresh draw, every epoch (Ash and Adams; Dohare et al.)",
    ),
    "redo": Technique(
        "ReDo",
        {"threshold": 0.0, "frequency": "epoch"},
        "recycles hidden units silent on a probe batch, every epoch (Sokar et al.)",
        takes=("probe",),
    ),
    "continual_backprop": Technique(
        "ContinualBackprop",
        {"replacement_rate": 1e-3, "decay": 0.99, "maturity": 100, "frequency": 10},
        "replaces the lowest-utility mature units, 1e-3 per step, checked every 10 steps (Dohare et al.)",
        takes=("probe",),
    ),
    "stroke": TECHNIQUES["stroke"],
    "neuroplast": TECHNIQUES["neuroplast"],
}

# Every technique of a scenario runs by default in the continual scenario.
DEFAULT_CONTINUAL_TECHNIQUES = tuple(CONTINUAL_TECHNIQUES)

SCENARIO_TECHNIQUES = {STATIONARY: TECHNIQUES, CONTINUAL: CONTINUAL_TECHNIQUES}
SCENARIO_DEFAULTS = {STATIONARY: DEFAULT_TECHNIQUES, CONTINUAL: DEFAULT_CONTINUAL_TECHNIQUES}


def technique_names(text, table=None):
    """The technique names in one command-line token, in order.

    Accepts comma-separated lists, any case, and `-` for `_`; `all` stands
    for every technique and `baseline` (always run) is allowed and dropped.

    Args:
        text: The token.
        table: The techniques to choose from; None means `TECHNIQUES` (the
            stationary scenario's).

    Raises:
        ValueError: A name that is not a technique, naming it and the choices.

    Example:
    >>> technique_names("Stroke,shrink-perturb")
    ['stroke', 'shrink_perturb']
    """
    table = TECHNIQUES if table is None else table
    names = []
    for part in text.split(","):
        name = part.strip().lower().replace("-", "_")
        if not name or name == BASELINE:
            continue
        if name == ALL:
            names.extend(table)
        elif name in table:
            names.append(name)
        else:
            raise ValueError(
                f"unknown technique {part.strip()!r}; choose from {', '.join(table)} or {ALL}"
            )
    return names
