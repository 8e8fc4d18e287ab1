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

The selections' primitives take the backend's fastest form where that pays:

- `count`: the True entries of each row. On PyTorch `keras.ops.sum`
  accumulates integers in int64, which its CPU kernels do about 40 times
  slower than in int32 (25 ms against 0.6 ms for 4M entries); counts fit
  in int32, so PyTorch sums in int32.
- `counts`: several counts of one shape at once. On JAX they are one
  variadic reduction: XLA's CPU compiler runs sibling counts as slow
  windowed reductions (three counts of 4M entries, 36 ms against 1.6 ms).
- `kth_smallest`: the exact k-th smallest entry of each row, which
  `kerastroke.core.ranking` otherwise finds by bisection over the bits (32
  compare-and-count passes). PyTorch's `torch.kthvalue`, one selection
  pass, gives the same value, so the same bits, several times faster than
  those passes run eagerly; JAX bisects over two bits per pass, three
  counts in one reduction, about 8 times faster.

Each gives exactly what the `keras.ops` form gives; only the time differs.
So do the writer's other backend-aware steps here: `assign` (the new
values into the variables), `rows` (a group's stacked result split per
variable), `assign_where` (optimizer state reset under many masks) and
`staged` (a pure selection compiled once when called eagerly).
"""

import functools
import math
import threading

import keras
import numpy as np

from kerastroke.accel import memory
from kerastroke.core import arrays


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


# The backends whose applications take the CPU path where they can (see
# `host_path`), and which of their applications (`host_takes`): "every" one,
# or only those "ranking" entries, where some rule selects a part (an
# exact count by rank: its compiled form is a loop of counting passes, which
# XLA compiled for 1 to 8 s per model, against under 0.7 s for the CPU
# path, which also ran as fast or faster on most models). Measured per
# application on this project's benchmark models.
HOST_BACKENDS = {"tensorflow": "every", "torch": "every", "jax": "ranking"}


def host_path(variables):
    """True if applications to `variables` can take the CPU path (`kerastroke.accel.host`).

    That is: Numba imports, the backend is one of `HOST_BACKENDS` (where each
    compiled op is a pass over memory of its own, and the loops' one pass
    per step is faster), and every variable lives in host memory, so the
    loops read it without a transfer. Which applications take it is
    `host_takes`.

    Example:
    >>> import keras
    >>> isinstance(host_path([keras.Variable([1.0])]), bool)
    True
    """
    from kerastroke.accel import host

    backend = keras.backend.backend()
    if backend not in HOST_BACKENDS or not host.available():
        return False
    for value in _values(variables):
        if backend == "torch" and value.device.type != "cpu":
            return False
        if backend == "tensorflow" and "CPU" not in value.device.upper():
            return False
        if backend == "jax" and any(device.platform != "cpu" for device in value.devices()):
            return False
    return True


def host_takes(ranking):
    """True if the current backend's CPU path takes an application, given
    whether some rule of it selects a part (`ranking`; see `HOST_BACKENDS`).

    Example:
    >>> host_takes(ranking=True) is (keras.backend.backend() in HOST_BACKENDS)
    True
    """
    policy = HOST_BACKENDS.get(keras.backend.backend())
    return policy == "every" or (policy == "ranking" and ranking)


def host_reader(variables):
    """A function that returns the values of `variables` (one shape, float32) as one
    NumPy array (R, ...), for the CPU path, to read and never to write.

    Each variable is viewed without a copy where the backend allows: on
    TensorFlow with one `ReadVariableOp` (about 20 us, against 0.2 ms for
    `variable.numpy()`; TensorFlow copies a variable's buffer before writing
    it in place while a read of it is alive), from `_GRAPH_READS_FROM`
    variables all in one graph call per chunk (`_tf_graph`); on PyTorch as
    the tensor's own memory; on JAX as the array's (on a CPU). Several
    variables whose memory lies row after row, as the CPU path leaves
    PyTorch's variables (`assign` hands them the rows of one block, and
    PyTorch's optimizers update them in place), are viewed as one array
    without a copy (`_joined`; 4 x 1024^2, 0.75 to 0.02 ms). Other
    variables are stacked into one buffer per reader and thread,
    reused by every call: the CPU path only reads it, and fresh memory of
    that size costs more than the copy (on this machine glibc hands large
    freed blocks back to the system, and the next use faults every page in
    again; Pruning on 4 x 1024^2, 26 to 10 ms on TensorFlow and 24 to 10 on
    PyTorch). So a call's result is valid until the same thread's next
    call or the next write of the variables, whichever comes first, and
    must never be handed to a backend. A single variable's memory
    is viewed, not copied.

    Example:
    >>> import keras
    >>> read = host_reader([keras.Variable([1.0, 2.0]), keras.Variable([3.0, 4.0])])
    >>> read().tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """
    views = _host_views(variables)
    if len(variables) == 1:
        return lambda: views()[0][None]
    buffers = threading.local()

    def read():
        parts = views()
        joined = _joined(parts)
        if joined is not None:
            return joined
        out = getattr(buffers, "out", None)
        if out is None or out.shape[1:] != parts[0].shape or out.dtype != parts[0].dtype:
            out = buffers.out = np.empty((len(parts),) + parts[0].shape, parts[0].dtype)
        return np.stack(parts, out=out)

    return read


class _Joined:
    """The memory of equal, consecutive NumPy arrays as one array's: holds
    the arrays (and what they view) alive while it is used."""

    __slots__ = ("__array_interface__", "_parts")


def _joined(parts):
    """NumPy arrays of one shape and dtype that lie one after another in
    memory (rows of one block: PyTorch's variables after the CPU path has
    written them, which its optimizers update in place) as one array
    (R, ...) on that memory, without a copy; None if they do not."""
    first = parts[0]
    if not _in_a_row(parts) or any(part.shape != first.shape or part.dtype != first.dtype for part in parts):
        return None
    joined = _Joined()
    joined._parts = parts
    joined.__array_interface__ = {
        "shape": (len(parts),) + first.shape,
        "typestr": first.dtype.str,
        # Read-only if any part is (Numba compiles its loops for read-only arrays apart).
        "data": (first.ctypes.data, not all(part.flags.writeable for part in parts)),
        "version": 3,
    }
    return np.asarray(joined)


def _host_views(variables):
    """A function that returns the values of `variables` as NumPy arrays,
    viewing each variable's memory where the backend allows (see `host_reader`)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if all(_plain_tf_variable(v.value) for v in variables):
            targets = [variable.value for variable in variables]
            if len(targets) >= _GRAPH_READS_FROM:
                chunks = _chunks(targets)
                return lambda: [np.asarray(x) for chunk in chunks for x in _tf_graph("views", chunk)(chunk)]
            return lambda: [
                np.asarray(tf.raw_ops.ReadVariableOp(resource=t.handle, dtype=t.dtype)) for t in targets
            ]
    if backend == "torch":
        import torch

        def torch_views():
            values = [value.detach() for value in _values(variables)]
            if all(value.device.type == "cpu" and value.dtype != torch.bfloat16 for value in values):
                return [value.numpy() for value in values]
            return [arrays.to_numpy(value) for value in values]

        return torch_views
    if backend == "jax":
        # A JAX array in host memory is viewed, not copied as Keras's
        # `convert_to_numpy` does (512 kernels of 64 x 64: 1.1 ms against 3.9).
        return lambda: [np.asarray(value) for value in _values(variables)]
    return lambda: [arrays.to_numpy(v.value) for v in variables]


