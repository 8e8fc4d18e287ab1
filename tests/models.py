"""Small models and helpers shared by the integration tests.

Every builder returns a compiled model whose layers have fixed names, so
variable paths are predictable, and `data()` gives a few samples that fit it.
A `Recorder` placed before a plasticity callback in `callbacks=[...]` keeps the
weights exactly as they were right before each application.
"""

import keras
import numpy as np

# A value no initialiser or training step produces: entries equal to it after
# an application are exactly the ones the callback wrote.
MARK = 0.7654321


def _seeded(build):
    """Builders give the same model every run, and on every backend.

    Each backend initialises weights from its own random generator, so the
    kernels (every float variable of 2+ dimensions) are then drawn again from
    NumPy, Glorot-uniform over their last two dimensions. Biases and
    normalisation statistics keep their constant initial values.
    """

    def seeded_build():
        keras.utils.set_random_seed(1234)
        model = build()
        rng = np.random.default_rng(1234)
        for variable in model.weights:
            if len(variable.shape) >= 2 and "float" in str(variable.dtype):
                fan_in, fan_out = variable.shape[-2], variable.shape[-1]
                receptive = int(np.prod(variable.shape[:-2], dtype=np.int64))
                limit = np.sqrt(6.0 / (receptive * (fan_in + fan_out)))
                values = rng.uniform(-limit, limit, size=variable.shape)
                variable.assign(values.astype(keras.backend.standardize_dtype(variable.dtype)))
        return model

    seeded_build.__name__ = build.__name__
    seeded_build.__doc__ = build.__doc__
    return seeded_build


def _compile(model):
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def data(model, samples=16, seed=0):
    """Inputs and targets of the right shapes and dtypes for `model`."""
    rng = np.random.default_rng(seed)
    spec = model.inputs[0] if getattr(model, "inputs", None) else None
    if spec is not None and "int" in str(spec.dtype):
        x = rng.integers(0, VOCABULARY, size=(samples,) + tuple(spec.shape[1:])).astype("int32")
    else:
        shape = tuple(spec.shape[1:]) if spec is not None else (6,)
        x = rng.normal(size=(samples,) + shape).astype("float32")
    outputs = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else 3
    y = rng.normal(size=(samples, outputs)).astype("float32")
    return x, y


@_seeded
def mlp_sequential():
    return _compile(
        keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, name="hidden"),
                keras.layers.Dense(5, name="middle"),
                keras.layers.Dense(3, name="out"),
            ],
            name="mlp",
        )
    )


@_seeded
def mlp_functional():
    inputs = keras.Input((6,), name="x")
    left = keras.layers.Dense(4, name="left")(inputs)
    right = keras.layers.Dense(5, name="right")(inputs)
    merged = keras.layers.Concatenate(name="merge")([left, right])
    outputs = keras.layers.Dense(3, name="out")(merged)
    return _compile(keras.Model(inputs, outputs, name="functional"))


