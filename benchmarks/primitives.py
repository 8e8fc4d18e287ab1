"""Times `hashing.bits` + `ranking.smallest` against one `np.copyto` of as many float32.

Run once per backend (a report for the engine's design, not a test):

    KERAS_BACKEND=jax python -m benchmarks.primitives
    KERAS_BACKEND=tensorflow python -m benchmarks.primitives
    KERAS_BACKEND=torch python -m benchmarks.primitives

Each variant draws random keys for every position of an (R, N) batch, keyed
per row, and selects the half of each row with the smallest keys, as a random
selector would. Times are medians of several calls after a warm-up call, whose
time (tracing and compiling included) is shown apart.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerastroke.core import hashing, ranking  # noqa: E402

SHAPES = [(1, 4_194_304), (64, 65_536), (512, 4_096)]


def select(words, k, size):
    positions = keras.ops.arange(size, dtype="int32")
    keys = hashing.bits(words, positions)
    eligible = keras.ops.ones(keras.ops.shape(keys), dtype="bool")
    return ranking.smallest(keys, eligible, k)


def bits_only(words, k, size):
    return hashing.bits(words, keras.ops.arange(size, dtype="int32"))


def median_ms(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def memcpy_ms(count):
    source, target = np.ones(count, np.float32), np.empty(count, np.float32)
    np.copyto(target, source)
    return median_ms(lambda: np.copyto(target, source), 20)


def variants():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [("jax.jit", jax.jit, lambda x: x.block_until_ready())]
    if backend == "tensorflow":
        import tensorflow as tf

        done = lambda x: x.numpy()  # noqa: E731
        return [
            ("tf.function", lambda f: tf.function(f, jit_compile=False), done),
            ("tf.function(jit_compile=True)", lambda f: tf.function(f, jit_compile=True), done),
        ]
    import torch

    def threads(n):
        def wrap(f):
            def call(*args):
                torch.set_num_threads(n)
                return f(*args)

            return call

        return wrap

    return [(f"torch eager, {n} thread(s)", threads(n), lambda x: x) for n in (1, 2)]


def main():
    backend = keras.backend.backend()
    print(f"backend {backend}")
    print("| shape | variant | piece | first call ms | ms | x memcpy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rows, size in SHAPES:
        base = memcpy_ms(rows * size)
        words = np.stack([hashing.key_words(r) for r in range(rows)])
        k = np.full(rows, size // 2, "int32")
        print(f"| ({rows}, {size}) | np.copyto | memcpy | | {base:.2f} | 1 |")
        for name, wrap, done in variants():
            for label, fn in (("bits", bits_only), ("bits+smallest", select)):
                f = wrap(lambda w, k, fn=fn: fn(w, k, size))
                w, kk = keras.ops.convert_to_tensor(words), keras.ops.convert_to_tensor(k)
                start = time.perf_counter()
                out = done(f(w, kk))
                first = 1000 * (time.perf_counter() - start)
                if label == "bits+smallest":
                    counts = np.asarray(keras.ops.convert_to_numpy(ranking.count(out)))
                    assert counts.tolist() == k.tolist(), counts
                ms = median_ms(lambda: done(f(w, kk)), 5)
                print(
                    f"| ({rows}, {size}) | {name} | {label} | {first:.0f} | {ms:.2f} "
                    f"| {ms / base:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