def assign(variables, values):
    """Assigns each value to its variable; on TensorFlow without Keras's checks.

    `keras.Variable.assign` checks and converts in Python, which on
    TensorFlow costs about 0.1 to 0.2 ms per variable (a model with 512
    kernels spent more on assigning than on computing the new values), and
    `tf.Variable.assign` still about 40 us. The values already have each
    variable's shape and dtype, so on TensorFlow they go straight into the
    resource of the `tf.Variable` underneath with `AssignVariableOp`: one
    eager op each (about 18 us, plus the conversion of a NumPy value), or,
    from `_GRAPH_WRITES_FROM` variables of one shape and dtype, all stacked
    into one graph call (`_tf_graph`: 512 kernels, 3 ms against 39). The
    CPU path's results (`kerastroke.accel.memory` blocks, which nothing
    else holds) are handed to TensorFlow without a copy, through DLPack,
    where aligned as its kernels require: the variables keep that memory,
    and the block is reused only once they let go of it (64 x 256^2,
    Pruning 19 to 10 ms; the transformer 23 to 16). Other NumPy values are
    copied, as `tf.convert_to_tensor` does. A
    value of another shape or dtype, or a variable that is not one plain
    resource (a distributed variable has one per replica), takes Keras's
    path. On PyTorch a float32 NumPy value becomes the variable's memory
    if it is the CPU path's own, and is copied into it otherwise; on JAX
    NumPy values of one shape and dtype, from `_STACKED_TRANSFERS_FROM` of
    them, go to the device in one transfer. Inside a `keras.StatelessScope`
    every value takes Keras's path, which records it in the scope.

    Example:
    >>> import keras
    >>> variables = [keras.Variable([0.0, 0.0]), keras.Variable([0.0])]
    >>> assign(variables, [keras.ops.ones((2,)), keras.ops.ones((1,))])
    >>> [keras.ops.convert_to_numpy(v).tolist() for v in variables]
    [[1.0, 1.0], [1.0]]
    """
    backend = keras.backend.backend()
    if _in_stateless_scope():
        pass  # Keras's `assign` records each value in the scope and writes nothing
    elif backend == "tensorflow":
        variables, values = _tf_assign(variables, values)
    elif backend == "torch":
        variables, values = _torch_assign(variables, values)
    elif backend == "jax":
        variables, values = _jax_assign(variables, values)
    for variable, value in zip(variables, values):
        variable.assign(value)