class SmallMLP(keras.Model):
    """A subclassed model: two Dense layers created in __init__."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, name="hidden")
        self.out = keras.layers.Dense(3, name="out")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


@_seeded
def mlp_subclassed():
    model = SmallMLP(name="subclassed")
    model(np.zeros((1, 6), "float32"))
    return _compile(model)


@_seeded
def nested():
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(7, name="inner_a"), keras.layers.Dense(4, name="inner_b")],
        name="inner",
    )
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3, name="out")(inner(inputs))
    return _compile(keras.Model(inputs, outputs, name="outer"))


def _sequence(layer, name, input_shape=(5, 4)):
    inputs = keras.Input(input_shape)
    outputs = keras.layers.Dense(2, name="out")(layer(inputs))
    return _compile(keras.Model(inputs, outputs, name=name))


@_seeded
def lstm():
    return _sequence(keras.layers.LSTM(6, name="lstm"), "lstm_model")


@_seeded
def gru():
    return _sequence(keras.layers.GRU(6, name="gru"), "gru_model")


@_seeded
def attention():
    inputs = keras.Input((5, 4))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")(inputs, inputs)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(attended)
    outputs = keras.layers.Dense(2, name="out")(pooled)
    return _compile(keras.Model(inputs, outputs, name="attention"))


def _conv(conv, input_shape, name):
    return _compile(
        keras.Sequential(
            [keras.Input(input_shape), conv, keras.layers.Flatten(name="flat"), keras.layers.Dense(2, name="out")],
            name=name,
        )
    )


@_seeded
def conv1d():
    return _conv(keras.layers.Conv1D(4, 3, name="conv"), (8, 3), "conv1d_model")


@_seeded
def conv2d():
    return _conv(keras.layers.Conv2D(4, 3, name="conv"), (6, 6, 2), "conv2d_model")


@_seeded
def conv3d():
    return _conv(keras.layers.Conv3D(3, 2, name="conv"), (4, 4, 4, 1), "conv3d_model")


VOCABULARY = 20


@_seeded
def embedding():
    inputs = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(VOCABULARY, 4, name="embed")(inputs)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(embedded)
    outputs = keras.layers.Dense(2, name="out")(pooled)
    return _compile(keras.Model(inputs, outputs, name="embedding_model"))


@_seeded
def batch_norm():
    return _compile(
        keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, name="hidden"),
                keras.layers.BatchNormalization(name="bn"),
                keras.layers.Dense(3, name="out"),
            ],
            name="bn_model",
        )
    )


def fit(model, callbacks, epochs=1, samples=16, batch_size=8, shuffle=False, **kwargs):
    """Fits `model` quietly on `data(model)`; returns the History."""
    x, y = data(model, samples)
    return model.fit(
        x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=shuffle,
        callbacks=callbacks, **kwargs
    )


def snapshot(model):
    """`{path: NumPy copy}` of every model variable and optimizer variable."""
    values = {v.path: np.array(keras.ops.convert_to_numpy(v), copy=True) for v in model.weights}
    if getattr(model, "optimizer", None) is not None:
        for v in model.optimizer.variables:
            values[f"optimizer:{v.path}"] = np.array(keras.ops.convert_to_numpy(v), copy=True)
    return values


def matches(path, suffix):
    """True if `path` is `suffix` or ends with '/' + `suffix` ('mlp/out/kernel', 'out/kernel')."""
    return path == suffix or path.endswith("/" + suffix)


def select(paths, suffixes):
    """The paths matching the suffixes; each suffix must match exactly one path."""
    found = set()
    for suffix in suffixes:
        hits = [p for p in paths if matches(p, suffix)]
        assert len(hits) == 1, f"{suffix!r} matches {hits} among {sorted(paths)}"
        found.update(hits)
    return found


def same_bits(a, b):
    """Bit-for-bit equality of two arrays (so NaN == NaN and -0.0 != 0.0)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


class Recorder(keras.callbacks.Callback):
    """Keeps a snapshot of the model before each application of the callbacks after it.

    `before[epoch]` is taken at the end of each epoch; with `every_batch`, also
    `batches[step]` at every optimizer step.
    """

    def __init__(self, every_batch=False):
        super().__init__()
        self.before = {}
        self.batches = {}
        if every_batch:
            self.on_train_batch_end = self._on_train_batch_end

    def on_epoch_end(self, epoch, logs=None):
        self.before[epoch] = snapshot(self.model)

    def _on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.batches[step] = snapshot(self.model)


class BatchLogs(keras.callbacks.Callback):
    """Records, per optimizer step, the batch logs that contain `key`."""

    def __init__(self, key):
        super().__init__()
        self.key = key
        self.seen = {}

    def on_train_batch_end(self, batch, logs=None):
        if logs and self.key in logs:
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self.seen[step] = logs[self.key]
