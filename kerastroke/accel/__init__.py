"""How the engine runs its one function per application on each backend.

The writer (`kerastroke.engine.writer`) builds a plain function of tensors in
`keras.ops`; this is the seam where a backend's compiler takes it:

- JAX: `jax.jit`.
- TensorFlow: `tf.function` as a graph, without XLA: XLA's compilation of
  the counting loops costs seconds per model (against a fraction of a
  second to trace), and the graph runs them about as fast.
- PyTorch: eager ops under `torch.no_grad()` (no graph is recorded for the
  weights' gradients).

Inputs that change between applications (weights, step amounts, seeds) are
arguments, so each function is traced once and reused.
"""

import functools

import keras


def compile(function):
    """`function` compiled for the current backend, or run eagerly where that is faster."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=False, autograph=False)
    return eager(function)


def eager(function):
    """`function` run op by op, recording nothing for autodiff."""
    if keras.backend.backend() != "torch":
        return function
    import torch

    @functools.wraps(function)
    def run(*args, **kwargs):
        with torch.no_grad():
            return function(*args, **kwargs)

    return run