def _values(variables):
    """Keras's `variable.value` of each of `variables` (anything else as it is).

    Outside Keras's stateless and autocast scopes (and, on PyTorch, its
    "meta" device), that value is the array the variable holds (`_value`),
    which is read directly: `value` checks the scopes again at every read,
    about 1 to 3 us each, and an application on 512 kernels read thousands
    (its Adam moments too). The scopes are checked once here instead; where
    Keras's internals are not as expected, every value is read through
    `value`.
    """
    direct = _scopes_plain()
    return [
        (variable._value if direct and variable._value is not None else variable.value)
        if isinstance(variable, keras.Variable)
        else getattr(variable, "value", variable)
        for variable in variables
    ]


def _in_stateless_scope():
    """True inside a `keras.StatelessScope` (False where Keras's internals are not as expected)."""
    try:
        from keras.src.backend.common.stateless_scope import in_stateless_scope
    except ImportError:
        return False
    return in_stateless_scope()


def _scopes_plain():
    """True when no stateless or autocast scope is active and, on PyTorch,
    Keras's device is not "meta" (where `value` gives a stand-in)."""
    try:
        from keras.src.backend.common.stateless_scope import in_stateless_scope
        from keras.src.backend.common.variables import get_autocast_scope
    except ImportError:
        return False
    if in_stateless_scope() or get_autocast_scope() is not None:
        return False
    if keras.backend.backend() != "torch":
        return True
    try:
        from keras.src.backend.torch.core import get_device
    except ImportError:
        return False
    return str(get_device()) != "meta"


def _by_layout(items, layout):
    """`items` (tuples that start with a variable and end with its value)
    grouped by `layout(*item)`, a key of the items that can be written
    together, or None for an item left to Keras's `assign`: returns the
    batches and `(variables left, values left)`."""
    batches, rest = {}, []
    for item in items:
        key = layout(*item)
        if key is None:
            rest.append(item)
        else:
            batches.setdefault(key, []).append(item)
    return batches, ([item[0] for item in rest], [item[-1] for item in rest])


def _jax_assign(variables, values):
    """`assign` on JAX: NumPy values of one shape and dtype (from the CPU
    path) go to the device stacked, in one transfer, and are split there
    (`rows`): one transfer per array cost about 35 us each (512 kernels,
    50 ms through Keras's `assign`, 10 ms stacked). Values that are the
    rows of one `memory` block (the CPU path's result) go as that block:
    JAX's CPU client keeps aligned host memory as the array's, without a
    copy, and holds it until the rows are taken (64 x 256^2: 1.9 ms to
    stack and transfer, 0.05 to hand over). Large values of the CPU
    path's own memory (from `_TRANSFERRED_ALONE_FROM` entries) go one by
    one, each kept as its array in the same way: a row taken from a
    transferred block is a copy (16 x 512^2: 1.9 ms for the block and its
    rows until they were ready, 0.48 one by one). Returns the
    variables and values left for Keras's `assign`."""
    import jax

    def layout(variable, old, value):
        # The array a variable holds has its shape and dtype.
        if isinstance(value, np.ndarray) and value.dtype == old.dtype and value.shape == old.shape:
            return value.shape, value.dtype
        return None

    direct = _scopes_plain()
    batches, rest = _by_layout(zip(variables, _values(variables), values), layout)
    for batch in batches.values():
        news = [value for _, _, value in batch]
        if news[0].size >= _TRANSFERRED_ALONE_FROM and all(memory.owner(value) is not None for value in news):
            news = [jax.device_put(value) for value in news]
        elif len(batch) < _STACKED_TRANSFERS_FROM:
            rest[0].extend(variable for variable, _, _ in batch)
            rest[1].extend(news)
            continue
        else:
            news = rows(jax.device_put(_one_block(news)))
        for (variable, _, _), new in zip(batch, news):
            if direct and isinstance(variable, keras.Variable):
                # What `assign` does once the value's shape and dtype match
                # and no stateless scope is active (about 2 us a variable less).
                variable._direct_assign(new)
            else:
                variable.assign(new)
    return rest


def _tf_assign(variables, values):
    """`assign` on TensorFlow: writes what can go straight into a resource,
    returns the variables and values left for Keras's `assign`."""
    import tensorflow as tf

    def layout(variable, target, value):
        if not _plain_tf_variable(target):
            return None
        shape, dtype = arrays.shape(variable), target.dtype
        if isinstance(value, np.ndarray):
            same = value.shape == shape and value.dtype == dtype.as_numpy_dtype
        else:
            same = getattr(value, "dtype", None) == dtype and getattr(value, "shape", None) == target.shape
        return (shape, dtype) if same else None

    items = list(zip(variables, _values(variables), values))
    batches, rest = _by_layout(items, layout)
    for batch in batches.values():
        targets, news = [target for _, target, _ in batch], [value for _, _, value in batch]
        # Few values, or large ones that can all be lent, go one by one.
        one_by_one = len(batch) < _GRAPH_WRITES_FROM or math.prod(targets[0].shape) >= _LENT_ONE_BY_ONE_FROM
        lendable = [_lendable(value) for value in news] if one_by_one else None
        if not one_by_one or (len(batch) >= _GRAPH_WRITES_FROM and not all(lendable)):
            stacked = _one_block(news)
            if stacked is not None and _lendable(stacked):
                _tf_write(targets, _lent(stacked))  # the rows each keep a slice of it
            else:
                _tf_write(targets, tf.convert_to_tensor(tf.stack(news) if stacked is None else stacked))
            continue
        for target, value, lend in zip(targets, news, lendable):
            value = _lent(value) if lend else tf.convert_to_tensor(value)
            tf.raw_ops.AssignVariableOp(resource=target.handle, value=value)
    return rest


