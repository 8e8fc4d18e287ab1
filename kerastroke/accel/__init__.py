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

Two primitives come from the backend itself where that pays:

- `count`: the True entries of each row. On PyTorch `keras.ops.sum`
  accumulates integers in int64, which its CPU kernels do about 40 times
  slower than in int32 (25 ms against 0.6 ms for 4M entries); counts fit
  in int32, so PyTorch sums in int32.
- `kth_smallest`: the exact k-th smallest entry of each row, which
  `kerastroke.core.ranking` otherwise finds by bisection over the bits (32
  compare-and-count passes). PyTorch's `torch.kthvalue`, one selection
  pass, gives the same value, so the same bits, several times faster than
  those passes run eagerly.

Both give exactly what the `keras.ops` form gives; only the time differs.
So do the writer's other backend-aware steps here: `assign` (the new
values into the variables), `rows` (a group's stacked result split per
variable), `where_each` (optimizer state reset under many masks) and
`staged` (a pure selection compiled once when called eagerly).
"""

import functools
import math

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


def assign(variables, values):
    """Assigns each value to its variable; on TensorFlow without Keras's checks.

    `keras.Variable.assign` checks and converts in Python, which on
    TensorFlow costs about 0.1 to 0.2 ms per variable (a model with 512
    kernels spent more on assigning than on computing the new values), and
    `tf.Variable.assign` still about 40 us. The writer's values already
    have each variable's shape and dtype, so on TensorFlow they go straight
    into the resource of the `tf.Variable` underneath with one
    `AssignVariableOp`, about 18 us (a graph of all the assignments was
    faster still per call, but took seconds to trace for hundreds of
    variables). A value of another shape or dtype, or a variable that is not
    one plain resource (a distributed variable has one per replica), takes
    Keras's path.

    Example:
    >>> import keras
    >>> variables = [keras.Variable([0.0, 0.0]), keras.Variable([0.0])]
    >>> assign(variables, [keras.ops.ones((2,)), keras.ops.ones((1,))])
    >>> [keras.ops.convert_to_numpy(v).tolist() for v in variables]
    [[1.0, 1.0], [1.0]]
    """
    direct = None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def direct(variable, value):
            target = variable.value
            if (
                isinstance(target, tf.Variable)
                and not isinstance(target, tf.distribute.DistributedValues)
                and getattr(value, "dtype", None) == target.dtype
                and getattr(value, "shape", None) == target.shape
            ):
                tf.raw_ops.AssignVariableOp(resource=target.handle, value=value)
                return True
            return False

    for variable, value in zip(variables, values):
        if direct is None or not direct(variable, value):
            variable.assign(value)


def rows(stacked):
    """The rows of a stacked tensor, each a tensor of its own.

    A compiled function with one output per variable compiles slowly under
    XLA (one application on 512 kernels of 64 x 64 took 46 s to compile,
    4.4 s once it returned one stacked array per group), so the writer's
    function returns each group stacked and it is split here: on JAX one
    compiled row lookup per row (compiled once per shape; JAX's own split
    of an array compiles one program per 100 rows, 1.8 s for 512 rows),
    elsewhere with one unstack.

    Example:
    >>> import numpy as np
    >>> [keras.ops.convert_to_numpy(row).tolist() for row in rows(keras.ops.ones((2, 3)))]
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if keras.backend.backend() == "jax":
        row = _jax_compiled("row")
        return [row(stacked, index) for index in range(stacked.shape[0])]
    return keras.ops.unstack(stacked)


