"""(e): peak extra memory of one application, in a fresh process per preset.

The worker (`python -m benchmarks.memory --worker NAME SIDE`) applies the
preset once to a small model first, so that code paths, kernels and traces
that do not depend on the size are loaded; then it builds the n x n model,
reads its resident set size (VmRSS), resets the high-water mark (writing "5"
to /proc/self/clear_refs), applies the preset once and reads VmHWM. The
extra memory is VmHWM - VmRSS before the application. Where clear_refs
cannot be written, ru_maxrss stands in (valid only when the peak so far was
not above the baseline; both are reported).
"""

import argparse
import gc
import json
import resource
import subprocess
import sys

from benchmarks.machine import ROOT
from benchmarks.timing import ratio


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _reset_high_water_mark():
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def worker(name, side):
    import keras

    from benchmarks.models import LEGACY_PRESETS, applied, dense_model, kernel_of

    preset = LEGACY_PRESETS[name]
    applied(preset, dense_model(64)).apply(0)
    model = dense_model(side)
    kernel = kernel_of(model)
    callback = applied(preset, model)
    gc.collect()
    baseline = _status_bytes("VmRSS")
    max_rss_before = _max_rss_bytes()
    reset = _reset_high_water_mark()
    result = callback.apply(1)
    peak = _status_bytes("VmHWM") if reset else _max_rss_bytes()
    tensor_bytes = int(kernel.shape[0]) * int(kernel.shape[1]) * keras.ops.convert_to_numpy(kernel).itemsize
    return {
        "preset": name,
        "side": side,
        "method": "VmHWM after clear_refs" if reset else "ru_maxrss",
        "baseline_rss_bytes": baseline,
        "max_rss_before_bytes": max_rss_before,
        "peak_bytes": peak,
        "rss_after_bytes": _status_bytes("VmRSS"),
        "extra_bytes": peak - baseline,
        "largest_tensor_bytes": tensor_bytes,
        "ratio": ratio(peak - baseline, tensor_bytes),
        "changed": float(result["changed"]),
    }


def run(names, side, log=print):
    results = {}
    for name in names:
        command = [sys.executable, "-m", "benchmarks.memory", "--worker", name, str(side)]
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
        if completed.returncode != 0 or not lines:
            results[name] = {"error": f"exit {completed.returncode}: {completed.stderr[-1500:]}"}
            log(f"    {name}: failed ({results[name]['error'][-200:]})")
            continue
        results[name] = json.loads(lines[-1])
        log(f"    {name}: {results[name]['extra_bytes'] / 2**20:.0f} MiB extra, "
            f"{results[name]['ratio']:.2f}x the {results[name]['largest_tensor_bytes'] / 2**20:.0f} MiB kernel")
    return {"side": side, "presets": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("PRESET", "SIDE"), required=True)
    args = parser.parse_args()
    print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