def _one_block(values):
    """NumPy `values` of one shape and dtype as one array (len(values), ...)
    in `memory`: the block whose rows they are (`_rows_of_one_block`, no
    copy), else a new one they are stacked into; None if any is not a
    NumPy array."""
    if not all(isinstance(value, np.ndarray) for value in values):
        return None
    block = _rows_of_one_block(values)
    if block is None:
        block = np.stack(values, out=memory.empty((len(values),) + values[0].shape, values[0].dtype))
    return block


def _rows_of_one_block(values):
    """The array (len(values), ...) whose consecutive rows the NumPy `values`
    are, when they are views of one `memory` block laid out so (the CPU
    path's result, split by `rows`), else None."""
    first = values[0]
    block = memory.owner(first)
    if block is None or not _in_a_row(values) or any(memory.owner(value) is not block for value in values):
        return None
    whole = memory.whole(first).reshape(-1).view(np.uint8)
    offset = first.ctypes.data - whole.ctypes.data
    return whole[offset:offset + len(values) * first.nbytes].view(first.dtype).reshape((len(values),) + first.shape)


def _in_a_row(arrays):
    """Whether NumPy `arrays` are C-contiguous and lie one after another in
    memory, each starting where the one before it ends (as far apart as the
    first one is long)."""
    first = arrays[0]
    start, step = first.ctypes.data, first.nbytes
    return all(array.flags.c_contiguous and array.ctypes.data == start + index * step
               for index, array in enumerate(arrays))


def _lendable(value):
    """True for a NumPy value whose memory TensorFlow or PyTorch may keep as
    a variable's without a copy: the CPU path's own (`memory.empty`, which
    nothing else holds after an application), contiguous and aligned as
    TensorFlow requires (an unaligned tensor aborts the process in its
    kernels)."""
    return (
        isinstance(value, np.ndarray)
        and memory.owner(value) is not None
        and value.flags.c_contiguous
        and value.flags.writeable
        and value.ctypes.data % memory.ALIGNMENT == 0
    )


def _lent(value):
    """A `_lendable` value as a TensorFlow tensor on its memory (DLPack)."""
    import tensorflow as tf

    return tf.experimental.dlpack.from_dlpack(value.__dlpack__())


def _plain_tf_variable(value):
    """A `tf.Variable` with one resource (not a distributed one)."""
    import tensorflow as tf

    return isinstance(value, tf.Variable) and not isinstance(value, tf.distribute.DistributedValues)


# From how many variables of one shape and dtype TensorFlow reads or writes
# them in one graph call rather than one eager op each. Measured on 64 x 64
# kernels: 8 variables, read 0.28 against 0.30 ms, write 0.48 against
# 0.67 ms; 64 variables, read 0.65 against 2.2 ms, write 1.3 against 5.1 ms.
_GRAPH_READS_FROM = 8
_GRAPH_WRITES_FROM = 8
# From how many entries TensorFlow's `assign` lends the CPU path's values one
# by one (an eager op each, about 20 us) rather than stacking those that are
# not one block's rows (a copy of them all).
_LENT_ONE_BY_ONE_FROM = 1 << 14
# Up to how many variables a group's compiled results are returned row by row
# on JAX (`as_outputs`): more outputs compile for longer (8 x 256x1024: 0.15
# to 0.28 s, for 1.17 to 0.88 ms a call; one output per variable of 512
# kernels took 46 s).
_ROWS_OUT_UP_TO = 4
# From how many variables of one shape JAX's compiled application takes their
# values stacked on the host (`stacked_values`): 512 kernels of 64 x 64,
# first ShrinkPerturb 1.5 to 2.3 s -> 0.24 to 0.35 s, but each Pruning about
# 2 ms slower (19.3/19.7 -> 21.2/26.4 ms); 64 inputs compile quickly anyway.
_STACKED_INPUTS_FROM = 128
# From how many NumPy values of one shape JAX's `assign` transfers them stacked.
_STACKED_TRANSFERS_FROM = 8
# From how many entries JAX's `assign` transfers the CPU path's values one by
# one. Transfer and rows, until the rows were ready: 16 x 256K entries, 1.9
# ms stacked against 0.48 one by one; 64 x 64K, 3.0 against 1.9 ms (but no
# faster in an application: a transfer costs about 30 us in Python); 128 x
# 16K, 1.8 against 4.1 ms.
_TRANSFERRED_ALONE_FROM = 1 << 17
# At most this many variables per graph call: a graph of 512 reads or writes
# took 0.5 s to trace, one of 64 about 0.07 s, and the chunks of a larger
# group share one trace.
_GRAPH_CHUNK = 64
_TF_GRAPHS = {}


