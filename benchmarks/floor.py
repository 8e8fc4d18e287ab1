"""(b) and (c): each preset once on an n x n kernel, against one `np.copyto` of its weights.

The copy into a preallocated buffer is the memory-bandwidth floor: no
application that reads and writes every weight can beat it. The sides run
from small to large, so the time per weight shows how the cost grows.
"""

import gc
import math

import keras
import numpy as np

from benchmarks.models import PRESETS, applied, changed_fraction, dense_model, kernel_of
from benchmarks.timing import measure, ratio


def _plain(result):
    return {key: float(value) for key, value in result.items()}


def _next_step(kernel, weights, callbacks, *, repeats, budget_s):
    """The first optimizer step after an application, against a step after a plain assign.

    A variable given a buffer TensorFlow did not allocate (the writer hands
    its result over through DLPack) is copied into memory TensorFlow owns
    at its next in-place update: part of an application's cost that lands
    in the training step after it. Both steps start from the same weights,
    restored untimed; the step is plain SGD with a fixed gradient.
    """
    optimizer = keras.optimizers.SGD(1e-3)
    optimizer.build([kernel])
    gradient = keras.ops.convert_to_tensor(np.full(kernel.shape, 1e-6, weights.dtype))

    def step(i):
        optimizer.apply([gradient], [kernel])

    plain = measure(step, repeats=repeats, budget_s=budget_s, prepare=lambda: kernel.assign(weights))
    result = {"plain_step": plain.as_dict(), "presets": {}}
    for name, callback in callbacks.items():
        steps = iter(range(1000, 10**6))

        def applied(callback=callback, steps=steps):
            kernel.assign(weights)
            callback.apply(next(steps))

        after = measure(step, repeats=repeats, budget_s=budget_s, prepare=applied)
        result["presets"][name] = {**after.as_dict(), "extra_s": after.best - plain.best}
    return result


def measure_side(side, *, repeats, budget_s, presets=PRESETS, next_step=False):
    """One kernel of `side` x `side`: the memcpy floor and every preset once.

    With `next_step`, also the cost an application leaves to the next
    optimizer step (see `_next_step`).
    """
    model = dense_model(side)
    kernel = kernel_of(model)
    weights = keras.ops.convert_to_numpy(kernel)
    buffer = np.empty_like(weights)
    memcpy = measure(lambda i: np.copyto(buffer, weights), repeats=max(30, repeats), budget_s=1.0)
    row = {
        "side": side,
        "weights": int(weights.size),
        "bytes": int(weights.nbytes),
        "memcpy": memcpy.as_dict(),
        "presets": {},
    }
    for name, preset in presets.items():
        callback = applied(preset, model)
        last = {}

        def call(step, callback=callback, last=last):
            # A new step per call, as in training: a new epoch index each time.
            last["result"] = callback.apply(step)

        timing = measure(call, repeats=repeats, budget_s=budget_s, prepare=lambda: kernel.assign(weights))
        row["presets"][name] = {
            **timing.as_dict(),
            "ratio_to_memcpy": ratio(timing.best, memcpy.best),
            "ns_per_weight": timing.best / weights.size * 1e9,
            "changed_fraction": changed_fraction(weights, keras.ops.convert_to_numpy(kernel)),
            "apply_result": _plain(last["result"]),
        }
        kernel.assign(weights)
    if next_step:
        callbacks = {name: applied(preset, model) for name, preset in presets.items()}
        row["next_step"] = _next_step(kernel, weights, callbacks, repeats=repeats, budget_s=budget_s)
        for name, entry in row["next_step"]["presets"].items():
            timing = row["presets"][name]
            # A negative difference of two minima is noise: it adds nothing.
            entry["with_application_ratio_to_memcpy"] = ratio(timing["min_s"] + max(0.0, entry["extra_s"]), memcpy.best)
        kernel.assign(weights)
    del model, kernel, weights, buffer
    keras.backend.clear_session()
    gc.collect()
    return row


def growth(rows, presets=PRESETS):
    """Per preset and for memcpy: ns per weight at each size, and exponents b of time ~ size**b.

    `exponent` is the least-squares slope of log(time) on log(weights) over all
    sizes; `exponent_largest` the slope between the two largest sizes. 1 is
    linear. The smallest kernel (4 MiB at 1M weights) can sit in the CPU's
    cache, so even memcpy grows faster than linear from there; between the two
    largest sizes it is close to 1, and that slope is the one judged.
    """
    sizes = [row["weights"] for row in rows]
    series = {name: [row["presets"][name]["min_s"] for row in rows] for name in presets}
    series["memcpy"] = [row["memcpy"]["min_s"] for row in rows]
    summary = {}
    for name, times in series.items():
        summary[name] = {
            "ns_per_weight": {str(n): t / n * 1e9 for n, t in zip(sizes, times)},
            "exponent": _slope([math.log(n) for n in sizes], [math.log(t) for t in times]),
            "exponent_largest": _slope([math.log(n) for n in sizes[-2:]], [math.log(t) for t in times[-2:]]),
            "per_weight_largest_over_smallest": ratio(times[-1] / sizes[-1], times[0] / sizes[0]),
        }
    return summary


def _slope(xs, ys):
    if len(xs) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread if spread else None


def run(sides, *, repeats, budget_s, log=print):
    rows = []
    for side in sides:
        log(f"  {side}x{side} ({side * side / 2**20:g}M weights) ...")
        rows.append(measure_side(side, repeats=repeats, budget_s=budget_s, next_step=side == sides[-1]))
        preset_times = ", ".join(f"{name} {v['min_s'] * 1e3:.1f} ms" for name, v in rows[-1]["presets"].items())
        log(f"    memcpy {rows[-1]['memcpy']['min_s'] * 1e3:.2f} ms; {preset_times}")
        if "next_step" in rows[-1]:
            extra = ", ".join(f"{name} +{v['extra_s'] * 1e3:.1f} ms"
                              for name, v in rows[-1]["next_step"]["presets"].items())
            log(f"    next optimizer step: plain {rows[-1]['next_step']['plain_step']['min_s'] * 1e3:.1f} ms; {extra}")
    return {"rows": rows, "growth": growth(rows)}
