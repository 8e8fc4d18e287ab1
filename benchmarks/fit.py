"""`model.fit` with callbacks applied every 100 optimizer steps, against the same fit without them.

The model is a deep MLP (16 x Dense(256), 17 kernels, about 1M weights),
Adam, batch 64: many variables per step, so per-variable costs show. The
callbacks are persistent `MagnitudePruning` on a polynomial sparsity ramp
(0 to 0.8 over the whole run) and `Stroke` (5% of the weights redrawn), both
with `frequency=100`; tfmot's `prune_low_magnitude` with the same ramp runs
on the same model under tf_keras (benchmarks/tfmot.py).

Each configuration gets its own model, compiled and warmed up by a fit of
`warmup_epochs` (tracing happens there; for a persistent callback also its
first application, which attaches the mask, and the retrace that follows).
Then the configurations take turns, one epoch each (a `fit` call with
`initial_epoch` counting on), so a change in the machine's load reaches every
configuration alike. An epoch is timed from a clock callback placed before
every other callback (its `on_epoch_begin` runs first) to one placed after
them (its `on_epoch_end` runs last): it includes the callbacks' work and
leaves out `fit`'s set-up. The overhead is the median over turns of
(epoch time / baseline epoch time of the same turn) - 1; the same ratio of
process CPU time (all threads), which other processes' load disturbs less,
and the ratio of the fastest epochs are kept too. Time spent inside each
callback's hooks (`on_epoch_end`, `on_train_batch_end`) is also recorded:
the applications themselves, without what they leave to the training steps
(a retrace, a recompile, a copy at the next update).
"""

import gc
import statistics
import time

import keras
import numpy as np

import kerastroke
from benchmarks.data import make_data
from benchmarks.timing import ratio