def _chunks(items):
    return [items[start:start + _GRAPH_CHUNK] for start in range(0, len(items), _GRAPH_CHUNK)]


def _tf_read(targets):
    """The values of `tf.Variable`s of one shape and dtype, stacked in one tensor."""
    import tensorflow as tf

    parts = []
    for chunk in _chunks(targets):
        if len(chunk) >= _GRAPH_READS_FROM:
            parts.append(_tf_graph("read", chunk)(chunk))
        else:
            parts.append(tf.stack([tf.raw_ops.ReadVariableOp(resource=t.handle, dtype=t.dtype) for t in chunk]))
    return parts[0] if len(parts) == 1 else tf.concat(parts, 0)


def _tf_write(targets, stacked):
    """Assigns row i of tensor `stacked` to `tf.Variable` `targets[i]`."""
    import tensorflow as tf

    start = 0
    for chunk in _chunks(targets):
        if len(chunk) >= _GRAPH_WRITES_FROM:
            _tf_graph("assign", chunk)(chunk, stacked, tf.constant(start, tf.int32))
        else:
            for offset, target in enumerate(chunk):
                tf.raw_ops.AssignVariableOp(resource=target.handle, value=stacked[start + offset])
        start += len(chunk)


def _tf_graph(kind, targets):
    """A TensorFlow graph function that reads ("read": one stacked tensor;
    "views": one tensor per variable, each its buffer without a copy),
    assigns ("assign": rows `start` to `start + len(variables)` of a stacked
    tensor) or zeroes under masks ("zeroed": those rows of stacked bool
    masks) `tf.Variable`s like `targets`.

    The variables are arguments, not captured: the function holds none of
    them alive and serves any variables of that count, shape and dtype.
    It is traced once per such signature and kept for the process as a
    concrete function. The returned callable, `call(variables, *tensors)`,
    passes the variables' resource handles to it flat, where TensorFlow
    has the flat call (`ConcreteFunction._call_flat(inputs, captured)`,
    private; without it, the public call): TensorFlow's own argument
    handling checks each variable and records its access for gradient
    tapes, about 4 us a variable (64 reads of 64 x 64: 0.48 ms a call
    against 0.22 ms), which the writer never needs.
    """
    import tensorflow as tf

    first = targets[0]
    key = (kind, len(targets), tuple(first.shape), first.dtype, first.trainable)
    if key not in _TF_GRAPHS:

        def read(variables):
            return tf.stack([tf.raw_ops.ReadVariableOp(resource=v.handle, dtype=v.dtype) for v in variables])

        def views(variables):
            return [tf.raw_ops.ReadVariableOp(resource=v.handle, dtype=v.dtype) for v in variables]

        def rows(variables, stacked, start):
            taken = tf.slice(stacked, tf.concat([[start], tf.zeros([len(first.shape)], tf.int32)], 0),
                             [len(variables)] + [-1] * len(first.shape))
            return tf.unstack(taken, num=len(variables))

        def assign(variables, stacked, start):
            for variable, row in zip(variables, rows(variables, stacked, start)):
                tf.raw_ops.AssignVariableOp(resource=variable.handle, value=row)

        def zeroed(variables, masks, start):
            zero = tf.zeros((), first.dtype)
            for variable, mask in zip(variables, rows(variables, masks, start)):
                value = tf.raw_ops.ReadVariableOp(resource=variable.handle, dtype=variable.dtype)
                tf.raw_ops.AssignVariableOp(resource=variable.handle, value=tf.where(mask, zero, value))

        if kind in ("read", "views"):
            function = read if kind == "read" else views
            graph = tf.function(function, autograph=False).get_concrete_function(list(targets))
        else:
            function = assign if kind == "assign" else zeroed
            spec = tf.TensorSpec((None,) + tuple(first.shape), first.dtype if kind == "assign" else tf.bool)
            start = tf.TensorSpec((), tf.int32)
            graph = tf.function(function, autograph=False).get_concrete_function(list(targets), spec, start)
        _TF_GRAPHS[key] = _flat_call(graph)
    return _TF_GRAPHS[key]


def _flat_call(graph):
    """`call(variables, *tensors)` of a concrete function traced with a list
    of variables and then tensors (see `_tf_graph`)."""
    flat, captured = getattr(graph, "_call_flat", None), graph.captured_inputs
    if flat is None:
        return lambda variables, *tensors: graph(variables, *tensors)
    return lambda variables, *tensors: flat([v.handle for v in variables] + list(tensors), captured)


def _torch_assign(variables, values):
    """`assign` on PyTorch: NumPy values of the tensor's dtype into CPU
    tensors, the CPU path's own (`_lendable`) as the tensor's memory without
    a copy (4 x 1024^2, Pruning 8.6 to 6.9 ms), others copied in place;
    returns the variables and values left for Keras's `assign` (about 25 us
    a variable: the int32 masks that hold 512 kernels' zeros took 13 ms)."""
    import torch

    dtypes = _torch_dtypes()
    rest = ([], [])
    with torch.no_grad():
        for variable, target, value in zip(variables, _values(variables), values):
            if (
                isinstance(value, np.ndarray)
                and dtypes.get(value.dtype) == target.dtype
                and tuple(value.shape) == tuple(target.shape)
                and target.device.type == "cpu"
            ):
                if _lendable(value):
                    target.data = torch.from_numpy(value)
                else:
                    target.copy_(torch.from_numpy(value))
            else:
                rest[0].append(variable)
                rest[1].append(value)
    return rest


