"""Test settings shared by every module: quiet TensorFlow, Hypothesis profiles."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402

# Scripts run in their own processes (they configure devices before TF starts).
collect_ignore = ["scripts"]
from hypothesis import HealthCheck, settings  # noqa: E402

# Eager backend ops make the first examples slow; time is checked by the suite, not per example.
# On JAX every new shape or dtype an example draws compiles its programs
# afresh (a few tenths of a second each, most of the JAX suite's time), so
# the default profile runs fewer examples there (15 against 40); the properties are
# the same on every backend, and TensorFlow and PyTorch run them all.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=15 if keras.backend.backend() == "jax" else 40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def op_determinism():
    """The backend's deterministic kernels for one test, then the previous mode.

    JAX on the CPU is deterministic as it is; TensorFlow and PyTorch have a switch.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config

        was_enabled = tf_config.is_op_determinism_enabled()
        tf.config.experimental.enable_op_determinism()
        yield
        if not was_enabled:
            tf_config.disable_op_determinism()
    elif backend == "torch":
        import torch

        was_enabled = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        yield
        torch.use_deterministic_algorithms(was_enabled)
    else:
        yield