class _EpochStart(keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_epoch_begin(self, epoch, logs=None):
        self.clock["start"] = (time.perf_counter(), time.process_time())


class _EpochEnd(keras.callbacks.Callback):
    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self.clock["start"]
        self.clock["epochs"].append(time.perf_counter() - wall)
        self.clock["cpu"].append(time.process_time() - cpu)


def _time_hooks(callback, sink):
    """Adds the seconds spent in the callback's `on_epoch_end` and, where the callback defines
    its own, `on_train_batch_end` to `sink`.

    A batch hook Keras sees as its default one is left alone: wrapping it
    would turn off Keras's asynchronous batch dispatch (Keras marks the
    default hooks with `_is_default`).
    """
    for hook in ("on_epoch_end", "on_train_batch_end"):
        inner = getattr(callback, hook)
        if hook != "on_epoch_end" and getattr(inner, "_is_default", False):
            continue

        def timed(*args, inner=inner, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                sink.append(time.perf_counter() - start)

        # Keras calls callback.<hook>(...): the instance attribute comes first.
        setattr(callback, hook, timed)


def kernel_sparsity(model):
    """Fraction of kernel entries (variables of 2 or more dimensions) exactly zero."""
    kernels = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables if len(v.shape) >= 2]
    size = sum(k.size for k in kernels)
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / size if size else 0.0


def paired_overhead(times, baseline_times):
    """Median over turns of (epoch time / the baseline's epoch time in the same turn) - 1.

    The two epochs of a turn ran back to back, so a change in the machine's
    load between turns cancels out of each ratio.
    """
    return statistics.median(t / b for t, b in zip(times, baseline_times)) - 1.0


def overhead(configs, build, x, y, *, epochs, batch_size, warmup_epochs=1, log=print):
    """Epoch times of each configuration (name -> factory of its callbacks); the first is the baseline.

    Each configuration trains `epochs` timed epochs after its warm-up epochs,
    one `fit` call per epoch (`initial_epoch` counting on), the configurations
    taking turns epoch by epoch.
    """
    runs = {}
    for name, make_callbacks in configs.items():
        model = build()
        callbacks = make_callbacks()
        inside = []
        for callback in callbacks:
            _time_hooks(callback, inside)
        clock = {"start": None, "epochs": [], "cpu": []}
        callbacks = [_EpochStart(clock), *callbacks, _EpochEnd(clock)]
        start = time.perf_counter()
        model.fit(x, y, epochs=warmup_epochs, batch_size=batch_size, verbose=0, callbacks=callbacks)
        runs[name] = {"model": model, "callbacks": callbacks, "inside": inside, "fits": [], "clock": clock,
                      "warmup_s": time.perf_counter() - start}
        inside.clear()
        clock["epochs"].clear()
        clock["cpu"].clear()
    names = list(runs)
    for epoch in range(warmup_epochs, warmup_epochs + epochs):
        shift = epoch % len(names)
        for name in names[shift:] + names[:shift]:
            run = runs[name]
            gc.collect()
            start = time.perf_counter()
            run["model"].fit(x, y, initial_epoch=epoch, epochs=epoch + 1, batch_size=batch_size, verbose=0,
                             callbacks=run["callbacks"])
            run["fits"].append(time.perf_counter() - start)
        log("    epoch {}: {}".format(epoch, ", ".join(f"{name} {runs[name]['clock']['epochs'][-1]:.2f} s"
                                                      for name in names)))
    baseline = runs[names[0]]
    baseline_epochs, baseline_cpu = baseline["clock"]["epochs"], baseline["clock"]["cpu"]
    baseline_epoch = min(baseline_epochs)
    results = {}
    for name, run in runs.items():
        epoch_times, cpu_times = run["clock"]["epochs"], run["clock"]["cpu"]
        per_epoch_inside = sum(run["inside"]) / len(epoch_times)
        results[name] = {
            "epoch_s": epoch_times,
            "epoch_cpu_s": cpu_times,
            "min_epoch_s": min(epoch_times),
            "median_epoch_s": statistics.median(epoch_times),
            "overhead": paired_overhead(epoch_times, baseline_epochs),
            "fastest_overhead": ratio(min(epoch_times), baseline_epoch) - 1.0,
            "cpu_overhead": paired_overhead(cpu_times, baseline_cpu),
            "fit_call_s": run["fits"],
            "warmup_fit_s": run["warmup_s"],
            "callback_s_per_epoch": per_epoch_inside,
            "callback_share": ratio(per_epoch_inside, baseline_epoch),
            "sparsity_after": kernel_sparsity(run["model"]),
        }
    results[names[0]]["spread"] = ratio(max(baseline_epochs), baseline_epoch) - 1.0
    for run in runs.values():
        del run["model"]
    keras.backend.clear_session()
    gc.collect()
    return results


def mlp(features, hidden, classes, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((features,))]
        + [keras.layers.Dense(units, activation="relu") for units in hidden]
        + [keras.layers.Dense(classes)]
    )
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def schedule_end(samples, batch_size, warmup_epochs, epochs):
    """The last optimizer step of the run: where the sparsity ramp reaches its final value."""
    return -(-samples // batch_size) * (warmup_epochs + epochs)


def run(*, samples, features, hidden, classes, batch_size, epochs, warmup_epochs, frequency, final_sparsity,
        log=print):
    """Plain fit, persistent MagnitudePruning on a polynomial ramp, and Stroke, every `frequency` steps."""
    x, y = make_data(samples, features, classes)
    end = schedule_end(samples, batch_size, warmup_epochs, epochs)
    configs = {
        "baseline": list,
        "MagnitudePruning": lambda: [kerastroke.MagnitudePruning(
            kerastroke.schedules.polynomial(0.0, final_sparsity, begin=0, end=end), frequency=frequency, seed=0)],
        "Stroke": lambda: [kerastroke.Stroke(frequency=frequency, seed=0)],
    }
    results = overhead(configs, lambda: mlp(features, hidden, classes), x, y,
                       epochs=epochs, batch_size=batch_size, warmup_epochs=warmup_epochs, log=log)
    model = mlp(features, hidden, classes)
    kernels = [v for v in model.trainable_variables if len(v.shape) >= 2]
    return {
        "model": {"layers": [features, *hidden, classes], "parameters": int(model.count_params()),
                  "kernels": len(kernels), "kernel_weights": int(sum(np.prod(v.shape) for v in kernels))},
        "data": {"samples": samples, "batch_size": batch_size, "steps_per_epoch": -(-samples // batch_size)},
        "frequency": frequency,
        "schedule": {"initial": 0.0, "final": final_sparsity, "begin": 0, "end": end, "power": 3.0},
        "timed_epochs": epochs,
        "warmup_epochs": warmup_epochs,
        "configs": results,
    }