@functools.cache
def _torch_dtypes():
    """The NumPy dtypes that `_torch_assign` hands to PyTorch (`torch.from_numpy`), each to its torch dtype."""
    import torch

    names = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
    return {np.dtype(name): getattr(torch, name) for name in names}


def stacked_values(variables):
    """The values of `variables` (one shape and dtype) as one array, where
    the compiled application should take them so, else None.

    On JAX without an accelerator, for `_STACKED_INPUTS_FROM` variables or more:
    XLA compiles a program for longer the more inputs it has (stacking
    512 kernels of 64 x 64 inside the call: 0.56 s to compile, against
    0.07 s for the same program on one stacked input), so they are viewed
    and stacked on the host into the CPU path's memory (`_one_block`),
    which JAX then keeps as the array without a copy.

    Example:
    >>> import keras
    >>> stacked_values([keras.Variable([1.0])]) is None
    True
    """
    if keras.backend.backend() != "jax" or len(variables) < _STACKED_INPUTS_FROM:
        return None
    import jax

    if jax.default_backend() != "cpu":  # on the CPU alone, every array is in host memory
        return None
    values = _values(variables)
    if not all(isinstance(value, jax.Array) for value in values):
        return None
    return jax.device_put(_one_block([np.asarray(value) for value in values]))


def as_outputs(stacked):
    """A group's stacked result as the compiled application returns it
    (called while tracing): on JAX, for a group of up to `_ROWS_OUT_UP_TO`
    variables, a tuple of its rows, one output each, which XLA writes in
    place (a row taken after the call is a copy: 4 x 1024^2, about 2 ms);
    otherwise as it is. `rows` takes either.

    Example:
    >>> len(rows(as_outputs(keras.ops.ones((2, 3)))))
    2
    """
    if keras.backend.backend() == "jax" and stacked.shape[0] <= _ROWS_OUT_UP_TO:
        return tuple(stacked[index] for index in range(stacked.shape[0]))
    return stacked


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
    if isinstance(stacked, (np.ndarray, tuple)):  # from the CPU path (`host_path`), or `as_outputs`
        return list(stacked)
    if keras.backend.backend() == "jax":
        row = _jax_compiled("row")
        return [row(stacked, index) for index in range(stacked.shape[0])]
    return keras.ops.unstack(stacked)


def assign_where(targets, masks, news):
    """Assigns `where(mask, new, target)` to each target variable; every value
    is computed before the first is assigned.

    On JAX each value is one compiled call (compiled once per shape;
    stacking hundreds of tensors compiled for seconds). Elsewhere small
    variables of one shape and dtype are stacked and go through one
    `where`, since an eager TensorFlow op costs about 0.1 ms however small
    (SET on 512 kernels resets 1024 Adam moments), and on TensorFlow the
    stacked result is written as it is (`_tf_write`); large ones (from
    `_STACKED_BELOW` entries) go one by one, as stacking them would only
    copy them twice more. On TensorFlow, zeros under NumPy masks into many
    small variables of one shape (an optimizer's moments) are written in
    graph calls that read, select and assign (`_tf_zeroing`), after every
    other value is written: checked inputs, nothing there can fail.

    Args:
        targets: Keras variables.
        masks: Bool tensors or arrays, one per target, of its shape.
        news: Tensors of each target's shape and dtype, or None for zero.

    Example:
    >>> import numpy as np
    >>> variable = keras.Variable([1.0, 1.0])
    >>> assign_where([variable], [np.array([True, False])], [None])
    >>> keras.ops.convert_to_numpy(variable).tolist()
    [0.0, 1.0]
    """
    in_graph = None
    if keras.backend.backend() == "tensorflow" and all(new is None for new in news):
        in_graph, targets, masks = _tf_zeroing(targets, masks)
        news = [None] * len(targets)
    if targets and not _zeroed_on_host(targets, masks, news):
        _where_each(targets, masks, news)
    if in_graph is not None:
        in_graph()  # last: it writes as it computes


