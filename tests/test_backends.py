"""What holds the same on every backend, checked against values written out.

`make test` runs the suite once per backend (TensorFlow, JAX, PyTorch); each
run compares its results with the same digests below, so passing on all
three means the same seed gave the same bits on all three.
"""

import hashlib
import os
import subprocess
import sys

import keras
import ml_dtypes
import numpy as np
import pytest

from kerastroke import SET, MagnitudePruning, NeuroPlast, Pruning, Stroke, mutators


def _model(dtype="float32"):
    """A 6-16-4 MLP whose weights come from NumPy, the same on every backend."""
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, name="hidden", dtype=dtype),
            keras.layers.Dense(4, name="out", dtype=dtype),
        ],
        name="same_everywhere",
    )
    model.compile(keras.optimizers.SGD(0.01), "mse")  # SET resets optimizer state: it needs one
    rng = np.random.default_rng(2024)
    numpy_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    for variable in model.weights:
        variable.assign(rng.uniform(-0.3, 0.3, size=variable.shape).astype(numpy_dtype))
    return model


def _bits(variable):
    value = keras.ops.convert_to_tensor(variable)
    if keras.backend.backend() == "torch" and keras.backend.standardize_dtype(variable.dtype) == "bfloat16":
        import torch

        return value.view(torch.int16).detach().cpu().numpy().tobytes()
    return np.asarray(keras.ops.convert_to_numpy(value)).tobytes()


def _digest(model):
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(_bits(variable))
    return digest.hexdigest()[:16]


def _apply(model, callback, steps=(0, 1, 2)):
    callback.set_model(model)
    callback.on_train_begin()
    return [callback.apply(step)["changed"] for step in steps]


# Digests of every weight after three applications with seed 7, and the
# entries changed per application. Identical on TensorFlow, JAX and PyTorch.
CASES = {
    # 30% of each kernel: round(0.3 * 96) + round(0.3 * 64) = 29 + 19.
    "stroke": (lambda: Stroke(volatility_ratio=0.3, seed=7), "a7ba307d3b7a0bcc", [48, 48, 48]),
    # Biases too (5 + 1); set to 0.0, an entry already zero does not count as changed.
    "stroke_value": (
        lambda: Stroke(value=0.0, volatility_ratio=0.3, do_biases=True, seed=7), "7b3c7360582d5fb9", [54, 38, 25]
    ),
    "pruning": (lambda: Pruning(min_value=-0.05, max_value=0.05, seed=7), "522df10fa829fe49", [23, 0, 0]),
    "neuroplast": (lambda: NeuroPlast(min_value=-0.1, max_value=0.1, seed=7), "e2c9ac32165f6041", [52, 52, 52]),
    # Half of each kernel: 48 + 32, then held.
    "magnitude_pruning": (lambda: MagnitudePruning(0.5, seed=7), "44d7b75e36a0f222", [80, 0, 0]),
    # Prune 80, then drop round(0.3 * 48) + round(0.3 * 32) = 24 and grow as many.
    "set": (lambda: SET(0.5, 0.3, grow=mutators.uniform(-0.1, 0.1), seed=7), "2ad7c0dc3692de43", [104, 48, 48]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_seed_gives_the_same_bits_on_every_backend(case):
    build, digest, changed = CASES[case]
    model = _model()
    assert _apply(model, build()) == changed
    assert _digest(model) == digest


def test_bfloat16_nans_keep_their_bits_through_an_application():
    # A quiet NaN (0x7fc0), a negative one (0xffc0) and one with a payload
    # (0x7f81): entries a rule does not select keep their bits exactly.
    model = _model("bfloat16")
    kernel = model.get_layer("hidden").kernel
    bits = np.asarray(kernel.numpy(), dtype=ml_dtypes.bfloat16).view(np.uint16).copy()
    nans = np.array([0x7FC0, 0xFFC0, 0x7F81], dtype=np.uint16)
    bits.reshape(-1)[:3] = nans
    kernel.assign(_to_tensor(bits.view(ml_dtypes.bfloat16)))
    changed = _apply(model, Pruning(min_value=-0.05, max_value=0.05, seed=7), steps=(0,))
    assert changed[0] > 0
    after = np.frombuffer(_bits(kernel), dtype=np.uint16)
    assert list(after[:3]) == list(nans)


def _to_tensor(array):
    from kerastroke.core import arrays

    return arrays.tensor(array)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="64-bit mode is a switch of JAX's only")
def test_float64_on_jax_without_64_bit_mode_is_refused_with_what_to_do():
    # JAX would turn float64 weights into float32 silently; kerastroke says so instead.
    script = (
        "import numpy as np\n"
        "from kerastroke import selectors\n"
        "try:\n"
        "    selectors.random_fraction()(np.zeros(4), 0.5, 0)\n"
        "except TypeError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "0"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "JAX_ENABLE_X64=1" in run.stdout