def where_each(masks, news, olds):
    """`where(mask, new, old)` for each triple, all computed before any is used.

    Args:
        masks: Bool tensors.
        news: Tensors of each old value's shape and dtype, or None for zero.
        olds: Tensors.

    Returns:
        The list of results. On JAX each is one compiled call (compiled once
        per shape; stacking hundreds of tensors compiled for seconds).
        Elsewhere small tensors of one shape and dtype are stacked and go
        through one `where`, since an eager TensorFlow op costs about 0.1 ms
        however small (SET on 512 kernels resets 1024 Adam moments); large
        ones (from `_STACKED_BELOW` entries) go one by one, as stacking
        them would only copy them twice more.

    Example:
    >>> import numpy as np
    >>> out = where_each([np.array([True, False])], [None], [keras.ops.ones((2,))])
    >>> keras.ops.convert_to_numpy(out[0]).tolist()
    [0.0, 1.0]
    """
    ops = keras.ops
    if keras.backend.backend() == "jax":
        where, zeroed = _jax_compiled("where"), _jax_compiled("zeroed")
        return [
            zeroed(mask, old) if new is None else where(mask, new, old) for mask, new, old in zip(masks, news, olds)
        ]
    groups = {}
    for position, (new, old) in enumerate(zip(news, olds)):
        size = math.prod(tuple(old.shape))
        alone = position if size >= _STACKED_BELOW else None
        groups.setdefault((tuple(old.shape), str(old.dtype), new is None, alone), []).append(position)
    results = [None] * len(olds)
    for (_, _, zero, _), positions in groups.items():
        dtype = olds[positions[0]].dtype
        if len(positions) == 1:
            (p,) = positions
            new = ops.zeros((), dtype) if zero else news[p]
            results[p] = ops.where(ops.convert_to_tensor(masks[p], "bool"), new, olds[p])
            continue
        stacked = ops.where(
            ops.stack([ops.convert_to_tensor(masks[p], "bool") for p in positions]),
            ops.zeros((), dtype) if zero else ops.stack([news[p] for p in positions]),
            ops.stack([olds[p] for p in positions]),
        )
        for position, row in zip(positions, rows(stacked)):
            results[position] = row
    return results


# Entries from which `where_each` writes a tensor on its own rather than stacked.
_STACKED_BELOW = 1 << 16

_JAX_COMPILED = {}


def _jax_compiled(name):
    """Small JAX programs compiled once per input shape, kept for the process."""
    if name not in _JAX_COMPILED:
        import jax

        programs = {
            "row": lambda stacked, index: jax.lax.dynamic_index_in_dim(stacked, index, keepdims=False),
            "where": lambda mask, new, old: jax.numpy.where(mask, new, old),
            "zeroed": lambda mask, old: jax.numpy.where(mask, jax.numpy.zeros((), old.dtype), old),
        }
        _JAX_COMPILED[name] = jax.jit(programs[name])
    return _JAX_COMPILED[name]


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


def staged(function):
    """`function` as one compiled call on JAX, also when called outside a trace.

    Called eagerly, JAX compiles a `fori_loop` or `cond` afresh at every call
    (each call brings a new closure as its body): a pure piece applied to one
    tensor in a Python loop compiled its bisection every time. Staged, it
    compiles once per input shape and dtype; inside a trace it is inlined.
    Other backends call `function` itself.
    """
    compiled = []

    @functools.wraps(function)
    def call(*args):
        if keras.backend.backend() != "jax":
            return function(*args)
        if not compiled:
            import jax

            compiled.append(jax.jit(function))
        return compiled[0](*args)

    return call


def count(mask):
    """The True entries of each row (the last axis) of a boolean tensor, as int32.

    Example:
    >>> import numpy as np
    >>> c = count(keras.ops.convert_to_tensor(np.array([[True, False, True], [False] * 3])))
    >>> keras.ops.convert_to_numpy(c).tolist()
    [2, 0]
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.sum(mask, dim=-1, dtype=torch.int32)
    # (JAX in 64-bit mode sums int32 into int64, as NumPy does.)
    return keras.ops.cast(keras.ops.sum(keras.ops.cast(mask, "int32"), axis=-1), "int32")


def kth_smallest(values, k):
    """Each row's `k`-th smallest entry by the backend's own selection, or None.

    Args:
        values: Integer tensor (R, N).
        k: int32 tensor (R,), each in [1, N].

    Returns:
        A tensor (R,) of `values`' dtype where the backend has a selection
        that is faster than bisection (PyTorch), else None: the caller
        bisects.
    """
    if keras.backend.backend() != "torch" or 0 in tuple(values.shape):
        return None  # (an empty row has no k-th entry: bisection gives its start)
    import torch

    ks = [int(value) for value in k.tolist()]
    if len(set(ks)) == 1:
        return torch.kthvalue(values, ks[0], dim=1).values
    return torch.stack([torch.kthvalue(row, rank).values for row, rank in zip(values, ks)])
