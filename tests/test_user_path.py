"""What a Keras user meets: unbuilt models, several models, optimizer state and
averages, layer constraints, broken pieces and custom training loops.

Each test runs on the backend selected by KERAS_BACKEND (tensorflow, jax, torch).
"""

import warnings

import keras
import numpy as np
import pytest

from kerastroke import MagnitudePruning, PlasticityCallback, Rule, mutators, schedules, selectors
from tests import models

MARK = np.float32(models.MARK)


def _mark(amount=0.5, **kwargs):
    """A callback writing MARK into `amount` of every kernel's entries."""
    rule = Rule(selectors.random_fraction(), mutators.constant(models.MARK), schedules.constant(amount))
    return PlasticityCallback([rule], seed=0, **kwargs)


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def _kernels(model):
    return [v for v in model.trainable_variables if v.name == "kernel"]


def _data(inputs=6, outputs=3, samples=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, inputs)).astype("float32")
    y = rng.normal(size=(samples, outputs)).astype("float32")
    return x, y


def _built_mlp(name="mlp"):
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="hidden"), keras.layers.Dense(3, name="out")], name=name
    )
    for variable in model.weights:  # weights set here: no entry equals MARK
        variable.assign(np.full(variable.shape, 0.25, "float32"))
    return model


def _error_text(info):
    return str(info.value) + " ".join(getattr(info.value, "__notes__", []))


# -- 5. optimizer slots found by identity ------------------------------------------


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.Adam(0.01, amsgrad=True),
        lambda: keras.optimizers.AdamW(0.01),
        lambda: keras.optimizers.SGD(0.01, momentum=0.9),
        lambda: keras.optimizers.RMSprop(0.01, momentum=0.9, centered=True),
        lambda: keras.optimizers.Adagrad(0.01),
    ],
    ids=["adam", "adam_amsgrad", "adamw", "sgd_momentum", "rmsprop_centered", "adagrad"],
)
def test_reset_optimizer_touches_only_the_targeted_variable_s_slots(make_optimizer):
    # Layers `a` and `a_kernel`: `a/kernel`'s slots are named `a_kernel_<slot>`,
    # a prefix of `a_kernel/kernel`'s (`a_kernel_kernel_<slot>`), and both are 3x3.
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(3, name="a_kernel")]
    )
    optimizer = make_optimizer()
    model.compile(optimizer, "mse")
    model.fit(*_data(3, 3), epochs=1, batch_size=8, verbose=0)  # every slot moves away from its start
    target = model.get_layer("a").kernel
    index = optimizer._get_variable_index(target)
    own = [
        slots[index] for slots in vars(optimizer).values()
        if isinstance(slots, list) and len(slots) == len(model.trainable_variables)
        and slots is not optimizer._trainable_variables
        and isinstance(slots[index], keras.Variable)
    ]
    assert own  # every optimizer here keeps per-entry state
    before = {id(v): _values([v])[0] for v in optimizer.variables}

    callback = _mark(1.0, layers=["a"], reset_optimizer=True)
    callback.set_model(model)
    callback.apply(0)

    for variable in optimizer.variables:
        value = _values([variable])[0]
        if any(variable is slot for slot in own):
            assert np.all(value == 0.0), variable.path
        else:
            assert models.same_bits(before[id(variable)], value), variable.path
