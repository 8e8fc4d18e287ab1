"""One application of each preset to a model with many variables, against one memcpy.

For each model: the variables a preset targets are counted from the model
by DESIGN.md's contract (trainable floating-point kernels, plus the
variables named `bias` for presets that take biases by default, which of
the six is only ShrinkPerturb). The yardstick is one `np.copyto` of that
many entries, flattened into one preallocated buffer: the memory-bandwidth
floor of anything that reads and writes every targeted weight.

Each timed call is `callback.apply(step)` with a new step, followed by a
read-back of every targeted variable: one compiled sum of all of them,
fetched to the host. A backend that dispatches work asynchronously (JAX)
finishes it there, so deferred work counts. The read-back alone is timed
too (it is part of every call's time), and so is an application that
computes nothing: the CPU path's reads to the host, one copy, its writes
and the read-back (`_copy_through`), the least an application on that
path costs. Before every call, untimed, the
targeted variables get their initial values back, so each call does the
same work. The first call (tracing and compiling included) is reported
apart; the others give the minimum of a few repeats.

With `next_step`, also what an application leaves to the training step
after it: one `model.train_on_batch` after an application (restore and
application untimed), against one after a plain restore of the same
weights, the two in alternation. A write whose cost is paid at the variable's next update, a mask
or constraint the train step now applies, or a train function that must
be traced or compiled again all show there.

Target (issue 12): the minimum at most 10 x memcpy + 20 us per targeted
variable; the first application under 2 s.
"""

import gc
import time
import traceback

import keras
import numpy as np

import kerastroke
from benchmarks import models
from benchmarks.report import format_io, format_ms
from benchmarks.timing import Timing, measure, ratio

MEMCPY_FACTOR = 10.0
PER_VARIABLE_S = 20e-6
FIRST_APPLICATION_S = 2.0


def budget(memcpy_s, variables):
    """Issue 12's limit for one application: 10 x memcpy + 20 us per targeted variable."""
    return MEMCPY_FACTOR * memcpy_s + PER_VARIABLE_S * variables


def make_reader(variables):
    """A function that reads every entry of `variables` and returns one float on the host.

    One compiled reduction per backend (tf.function, jax.jit; eager sums on
    PyTorch, whose CPU ops are synchronous), so that reading costs little
    per variable and waits for any pending write.
    """
    backend = keras.backend.backend()
    if not variables:
        return lambda: 0.0
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(autograph=False)
        def total():
            return tf.add_n([tf.reduce_sum(tf.cast(v.value, tf.float32)) for v in variables])

        return lambda: float(total())
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        summed = jax.jit(lambda values: sum(jnp.sum(value.astype(jnp.float32)) for value in values))
        return lambda: float(summed([v.value for v in variables]))
    if backend == "torch":
        import torch

        def total():
            with torch.no_grad():
                return float(torch.stack([v.value.sum(dtype=torch.float32) for v in variables]).sum())

        return total
    return lambda: float(sum(np.sum(keras.ops.convert_to_numpy(v)) for v in variables))


def _plain(result):
    return {key: float(value) for key, value in result.items()}


def _entries(variables):
    return int(sum(int(np.prod(v.shape)) for v in variables))


def _yardstick(variables, initial, *, memcpy_repeats):
    """memcpy, read-back, and the CPU path's input and output alone, for one set of targeted variables."""
    flat = np.concatenate([initial[id(v)].ravel() for v in variables]) if variables else np.zeros(0, np.float32)
    buffer = np.empty_like(flat)
    memcpy = measure(lambda i: np.copyto(buffer, flat), repeats=memcpy_repeats, budget_s=0.5)
    reader = make_reader(variables)
    reader()  # traced and compiled here, untimed
    read_back = measure(lambda i: reader(), repeats=20, budget_s=0.5)
    result = {
        "variables": len(variables),
        "entries": int(flat.size),
        "bytes": int(flat.nbytes),
        "memcpy": memcpy.as_dict(),
        "read_back": read_back.as_dict(),
        "budget_s": budget(memcpy.best, len(variables)),
    }
    copy_through = _copy_through(variables)
    if copy_through is not None:
        copy_through()  # readers built, graphs traced, untimed

        def restore():  # as before each application: Keras's `assign`, whatever it does to the memory
            for variable in variables:
                variable.assign(initial[id(variable)])
            reader()

        result["io"] = measure(
            lambda i: (copy_through(), reader()), repeats=20, budget_s=0.5, prepare=restore
        ).as_dict()
    return result, reader