def _where_each(targets, masks, news):
    """`assign_where` through backend ops."""
    ops = keras.ops
    if keras.backend.backend() == "jax":
        where, zeroed = _jax_compiled("where"), _jax_compiled("zeroed")
        values = [
            zeroed(mask, old) if new is None else where(mask, new, old)
            for old, mask, new in zip(_values(targets), masks, news)
        ]
        assign(targets, values)
        return
    olds = _values(targets)
    groups = {}
    for position, (new, target) in enumerate(zip(news, targets)):
        shape = arrays.shape(target)
        alone = position if math.prod(shape) >= _STACKED_BELOW else None
        groups.setdefault((shape, str(target.dtype), new is None, alone), []).append(position)
    computed = []  # (positions, stacked values or None, values one by one or None)
    for (_, _, zero, _), positions in groups.items():
        dtype = targets[positions[0]].dtype
        if len(positions) == 1:
            (p,) = positions
            new = ops.zeros((), dtype) if zero else news[p]
            computed.append((positions, None, [ops.where(ops.convert_to_tensor(masks[p], "bool"), new, olds[p])]))
            continue
        stacked = ops.where(
            _stacked_masks([masks[p] for p in positions]),
            ops.zeros((), dtype) if zero else ops.stack([news[p] for p in positions]),
            _stacked_values([olds[p] for p in positions]),
        )
        computed.append((positions, stacked, None))
    for positions, stacked, values in computed:
        if stacked is not None and keras.backend.backend() == "tensorflow":
            resources = [olds[p] for p in positions]
            if all(_plain_tf_variable(resource) for resource in resources):
                _tf_write(resources, stacked)
                continue
        group = [targets[p] for p in positions]
        assign(group, values if stacked is None else rows(stacked))


def _zeroed_on_host(targets, masks, news):
    """`assign_where` of zeros under the CPU path's NumPy masks, computed by
    its loops (`accel.host.fill`) where every target is a float32 variable
    in host memory on a backend that takes the CPU path; returns whether it
    was. An optimizer's moments under SET's masks on 4 x 1024^2: one pass
    and no copy each, against a conversion, a `where` and a copy. Small
    targets of one shape (under `_LENT_ONE_BY_ONE_FROM` entries, which
    TensorFlow would take stacked anyway) are read into one batch and
    filled in one call, so their results are one block's rows, assigned
    together (SET's 1024 Adam moments on 512 x 64^2: 53 to 36 ms an
    application, against a call and a block per moment)."""
    from kerastroke.accel import host

    if (
        HOST_BACKENDS.get(keras.backend.backend()) != "every"
        or not targets
        or any(new is not None for new in news)
        or not all(isinstance(mask, np.ndarray) and mask.ndim for mask in masks)
        or not all(arrays.dtype_name(target) == "float32" for target in targets)
        or not host_path(targets)
    ):
        return False
    views = _host_views(targets)()
    batches = {}  # positions of small targets by shape; a large one alone
    for position, view in enumerate(views):
        batches.setdefault(view.shape if view.size < _LENT_ONE_BY_ONE_FROM else ("alone", position), []).append(position)
    values = [None] * len(targets)
    for positions in batches.values():
        if len(positions) == 1:
            values[positions[0]] = host.fill(views[positions[0]], masks[positions[0]], 0.0)
            continue
        batch, chosen = _one_block([views[p] for p in positions]), _one_block([masks[p] for p in positions])
        for position, value in zip(positions, host.fill(batch, chosen, 0.0)):
            values[position] = value
    assign(targets, values)
    return True


def _tf_zeroing(targets, masks):
    """Splits off the small `tf.Variable`s among `targets` (under
    `_LENT_ONE_BY_ONE_FROM` entries) that come `_GRAPH_WRITES_FROM` or more
    to a shape, with NumPy bool masks: returns a function that zeroes them
    under their masks in graph calls (`_tf_graph`, the masks in as one
    block, lent where they are its rows), and the targets and masks left.
    Reading such variables to the host, filling there and writing back
    cost three passes and a Python step per variable (SET's 1024 Adam
    moments on 512 x 64^2: about 20 to 8 ms)."""
    import tensorflow as tf

    groups, left = {}, []
    for target, value, mask in zip(targets, _values(targets), masks):
        small = (
            isinstance(mask, np.ndarray)
            and mask.size < _LENT_ONE_BY_ONE_FROM
            and mask.dtype == np.bool_
            and mask.shape == arrays.shape(target)
        )
        if small and _plain_tf_variable(value):
            groups.setdefault((mask.shape, value.dtype), []).append((target, value, mask))
        else:
            left.append((target, value, mask))
    batches = []
    for group in groups.values():
        if len(group) < _GRAPH_WRITES_FROM:
            left.extend(group)
        else:
            batches.append(([value for _, value, _ in group], _one_block([mask for _, _, mask in group])))

    def zero():
        for values, block in batches:
            block = _lent(block) if _lendable(block) else tf.convert_to_tensor(block)
            start = 0
            for chunk in _chunks(values):
                _tf_graph("zeroed", chunk)(chunk, block, tf.constant(start, tf.int32))
                start += len(chunk)

    return (zero if batches else None), [target for target, _, _ in left], [mask for _, _, mask in left]


def _stacked_masks(masks):
    """Bool masks stacked into one tensor: NumPy ones stacked first, then converted once."""
    if all(isinstance(mask, np.ndarray) for mask in masks):
        return keras.ops.convert_to_tensor(np.stack(masks).astype(bool, copy=False))
    return keras.ops.stack([keras.ops.convert_to_tensor(mask, "bool") for mask in masks])


