"""Per-variable inputs that selectors may declare, measured on a probe batch.

A selector that needs more than the weights says so with a class attribute,
`inputs = ("gradient",)`; the callback then measures each named input for
every targeted variable before an application, on the `probe` batch its user
gave, and the writer passes it to the selector as a keyword argument.

- `"gradient"`: the gradient of the model's compiled loss on the probe batch
  with respect to the variable, through the backend's own differentiation
  (`tf.GradientTape`, `jax.grad`, torch autograd).
"""

import keras
import numpy as np
from keras import ops

INPUTS = ("gradient",)


def declared(selector):
    """The names of the inputs `selector` declares (its `inputs` attribute), checked.

    Raises:
        ValueError: if a name is not one of `INPUTS`.
        TypeError: if `inputs` is not a tuple or list of strings.
    """
    names = getattr(selector, "inputs", ())
    if isinstance(names, str) or not isinstance(names, (tuple, list)):
        raise TypeError(
            f"A selector's `inputs` must be a tuple of input names, such as ('gradient',). "
            f"Received: inputs={names!r} on {selector!r}"
        )
    for name in names:
        if name not in INPUTS:
            raise ValueError(
                f"Selector {selector!r} declares the input {name!r}; the inputs kerastroke "
                f"measures are {INPUTS}."
            )
    return tuple(names)


def check_probe(probe):
    """`probe` as `(x, y)` of NumPy arrays (nested structures of them allowed), or None.

    Raises:
        TypeError: if `probe` is not a pair.
        ValueError: if it holds no samples, or `x` and `y` differ in length.
    """
    if probe is None:
        return None
    probe = _from_json(probe)
    if not isinstance(probe, (tuple, list)) or len(probe) != 2:
        raise TypeError(
            "`probe` must be a pair `(x, y)` of arrays: inputs and targets of a batch the loss "
            f"is measured on. Received: probe={_short(probe)}"
        )
    x, y = (keras.tree.map_structure(ops.convert_to_numpy, part) for part in probe)
    lengths = {len(leaf) if np.ndim(leaf) else 0 for leaf in keras.tree.flatten((x, y))}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            "`probe` must hold at least one sample, with as many targets as inputs. "
            f"Received: probe with leading dimensions {sorted(lengths)}"
        )
    return x, y


def _from_json(value):
    """Arrays in Keras's JSON form (`{"class_name": "__numpy__", ...}`, as a
    config saved with `keras.saving.serialize_keras_object` holds them) as arrays."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        return keras.saving.deserialize_keras_object(value)
    if isinstance(value, dict):
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_from_json(item) for item in value)
    return value


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _loss_function(model, x, y):
    """`values of model.trainable_variables -> loss on (x, y)`, without side effects.

    The forward pass runs in inference mode (`training=False`: no dropout,
    batch normalization from its moving statistics), and every variable the
    call or the loss would update (moving statistics, loss metrics) is read
    from, and written into, a `StatelessScope` that is then dropped.
    """
    trainable = model.trainable_variables
    fixed = [(v, v.value) for v in (*model.non_trainable_variables, *model.metrics_variables)]

    def loss_of(values):
        with keras.StatelessScope(state_mapping=[*zip(trainable, values), *fixed], collect_losses=True):
            y_pred = model(x, training=False)
            # `_compute_loss` is Keras's own wrapper of `compute_loss`: it also
            # serves user overrides written without the `training` argument.
            return model._compute_loss(x=x, y=y, y_pred=y_pred, training=False)

    return loss_of


def gradients(model, probe_x, probe_y, variables):
    """The gradient of the model's compiled loss on `(probe_x, probe_y)` for each variable.

    The loss is the one `fit` minimises (`model.compute_loss`: the compiled
    loss plus regularization and `add_loss` terms), measured in inference
    mode; nothing in the model changes.

    Args:
        model: A compiled, built Keras model.
        probe_x: Inputs of the probe batch, as `model(probe_x)` takes them.
        probe_y: Its targets, as the compiled loss takes them.
        variables: Trainable variables of `model`.

    Returns:
        A list of tensors, one per variable, of its shape and dtype (zeros
        where the loss does not depend on it).

    Raises:
        ValueError: if the model is not compiled or a variable is not one of
            its trainable variables.

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    >>> model.compile("sgd", "mse")
    >>> _ = model.layers[0].kernel.assign([[1.0], [0.0]])
    >>> x, y = np.array([[1.0, 2.0]], "float32"), np.array([[0.0]], "float32")
    >>> # L = (w1 + 2 w2)^2: dL/dw = 2 (w1 + 2 w2) x = [2, 4]
    >>> [g.tolist() for g in map(keras.ops.convert_to_numpy, gradients(model, x, y, model.weights))]
    [[[2.0], [4.0]]]
    """
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"kerastroke: gradients need the loss of model '{model.name}', which is not compiled. "
            "Call `model.compile(optimizer, loss=...)` first; in a custom training loop, compile "
            "the model with the loss the loop minimises."
        )
    trainable = model.trainable_variables
    where = {id(v): i for i, v in enumerate(trainable)}
    missing = [v.path for v in variables if id(v) not in where]
    if missing:
        raise ValueError(
            f"kerastroke: gradients are taken for trainable variables of model '{model.name}' only. "
            f"Received: {missing}"
        )
    loss_of = _loss_function(model, probe_x, probe_y)
    values = [v.value for v in trainable]
    wanted = [where[id(v)] for v in variables]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        grads = _tensorflow(loss_of, values, wanted)
    elif backend == "jax":
        grads = _jax(loss_of, values, wanted)
    elif backend == "torch":
        grads = _torch(loss_of, values, wanted)
    else:
        raise NotImplementedError(f"kerastroke: gradients on the {backend!r} backend")
    return [ops.zeros(v.shape, v.dtype) if g is None else ops.cast(g, v.dtype) for v, g in zip(variables, grads)]


def _tensorflow(loss_of, values, wanted):
    import tensorflow as tf

    values = [tf.convert_to_tensor(v) for v in values]
    with tf.GradientTape() as tape:
        tape.watch([values[i] for i in wanted])
        loss = loss_of(values)
    return tape.gradient(loss, [values[i] for i in wanted])


def _jax(loss_of, values, wanted):
    import jax

    def loss_of_wanted(chosen):
        full = list(values)
        for i, value in zip(wanted, chosen):
            full[i] = value
        return loss_of(full)

    return jax.grad(loss_of_wanted)([values[i] for i in wanted])


def _torch(loss_of, values, wanted):
    import torch

    values = [v.detach() for v in values]
    chosen = [values[i].requires_grad_(True) for i in wanted]
    with torch.enable_grad():
        loss = loss_of(values)
        if not loss.requires_grad:  # the loss depends on none of them
            return [None] * len(chosen)
        return torch.autograd.grad(loss, chosen, allow_unused=True)


def measure(names, model, probe, variables):
    """`{id(variable): {name: tensor}}`: each named input of every variable, on `probe`."""
    measured = {id(v): {} for v in variables}
    if "gradient" in names:
        for variable, gradient in zip(variables, gradients(model, *probe, variables)):
            measured[id(variable)]["gradient"] = gradient
    return measured
