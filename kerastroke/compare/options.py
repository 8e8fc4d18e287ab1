"""What `kerastroke compare` can run, by name; importable without Keras.

The command line reads these names, defaults and descriptions to build its
`--help`, which must not wait for a deep-learning framework to import. Keras
and the presets are imported only when a technique is built.
"""

import dataclasses
import importlib

BASELINE = "baseline"


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
class Technique:
    """One preset of `kerastroke` with the parameters the comparison gives it.

    Attributes:
        preset: The preset's class name in the `kerastroke` package.
        params: Keyword arguments beside `seed`; empty means the preset's defaults.
        about: What it does, in a few words, for `--help`.
        backend_draws: Whether the preset draws values with the layer's Keras
            initializer, whose numbers differ between backends: its results
            then differ between TensorFlow, JAX and PyTorch for the same seed.

    Example:
    >>> Technique("SET", {"sparsity": 0.9}, "sparse training").call
    'SET(sparsity=0.9)'
    """

    preset: str
    params: dict
    about: str
    backend_draws: bool = False

    @property
    def call(self):
        """The constructor call as a user would write it, seed left out."""
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{self.preset}({args})"

    def build(self, seed):
        """The preset callback with these parameters and `seed`."""
        preset = getattr(importlib.import_module("kerastroke"), self.preset)
        return preset(seed=seed, **self.params)


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
        backend_draws=True,
    ),
    "shrink_perturb": Technique(
        "ShrinkPerturb",
        {"shrink": 0.4, "perturb": 0.1, "period": 6},
        "w = 0.4 w + 0.1 fresh draw, every 6th epoch (Ash and Adams)",
        backend_draws=True,
    ),
}

# What a bare `kerastroke compare` runs: the three 2.x presets, the ones the README's table
# shows, so that the default run stays under a minute; `--techniques all` runs every one.
DEFAULT_TECHNIQUES = ("stroke", "pruning", "neuroplast")
ALL = "all"


def technique_names(text):
    """The technique names in one command-line token, in order.

    Accepts comma-separated lists, any case, and `-` for `_`; `all` stands
    for every technique and `baseline` (always run) is allowed and dropped.

    Raises:
        ValueError: A name that is not a technique, naming it and the choices.

    Example:
    >>> technique_names("Stroke,shrink-perturb")
    ['stroke', 'shrink_perturb']
    """
    names = []
    for part in text.split(","):
        name = part.strip().lower().replace("-", "_")
        if not name or name == BASELINE:
            continue
        if name == ALL:
            names.extend(TECHNIQUES)
        elif name in TECHNIQUES:
            names.append(name)
        else:
            raise ValueError(
                f"unknown technique {part.strip()!r}; choose from {', '.join(TECHNIQUES)} or {ALL}"
            )
    return names
