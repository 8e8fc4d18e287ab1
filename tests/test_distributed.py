"""Distributed training: every replica holds identical values after each application.

Each backend's own multi-device API: tf.distribute.MirroredStrategy on
TensorFlow, keras.distribution.DataParallel on JAX (Keras's distribution API
exists only there). Both need two CPU devices, which must be configured
before the backend starts, so each case runs in its own process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

SCRIPTS = Path(__file__).parent / "scripts"


def _run(script, frequency):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / script), frequency], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "frequency, changed_per_epoch",
    [
        # 16*8 + 2*16 = 160 kernel entries; Stroke's 20% of each kernel: 26 + 6.
        ("epoch", 32),
        # 4 batches per epoch, applied at optimizer steps 2 and 4 (then 6 and 8).
        ("2", 64),
    ],
)
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute strategies exist on TensorFlow only"
)
def test_mirrored_replicas_stay_identical(frequency, changed_per_epoch):
    result = _run("mirrored.py", frequency)
    assert result["replicas"] == 2
    assert result["checks"] > 0
    assert result["disagreements"] == 0
    assert result["stroke_changed"] == [changed_per_epoch, changed_per_epoch]
    # The persistent MagnitudePruning's masks hold on every replica: once half
    # the kernels are zero, they stay so through every optimizer step.
    assert result["held_sparsity"] == [0.5, 0.5]
    sparsity = result["batch_sparsity"]
    first = sparsity.index(0.5)
    assert first < len(sparsity) - 1
    assert min(sparsity[first:]) >= 0.5


@pytest.mark.parametrize(
    "frequency, changed_per_epoch, held_sparsity",
    [
        # Stroke as above. The held MagnitudePruning ramps 0 -> 0.6 over steps 0..8
        # (power 1): 0.075 at epoch 1, below the other rule's constant 0.5.
        ("epoch", 32, [0.5, 0.5]),
        # At steps 2, 4 (epoch 1) and 6, 8 (epoch 2): 0.6 * 8/8 at the last one.
        ("2", 64, [0.5, 0.6]),
    ],
)
@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="keras.distribution (DataParallel) exists on JAX only"
)
def test_data_parallel_shards_stay_identical_and_zeros_stay_held(frequency, changed_per_epoch, held_sparsity):
    result = _run("data_parallel.py", frequency)
    assert result["devices"] == 2
    assert result["copies"] == [2]  # every variable lives on both devices
    assert result["checks"] > 0
    assert result["disagreements"] == 0
    assert result["stroke_changed"] == [changed_per_epoch, changed_per_epoch]
    assert result["held_sparsity"] == held_sparsity
    # Once pruned to half, the kernels stay at least half zero through every
    # optimizer step (persistent masks), and end where the last application left them.
    sparsity = result["batch_sparsity"]
    first = next(i for i, s in enumerate(sparsity) if s >= 0.5)
    assert first < len(sparsity) - 1
    assert min(sparsity[first:]) >= 0.5
    assert result["final_sparsity"] == held_sparsity[-1]
