"""What the benchmark ran on: CPU, cores, memory, load, library versions, the backend."""

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def load_average():
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _git(*args):
    try:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _blas():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    import numpy  # noqa: F401 - threadpoolctl lists the libraries loaded so far
    return [
        {key: info.get(key) for key in ("internal_api", "version", "architecture", "num_threads")}
        for info in threadpool_info()
    ]


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


PACKAGES = ("tensorflow", "jax", "jaxlib", "torch", "keras", "numpy", "numba")


def describe():
    """A JSON-ready description of the machine and the software measured.

    Reads package versions from their metadata, so the parent process does
    not import any backend; each backend's worker adds `backend()`.
    """
    # The library is being changed while benchmarks run: say which state was measured.
    changed = _git("status", "--porcelain", "--", "kerastroke")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in PACKAGES},
        "blas": _blas(),
        "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ},
        "kerastroke": _kerastroke_version(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "library_uncommitted_changes": None if changed is None else bool(changed),
        "python_executable": sys.executable,
    }


def _kerastroke_version():
    import kerastroke  # its root imports no backend

    return kerastroke.__version__


def backend():
    """What the worker process runs on: the Keras backend, its version and thread settings."""
    import keras

    name = keras.backend.backend()
    info = {"keras_backend": name, "keras": keras.__version__,
            "jax_enable_x64": os.environ.get("JAX_ENABLE_X64")}
    if name == "tensorflow":
        import tensorflow as tf

        info.update(version=tf.__version__, intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                    inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
    elif name == "jax":
        import jax

        info.update(version=jax.__version__, devices=[str(device) for device in jax.devices()],
                    x64=bool(jax.config.jax_enable_x64))
    elif name == "torch":
        import torch

        info.update(version=torch.__version__, threads=torch.get_num_threads())
    return info
