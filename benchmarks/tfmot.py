"""(f), tfmot's side: a virtual environment with tf_keras and tensorflow-model-optimization.

tfmot prunes only tf_keras (Keras 2) models, so it runs in its own virtual
environment, created on first use under the cache directory with the same
TensorFlow version as this one, and reused while that version stays the
same. The worker gets the very arrays kerastroke's side trained on (written
to a temporary directory for it).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORKER = Path(__file__).resolve().parent / "tfmot_worker.py"


class Unavailable(RuntimeError):
    """tfmot could not be installed or run; the message says why."""


def requirements(tf_version):
    major_minor = ".".join(tf_version.split(".")[:2])
    return [f"tensorflow=={tf_version}", f"tf_keras=={major_minor}.*", "tensorflow-model-optimization"]


def _run(command, log_path, timeout, env=None):
    with open(log_path, "a") as log_file:
        log_file.write(f"$ {' '.join(map(str, command))}\n")
        log_file.flush()
        try:
            completed = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"`{' '.join(map(str, command))}` did not finish in {timeout} s; log: {log_path}") from None
    if completed.returncode != 0:
        tail = "".join(Path(log_path).read_text().splitlines(keepends=True)[-25:])
        raise Unavailable(f"`{' '.join(map(str, command))}` exited {completed.returncode}; log {log_path} ends:\n{tail}")


def ensure_venv(cache_dir, tf_version, log=print):
    """The tfmot environment's python, and how it was obtained; raises Unavailable."""
    cache_dir = Path(cache_dir)
    venv = cache_dir / "tfmot-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".benchmark-requirements"
    wanted = requirements(tf_version)
    if python.exists() and stamp.is_file() and stamp.read_text().split("\n") == wanted:
        return python, {"venv": str(venv), "requirements": wanted, "installed_now": False}
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    log_path = cache_dir / "tfmot-install.log"
    log_path.write_text("")
    log(f"  creating {venv} and installing {' '.join(wanted)} (log: {log_path}) ...")
    start = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)], log_path, timeout=300)
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *wanted], log_path, timeout=1800)
    stamp.write_text("\n".join(wanted))
    return python, {"venv": str(venv), "requirements": wanted, "installed_now": True,
                    "install_s": time.perf_counter() - start}


def run(cache_dir, x, y, spec, tf_version, log=print):
    python, install = ensure_venv(cache_dir, tf_version, log=log)
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    env.update(TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory(prefix="kerastroke-tfmot-") as scratch:
        data_path = Path(scratch) / "data.npz"
        np.savez(data_path, x=x, y=y)
        command = [str(python), "-I", str(WORKER), str(data_path), json.dumps(spec)]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise Unavailable(f"the tfmot worker exited {completed.returncode}:\n{completed.stderr[-3000:]}")
    return {"install": install, "spec": spec, **json.loads(lines[-1])}