def _copy_through(variables):
    """An application that computes nothing, or None without the CPU path.

    As the CPU path does: each group of variables of one shape and dtype
    read to the host (`accel.host_reader`), copied into a block of the CPU
    path's memory (one pass, where an application computes), and its rows
    assigned (`accel.assign`). With the read-back, the least an application
    on the CPU path costs here.
    """
    from kerastroke import accel
    from kerastroke.accel import memory

    if not variables or not accel.host_path(variables):
        return None
    groups = {}
    for variable in variables:
        groups.setdefault((tuple(variable.shape), str(variable.dtype)), []).append(variable)
    readers = [(group, accel.host_reader(group)) for group in groups.values()]

    def run():
        written, values = [], []
        for group, read in readers:
            batch = read()
            block = memory.empty(batch.shape, batch.dtype)
            np.copyto(block, batch)
            written += group
            values += list(block)
        accel.assign(written, values)

    return run


def _batch(model, size):
    """A fixed batch for `train_on_batch`: standard normal inputs, zero targets (mse)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, *model.input_shape[1:]), dtype=np.float32)
    y = np.zeros((size, *model.output_shape[1:]), dtype=np.float32)
    return x, y


def _next_step(model, x, y, callback, restore, reader, repeats):
    """`train_on_batch` after a plain restore and after an application, in alternation.

    Restore and application are untimed. The first pair is a warm-up (it
    traces the train step, and for a persistent preset the constraint the
    first application attaches); then the minimum of each over `repeats`
    pairs, taken back to back so that both see the same load.
    """
    plain, after = [], []
    for pair in range(1 + repeats):
        restore()
        plain.append(_timed(lambda: model.train_on_batch(x, y)))
        restore()
        callback.apply(10**6 + pair)
        reader()
        after.append(_timed(lambda: model.train_on_batch(x, y)))
    plain, after = Timing(tuple(plain[1:]), tuple(plain[:1])), Timing(tuple(after[1:]), tuple(after[:1]))
    return {"plain": plain.as_dict(), "after": after.as_dict(), "extra_s": after.best - plain.best}


def _timed(call):
    gc.disable()
    try:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    finally:
        gc.enable()


def measure_model(name, spec, presets, *, repeats, budget_s, next_step=False, step_repeats=3,
                  batch_size=16, memcpy_repeats=50, log=print):
    """Every preset in `presets` (name -> factory) applied to the model of `spec`."""
    start = time.perf_counter()
    model = models.build(spec["kind"], **spec["sizes"])
    built_s = time.perf_counter() - start
    sets = {False: models.targeted(model, biases=False), True: models.targeted(model, biases=True)}
    every = sets[True]
    initial = {id(v): np.array(keras.ops.convert_to_numpy(v)) for v in every}
    row = {
        "description": models.describe(spec["kind"], spec["sizes"]),
        "spec": spec,
        "parameters": int(model.count_params()),
        "layers": len(model.layers),
        "build_s": built_s,
        "targets": {},
        "presets": {},
    }
    readers = {}
    for biases, variables in sets.items():
        key = "kernels and biases" if biases else "kernels"
        row["targets"][key], readers[biases] = _yardstick(variables, initial, memcpy_repeats=memcpy_repeats)
    read_all = readers[True]

    def restore():
        for variable in every:
            variable.assign(initial[id(variable)])
        read_all()  # the assignments have landed before the clock starts

    if next_step:
        x, y = _batch(model, batch_size)
        row["step_batch_size"] = batch_size
    kernels, with_biases = row["targets"]["kernels"], row["targets"]["kernels and biases"]
    log(f"  {name}: {row['description']}; {kernels['variables']} kernels ({kernels['entries']:,} entries), "
        f"{with_biases['variables'] - kernels['variables']} biases; built in {built_s:.1f} s; memcpy "
        f"{format_ms(kernels['memcpy']['min_s'])}, read-back {format_ms(kernels['read_back']['min_s'])}, "
        f"I/O alone {format_io(kernels)}")
    for preset, factory in presets.items():
        callback = factory()
        biases = models.takes_biases(preset, callback)
        targets = "kernels and biases" if biases else "kernels"
        reader = readers[biases]
        callback.set_model(model)
        last = {}

        def call(step, callback=callback, reader=reader, last=last):
            # A new step per call, as in training.
            last["result"] = callback.apply(step)
            last["read"] = reader()

        try:
            timing = measure(call, repeats=repeats, budget_s=budget_s, prepare=restore, at_least=2)
        except Exception as error:  # noqa: BLE001 - one failing preset must not lose the others
            row["presets"][preset] = {"targets": targets, "error": f"{type(error).__name__}: {error}",
                                      "traceback": traceback.format_exc()[-3000:]}
            log(f"    {preset}: failed: {type(error).__name__}: {error}")
        else:
            yardstick = row["targets"][targets]
            changed = sum(np.count_nonzero(
                keras.ops.convert_to_numpy(v) != initial[id(v)]) for v in sets[biases])
            row["presets"][preset] = {
                **timing.as_dict(),
                "targets": targets,
                "first_s": timing.warmup[0],
                "first_met": timing.warmup[0] < FIRST_APPLICATION_S,
                "ratio_to_memcpy": ratio(timing.best, yardstick["memcpy"]["min_s"]),
                "budget_s": yardstick["budget_s"],
                "over_budget": ratio(timing.best, yardstick["budget_s"]),
                "met": timing.best <= yardstick["budget_s"],
                "changed_fraction": changed / yardstick["entries"] if yardstick["entries"] else 0.0,
                "apply_result": _plain(last["result"]),
            }
            entry = row["presets"][preset]
            if next_step:
                entry["next_step"] = _next_step(model, x, y, callback, restore, reader, step_repeats)
            extra = f"; next step {entry['next_step']['extra_s'] * 1e3:+.1f} ms" if next_step else ""
            log(f"    {models.LABELS.get(preset, preset)}: {format_ms(timing.best)} "
                f"({entry['ratio_to_memcpy']:.1f}x memcpy, {entry['over_budget']:.2f}x the budget); "
                f"first {timing.warmup[0]:.2f} s; {entry['changed_fraction']:.1%} changed{extra}")
        # Leaves the model plain and as it was for the next preset.
        kerastroke.strip(model)
        restore()
    del model, initial, readers, read_all
    keras.backend.clear_session()
    gc.collect()
    return row


def run(model_specs, presets, *, repeats, budget_s, next_step=False, step_repeats=3, log=print):
    """`model_specs`: name -> {"kind", "sizes"}; `presets`: name -> factory."""
    rows = {}
    for name, spec in model_specs.items():
        try:
            rows[name] = measure_model(name, spec, presets, repeats=repeats, budget_s=budget_s,
                                       next_step=next_step, step_repeats=step_repeats, log=log)
        except Exception as error:  # noqa: BLE001 - one failing model must not lose the others
            traceback.print_exc()
            rows[name] = {"description": models.describe(spec["kind"], spec["sizes"]), "spec": spec,
                          "error": f"{type(error).__name__}: {error}"}
    return {
        "models": rows,
        "target": {"memcpy_factor": MEMCPY_FACTOR, "per_variable_s": PER_VARIABLE_S,
                   "first_application_s": FIRST_APPLICATION_S},
    }