def _stacked_values(values):
    """Tensors or variables of one shape stacked into one tensor; on TensorFlow
    many variables are read and stacked in one graph call (`_tf_graph`)."""
    if (
        keras.backend.backend() == "tensorflow"
        and len(values) >= _GRAPH_READS_FROM
        and all(_plain_tf_variable(value) for value in values)
    ):
        return _tf_read(values)
    return keras.ops.stack(values)


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


def counts(masks):
    """`count` of each of several boolean tensors of one shape, in one pass where that pays.

    On JAX, several counts of tensors computed from the same inputs are one
    variadic reduction: XLA's CPU compiler otherwise fuses the sibling
    masks into one loop that writes each out as int32, then sums each with
    a slow windowed reduction (three counts of 4 x 1M entries took 36 ms;
    as one reduction, 1.6 ms). Elsewhere each is counted on its own.

    Args:
        masks: Bool tensors, all of one shape (R, ...).

    Returns:
        A list of int32 tensors (R,): the True entries of each mask's rows.

    Example:
    >>> import numpy as np
    >>> a, b = np.array([[True, False, True]]), np.array([[False, False, True]])
    >>> [keras.ops.convert_to_numpy(c).tolist() for c in counts([a, b])]
    [[2], [1]]
    """
    masks = [keras.ops.convert_to_tensor(mask, "bool") for mask in masks]
    if keras.backend.backend() != "jax" or len(masks) < 2:
        return [count(keras.ops.reshape(mask, (mask.shape[0], -1))) for mask in masks]
    import jax
    import jax.numpy as jnp

    rows = [jnp.reshape(mask, (mask.shape[0], -1)).astype(jnp.int32) for mask in masks]
    zeros = [jnp.zeros((), jnp.int32)] * len(rows)
    return list(jax.lax.reduce(rows, zeros, lambda a, b: [x + y for x, y in zip(a, b)], (1,)))


def kth_smallest(values, k, width, start):
    """Each row's `k`-th smallest entry, where the backend finds it faster than bisection, or None.

    `kerastroke.core.ranking` otherwise bisects over the bits, one
    compare-and-count pass per bit. Both give the same value: the largest
    `t` in `[start, start + 2**width)` with fewer than `k` entries below it.

    - PyTorch: `torch.kthvalue`, one selection pass.
    - JAX: two bits per pass, 16 passes for int32 rather than 32: each
      pass counts the entries below three candidates as one variadic
      reduction, which XLA's CPU compiler runs about as fast as one plain
      count (a 32-pass bisection of 4 rows of 1M keys took 56 ms, this
      6 ms; 512 rows of 4096, 20 ms against 3 ms).

    Args:
        values: Integer tensor (R, N), int32 or int64.
        k: int32 tensor (R,), each in [1, N].
        width: The bits searched: the dtype's width, or fewer for values
            known to lie in `[0, 2**width)` apart from entries equal to the
            dtype's maximum (which never count as below a candidate).
        start: The smallest value searched: the dtype's minimum over its
            full width, else 0.

    Returns:
        A tensor (R,) of `values`' dtype, or None: the caller bisects.

    Example:
    >>> import numpy as np
    >>> values = keras.ops.convert_to_tensor(np.array([[5, 1, 4, 1, 3]], dtype="int32"))
    >>> found = kth_smallest(values, keras.ops.convert_to_tensor(np.array([3], dtype="int32")), 32, -2**31)
    >>> found is None or keras.ops.convert_to_numpy(found).tolist() == [3]
    True
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return _kth_by_two_bits(values, k, width, start)
    if backend != "torch" or 0 in tuple(values.shape):
        return None  # (an empty row has no k-th entry: bisection gives its start)
    import torch

    ks = [int(value) for value in k.tolist()]
    if len(set(ks)) == 1:
        return torch.kthvalue(values, ks[0], dim=1).values
    return torch.stack([torch.kthvalue(row, rank).values for row, rank in zip(values, ks)])


def _kth_by_two_bits(values, k, width, start):
    """`kth_smallest` on JAX: bisection over digits of two bits, most significant first.

    The threshold `t` so far has its low bits zero; each pass counts the
    entries below `t + j * 2**shift` for j = 1, 2, 3 (candidates in
    increasing order that never wrap, as they only fill the zero bits) and
    moves `t` up by as many steps as have fewer than `k` below. An odd
    width starts with one single-bit pass.
    """
    import jax
    import jax.numpy as jnp

    dtype = values.dtype
    k = k.astype(jnp.int32)

    def counts_below(threshold, steps, shift):
        candidates = [threshold + (jnp.asarray(j, dtype) << shift) for j in range(1, steps + 1)]
        totals = counts([values < jnp.expand_dims(c, 1) for c in candidates])
        taken = sum((total < k).astype(dtype) for total in totals)
        return threshold + (taken << shift)

    threshold = jnp.full(values.shape[:1], start, dtype)
    if width % 2:
        threshold = counts_below(threshold, 1, jnp.asarray(width - 1, dtype))
    digits = width // 2

    def step(i, threshold):
        return counts_below(threshold, 3, (digits - 1 - i).astype(dtype) * 2)

    return jax.lax.fori_loop(0, digits, step, threshold)
