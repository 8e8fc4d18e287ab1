"""The subjects: models with many variables, the six presets, the variables a preset targets.

Only kerastroke's public API is used (the presets, `schedules`, `strip`), so
the benchmark measures whatever engine sits underneath.
"""

import keras
import numpy as np

import kerastroke
from benchmarks.report import LABELS  # noqa: F401 - the presets' names with parameters

# The six presets with fixed seeds and the parameters of issue 12's table.
PRESETS = {
    "Stroke": lambda: kerastroke.Stroke(seed=0),
    "Pruning": lambda: kerastroke.Pruning(seed=0),
    "NeuroPlast": lambda: kerastroke.NeuroPlast(seed=0),
    "MagnitudePruning": lambda: kerastroke.MagnitudePruning(0.5, seed=0),
    "SET": lambda: kerastroke.SET(0.5, 0.3, seed=0),
    "ShrinkPerturb": lambda: kerastroke.ShrinkPerturb(0.4, 0.1, seed=0),
}
# Whether each preset targets biases by default (DESIGN.md and the presets' docstrings);
# a callback's own `biases` attribute, where it has one, wins.
BIASES_BY_DEFAULT = {"ShrinkPerturb": True}

# The 2.x presets with their default parameters, for the comparison with kerastroke 2.1.1
# and the memory section (issue 4).
LEGACY_PRESETS = {"Stroke": kerastroke.Stroke, "Pruning": kerastroke.Pruning, "NeuroPlast": kerastroke.NeuroPlast}


def takes_biases(name, callback):
    """Whether `callback` (preset `name`) targets variables named `bias`."""
    return bool(getattr(callback, "biases", BIASES_BY_DEFAULT.get(name, False)))


def targeted(model, biases):
    """The variables a preset with default `layers` targets, by DESIGN.md's contract.

    Trainable floating-point variables: kernels (2 or more dimensions, not
    named `bias`: MultiHeadAttention's query, key and value biases are 2-d),
    and with `biases` also the variables named `bias`. Counted from the
    model, not asked of the library, so the count means the same for every
    engine.
    """
    found = []
    for variable in model.trainable_variables:
        if not np.issubdtype(np.dtype(keras.backend.standardize_dtype(variable.dtype)), np.floating):
            continue
        is_bias = variable.name == "bias"
        if (len(variable.shape) >= 2 and not is_bias) or (biases and is_bias):
            found.append(variable)
    return found


def dense_stack(layers, width, seed=0):
    """`layers` Dense(width) layers on `width` inputs, each with a bias (Glorot-uniform kernels)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((width,))] + [keras.layers.Dense(width) for _ in range(layers)],
        name=f"dense_{layers}x{width}",
    )


def transformer(blocks, d_model, heads, mlp, sequence, classes=10, seed=0):
    """Pre-norm encoder blocks: LayerNorm, MultiHeadAttention, residual; LayerNorm, MLP, residual.

    Each block has six kernels: query, key, value and output projections of
    `MultiHeadAttention` (3-d) and the MLP's two Dense kernels; a Dense head
    on the pooled sequence adds one more. LayerNorm's gamma and beta are not
    targeted (1-d, not named `bias`).
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((sequence, d_model))
    x = inputs
    for _ in range(blocks):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.MultiHeadAttention(heads, d_model // heads)(h, h)
        x = keras.layers.Add()([x, h])
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(mlp, activation="gelu")(h)
        h = keras.layers.Dense(d_model)(h)
        x = keras.layers.Add()([x, h])
    outputs = keras.layers.Dense(classes)(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs, name=f"transformer_{blocks}x{d_model}")


def conv_net(side, channels, classes=10, seed=0):
    """A small CNN: pairs of 3x3 Conv2D (the first of each with BatchNormalization), max-pooling
    between pairs, global average pooling and a Dense head."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((side, side, 3))]
    for index, width in enumerate(channels):
        if index:
            layers.append(keras.layers.MaxPooling2D())
        layers += [
            keras.layers.Conv2D(width, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
        ]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(classes)]
    return keras.Sequential(layers, name="conv")


def build(kind, **sizes):
    """A model of `kind` (dense, transformer, conv) with the given sizes, compiled with Adam.

    SET resets the optimizer state of the entries it changes, so the
    optimizer is built with its slots, as after the first training step.
    """
    builders = {"dense": dense_stack, "transformer": transformer, "conv": conv_net}
    model = builders[kind](**sizes)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def describe(kind, sizes):
    """A short human description of a model spec."""
    if kind == "dense":
        return f"Dense {sizes['layers']} x {sizes['width']}x{sizes['width']}"
    if kind == "transformer":
        return (f"Transformer, {sizes['blocks']} blocks, d_model {sizes['d_model']}, {sizes['heads']} heads, "
                f"MLP {sizes['mlp']}, sequence {sizes['sequence']}")
    return f"Conv2D, {sizes['side']}x{sizes['side']}x3 input, channels {'-'.join(map(str, sizes['channels']))}"


# -- the single-kernel model of the 2.1.1 and memory sections ---------------------------


def dense_model(side, seed=0):
    """Dense(side) on `side` inputs, with a bias: kerastroke 2.1.1 reads both.

    The kernel has Keras's default Glorot-uniform initial values, so every
    entry is within +-sqrt(6 / (2 * side)): inside Pruning's default +-0.2
    (it zeroes the whole kernel), and about 0.01 / limit of them inside
    NeuroPlast's default +-0.01.
    """
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((side,)), keras.layers.Dense(side)], name=f"dense_{side}")


def applied(preset_class, model, seed=0):
    """A preset bound to `model` with `set_model`, as a user calling `apply` would."""
    callback = preset_class(seed=seed)
    callback.set_model(model)
    return callback


def kernel_of(model):
    return model.layers[-1].kernel


def changed_fraction(before, after):
    """Fraction of entries whose value differs (NaN-safe: NaN == NaN counts as unchanged)."""
    before, after = np.asarray(before), np.asarray(after)
    same = (before == after) | (np.isnan(before) & np.isnan(after))
    return float(1.0 - np.count_nonzero(same) / same.size) if same.size else 0.0
