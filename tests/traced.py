"""The compiled forms of a function on the current backend, for "traced == eager" tests."""

import keras


def compiled_variants():
    """`(name, wrap)` pairs: each `wrap(fn)` is `fn` compiled the backend's ways.

    JAX: `jax.jit`. TensorFlow: `tf.function` with and without XLA. PyTorch
    has no tracing the pieces rely on (they run eagerly there), so its list is
    the eager call itself.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [("jax.jit", jax.jit)]
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            ("tf.function", lambda fn: tf.function(fn, jit_compile=False)),
            ("tf.function(jit_compile=True)", lambda fn: tf.function(fn, jit_compile=True)),
        ]
    return [("eager", lambda fn: fn)]


def jax_has_x64():
    """Whether float64 and int64 exist on this backend (only JAX can lack them)."""
    if keras.backend.backend() != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)
