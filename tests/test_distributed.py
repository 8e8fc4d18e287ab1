"""Distributed training: every replica holds identical values after each application.

MirroredStrategy needs two logical CPU devices, which must be configured
before TensorFlow starts, so each case runs in its own process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "mirrored.py"


@pytest.mark.parametrize(
    "frequency, changed_per_epoch",
    [
        # 16*8 + 2*16 = 160 kernel entries; Stroke's 20% of each kernel: 26 + 6.
        ("epoch", 32),
        # 4 batches per epoch, applied at optimizer steps 2 and 4 (then 6 and 8).
        ("2", 64),
    ],
)
def test_mirrored_replicas_stay_identical(frequency, changed_per_epoch):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    run = subprocess.run(
        [sys.executable, str(SCRIPT), frequency], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["checks"] > 0
    assert result["disagreements"] == 0
    assert result["stroke_changed"] == [changed_per_epoch, changed_per_epoch]
