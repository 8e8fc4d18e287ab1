"""Runs inside the tfmot virtual environment (tf_keras, TF_USE_LEGACY_KERAS=1); imports no kerastroke.

    python -I tfmot_worker.py DATA.npz SPEC_JSON

Times the epochs of the same MLP with and without tfmot's
`prune_low_magnitude` (PolynomialDecay, UpdatePruningStep) as
benchmarks/fit.py does for Keras 3: a warm-up of `warmup_epochs` each, then
one epoch each in turn; prints one JSON line. It also records what
`prune_low_magnitude` says when given a Keras 3 model.
"""

import gc
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402


def mlp(features, hidden, classes, seed):
    tf_keras.utils.set_random_seed(seed)
    return tf_keras.Sequential(
        [tf_keras.Input((features,))]
        + [tf_keras.layers.Dense(units, activation="relu") for units in hidden]
        + [tf_keras.layers.Dense(classes)]
    )


class EpochStart(tf_keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_epoch_begin(self, epoch, logs=None):
        self.clock["start"] = (time.perf_counter(), time.process_time())


class EpochEnd(tf_keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self.clock["start"]
        self.clock["epochs"].append(time.perf_counter() - wall)
        self.clock["cpu"].append(time.process_time() - cpu)


def compiled(model):
    model.compile(optimizer="adam", loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def paired_overhead(times, baseline_times):
    """Median over turns of (epoch time / baseline epoch time in the same turn) - 1."""
    return statistics.median(t / b for t, b in zip(times, baseline_times)) - 1.0


def keras3_refusal(features):
    """What tfmot says to a Keras 3 model, as a new user would try it."""
    try:
        import keras

        model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(4)])
        tfmot.sparsity.keras.prune_low_magnitude(model)
    except Exception as error:  # noqa: BLE001 - the refusal is the result
        return f"{type(error).__name__}: {error}"
    return None


def main(data_path, spec):
    data = np.load(data_path)
    x, y = data["x"], data["y"]
    features = x.shape[1]
    ramp = spec["schedule"]
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=ramp["initial"], final_sparsity=ramp["final"], begin_step=ramp["begin"],
        end_step=ramp["end"], power=ramp["power"], frequency=spec["frequency"],
    )
    runs = {
        "baseline": {"model": compiled(mlp(features, spec["hidden"], spec["classes"], 0)), "callbacks": []},
        "prune_low_magnitude": {
            "model": compiled(tfmot.sparsity.keras.prune_low_magnitude(
                mlp(features, spec["hidden"], spec["classes"], 0), pruning_schedule=schedule)),
            "callbacks": [tfmot.sparsity.keras.UpdatePruningStep()],
        },
    }
    for run in runs.values():
        # Timed from before every other callback's on_epoch_begin to after every on_epoch_end.
        run["clock"] = {"start": None, "epochs": [], "cpu": []}
        run["callbacks"] = [EpochStart(run["clock"]), *run["callbacks"], EpochEnd(run["clock"])]
        start = time.perf_counter()
        run["model"].fit(x, y, epochs=spec["warmup_epochs"], batch_size=spec["batch_size"], verbose=0,
                         callbacks=run["callbacks"])
        run["warmup_s"] = time.perf_counter() - start
        run["times"] = []
        run["clock"]["epochs"].clear()
        run["clock"]["cpu"].clear()
    names = list(runs)
    for epoch in range(spec["warmup_epochs"], spec["warmup_epochs"] + spec["epochs"]):
        shift = epoch % len(names)
        for name in names[shift:] + names[:shift]:
            run = runs[name]
            gc.collect()
            start = time.perf_counter()
            run["model"].fit(x, y, initial_epoch=epoch, epochs=epoch + 1, batch_size=spec["batch_size"],
                             verbose=0, callbacks=run["callbacks"])
            run["times"].append(time.perf_counter() - start)
    baseline = runs["baseline"]["clock"]
    stripped = tfmot.sparsity.keras.strip_pruning(runs["prune_low_magnitude"]["model"])
    kernels = [w for w in stripped.get_weights() if w.ndim >= 2]
    zeros = sum(int(np.count_nonzero(w == 0)) for w in kernels)
    size = sum(w.size for w in kernels)
    versions = {}
    for module, name in ((tf, "tensorflow"), (tf_keras, "tf_keras"), (tfmot, "tensorflow_model_optimization"),
                         (np, "numpy")):
        versions[name] = getattr(module, "__version__", None)
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "configs": {
            name: {
                "epoch_s": run["clock"]["epochs"],
                "epoch_cpu_s": run["clock"]["cpu"],
                "min_epoch_s": min(run["clock"]["epochs"]),
                "median_epoch_s": statistics.median(run["clock"]["epochs"]),
                "overhead": paired_overhead(run["clock"]["epochs"], baseline["epochs"]),
                "fastest_overhead": min(run["clock"]["epochs"]) / min(baseline["epochs"]) - 1.0,
                "cpu_overhead": paired_overhead(run["clock"]["cpu"], baseline["cpu"]),
                "fit_call_s": run["times"],
                "warmup_fit_s": run["warmup_s"],
            }
            for name, run in runs.items()
        },
        "sparsity_after": zeros / size if size else 0.0,
        "keras3_model_refused_with": keras3_refusal(features),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
