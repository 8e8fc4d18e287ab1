"""The backend-aware steps of `kerastroke.accel`: each gives what plain `keras.ops` would.

Their speed differs by backend (stacked on TensorFlow, one compiled call per
tensor on JAX); these tests pin the values, on every backend.
"""

import keras
import numpy as np
import pytest

from kerastroke import accel
from kerastroke.accel import memory


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("stacked_below", [1 << 16, 1], ids=["small-stacked", "each-alone"])
@pytest.mark.parametrize("copies", [1, 9], ids=["few", "one-graph-write"])
def test_assign_where_keeps_order_across_shapes_and_dtypes(monkeypatch, stacked_below, copies):
    # Variables of one shape and dtype are stacked unless large (and on
    # TensorFlow, from accel._GRAPH_WRITES_FROM of them, written from the
    # stack in one call); each still gets its own result, in order.
    monkeypatch.setattr(accel, "_STACKED_BELOW", stacked_below)
    olds = [
        np.array([1.0, 2.0, 3.0], "float32"),
        np.array([[4.0, 5.0], [6.0, 7.0]], "float32"),
        np.array([8.0, 9.0, 10.0], "float32"),
        np.array([1, 2], "int32"),
        np.array([11.0, 12.0, 13.0], "float32"),
    ]
    masks = [
        np.array([True, False, True]),
        np.array([[False, True], [True, False]]),
        np.array([False, False, True]),
        np.array([True, False]),
        np.array([False, True, False]),
    ]
    news = [None, keras.ops.full((2, 2), -1.0), keras.ops.full((3,), 0.5), None, None]
    expected = [[0.0, 2.0, 0.0], [[4.0, -1.0], [-1.0, 7.0]], [8.0, 9.0, 0.5], [0, 2], [11.0, 0.0, 13.0]]
    targets = [keras.Variable(old, trainable=False) for _ in range(copies) for old in olds]
    untouched = keras.Variable(np.array([1.0, 2.0, 3.0], "float32"))

    accel.assign_where(targets, masks * copies, news * copies)

    assert [numpy(t).tolist() for t in targets] == expected * copies
    assert [keras.backend.standardize_dtype(t.dtype) for t in targets] == (["float32"] * 3 + ["int32", "float32"]) * copies
    assert numpy(untouched).tolist() == [1.0, 2.0, 3.0]
    assert olds[0].tolist() == [1.0, 2.0, 3.0]  # inputs untouched


@pytest.mark.parametrize("masks_from", ["one-block", "separate-arrays"])
@pytest.mark.parametrize("count, shape", [(20, (64, 64)), (70, (8, 8))], ids=["one-chunk", "two-chunks"])
def test_zeroing_under_many_host_masks_zeroes_each_variable_under_its_own(masks_from, count, shape):
    # Optimizer moments reset under the CPU path's NumPy masks: variables of
    # one shape are zeroed as one batch (the masks read as one block's rows
    # where they are, as the writer's are; on TensorFlow in graph calls of at
    # most 64 variables, each from its own rows), and each still gets its
    # own mask; a variable of another shape is zeroed alone. The masks of
    # 20 x 64 x 64 make a block large enough to be pooled; 70 x 8 x 8 not.
    rng = np.random.default_rng(0)
    olds = rng.uniform(1.0, 2.0, size=(count,) + shape).astype("float32")
    chosen = rng.random((count,) + shape) < 0.3
    if masks_from == "one-block":
        masks = memory.empty((count,) + shape, np.bool_)
        masks[...] = chosen
        masks = list(masks)
    else:
        masks = [np.array(mask) for mask in chosen]
    odd = keras.Variable(np.ones((5,), "float32"))
    variables = [keras.Variable(old) for old in olds]
    accel.assign_where(variables[:7] + [odd] + variables[7:], masks[:7] + [np.array([1, 0, 0, 0, 1], bool)] + masks[7:],
                       [None] * (count + 1))
    for variable, old, mask in zip(variables, olds, chosen):
        assert np.array_equal(numpy(variable), np.where(mask, np.float32(0.0), old))
    assert numpy(odd).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_rows_gives_each_row_as_its_own_tensor():
    stacked = keras.ops.convert_to_tensor(np.arange(12, dtype="float32").reshape(3, 2, 2))
    rows = accel.rows(stacked)
    assert len(rows) == 3
    for index, row in enumerate(rows):
        assert tuple(row.shape) == (2, 2)
        assert numpy(row).tolist() == np.arange(12, dtype="float32").reshape(3, 2, 2)[index].tolist()


def test_assign_takes_keras_path_for_a_value_of_another_dtype():
    variable = keras.Variable(np.zeros((2,), "float32"))
    accel.assign([variable], [np.array([1.5, 2.5], "float64")])
    assert numpy(variable).tolist() == [1.5, 2.5]
    assert keras.backend.standardize_dtype(variable.dtype) == "float32"


@pytest.mark.parametrize("count", [3, 70], ids=["op-by-op", "one-graph-call"])
def test_assign_and_host_reader_give_each_variable_its_own_row(count):
    # Many variables of one shape are read and written in one call on
    # TensorFlow (from accel._GRAPH_READS_FROM / _GRAPH_WRITES_FROM); each row
    # still goes to its own variable, in order, and nothing else is written.
    assert count >= max(accel._GRAPH_READS_FROM, accel._GRAPH_WRITES_FROM) or count < min(
        accel._GRAPH_READS_FROM, accel._GRAPH_WRITES_FROM
    )
    variables = [keras.Variable(np.full((2, 3), -1.0, "float32")) for _ in range(count)]
    other_shape = keras.Variable(np.zeros((4,), "float32"))
    untouched = keras.Variable(np.full((2, 3), 7.0, "float32"))
    values = np.arange(count * 6, dtype="float32").reshape(count, 2, 3)
    halves = count // 2
    # NumPy rows for the first half, tensors for the rest, one variable of another shape.
    accel.assign(
        variables[:halves] + [other_shape] + variables[halves:],
        list(values[:halves]) + [np.ones((4,), "float32")] + [keras.ops.convert_to_tensor(v) for v in values[halves:]],
    )
    for index, variable in enumerate(variables):
        assert numpy(variable).tolist() == values[index].tolist()
    assert numpy(other_shape).tolist() == [1.0] * 4
    assert numpy(untouched).tolist() == [[7.0] * 3] * 2

    read = accel.host_reader(variables)
    assert np.array_equal(read(), values)
    accel.assign(variables, list(values + 1.0))
    assert np.array_equal(read(), values + 1.0)  # a reader reads the current values each call


def test_consecutive_arrays_are_joined_without_a_copy_and_others_are_not():
    block = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    joined = accel._joined(list(block))
    assert np.shares_memory(joined, block) and np.array_equal(joined, block)
    assert joined.flags.writeable == block.flags.writeable
    assert np.array_equal(accel._joined(list(block[1:3])), block[1:3])
    # Out of order, with a gap, or apart: None, and the reader stacks them.
    assert accel._joined(list(block[::-1])) is None
    assert accel._joined(list(block[::2])) is None
    assert accel._joined([block[0], block[1].copy()]) is None
    assert accel._joined([block[0, 0], block[0, 1], block[1, 0].reshape(1, 3)]) is None  # another shape


def test_a_reader_views_variables_laid_out_row_after_row_and_reads_each_change(monkeypatch):
    # On PyTorch, the CPU path's result becomes the variables' memory, rows of
    # one block; the next read views that block instead of copying it. (Blocks
    # of 64 KB and more are the CPU path's own: `memory._POOLED_FROM`.)
    monkeypatch.setattr(accel, "HOST_BACKENDS", {keras.backend.backend(): "every"})
    variables = [keras.Variable(np.full((128, 128), float(i), "float32")) for i in range(3)]
    block = memory.empty((3, 128, 128), np.float32)
    block[...] = np.arange(3, dtype=np.float32)[:, None, None] + 0.5
    accel.assign(variables, list(block))
    del block
    read = accel.host_reader(variables)
    first = read()
    np.testing.assert_array_equal(first, np.arange(3, dtype=np.float32)[:, None, None] + np.zeros((3, 128, 128)) + 0.5)
    if keras.backend.backend() == "torch":
        assert first.base is not None and isinstance(first.base, accel._Joined)
    variables[1].assign(np.full((128, 128), 9.0, "float32"))  # in place on PyTorch: still joined
    np.testing.assert_array_equal(read()[1], np.full((128, 128), 9.0))
    np.testing.assert_array_equal(read()[2], np.full((128, 128), 2.5))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="graph calls are TensorFlow's only")
def test_tensorflow_graph_calls_give_the_same_rows_without_the_private_flat_call(monkeypatch):
    # Graph reads and writes pass the variables' handles to the private
    # `ConcreteFunction._call_flat`; a TensorFlow without it takes the public call.
    calls = []

    class PublicOnly:
        def __init__(self, graph):
            self.graph, self.captured_inputs = graph, graph.captured_inputs

        def __call__(self, *args):
            calls.append(len(args[0]))
            return self.graph(*args)

    flat_call = accel._flat_call
    monkeypatch.setattr(accel, "_TF_GRAPHS", {})
    monkeypatch.setattr(accel, "_flat_call", lambda graph: flat_call(PublicOnly(graph)))
    short = max(accel._GRAPH_READS_FROM, accel._GRAPH_WRITES_FROM)
    count = 2 * accel._GRAPH_CHUNK + short  # two full chunks and a short one, all graph calls
    variables = [keras.Variable(np.zeros((2, 3), "float32")) for _ in range(count)]
    values = np.arange(count * 6, dtype="float32").reshape(count, 2, 3)
    accel.assign(variables, [keras.ops.convert_to_tensor(v) for v in values])
    assert [numpy(v).tolist() for v in variables] == values.tolist()
    assert np.array_equal(accel.host_reader(variables)(), values)
    assert calls == [accel._GRAPH_CHUNK, accel._GRAPH_CHUNK, short] * 2  # written, then read, by the public call


@pytest.mark.parametrize("width", [32, 5, 4])
def test_kth_smallest_is_the_sorted_rows_kth_entry_or_none_on_tensorflow(width):
    # Over fewer bits, the values lie in [0, 2**width), apart from entries
    # left out at the dtype's maximum, which never count.
    rng = np.random.default_rng(width)
    top = 2**31 - 1
    if width == 32:
        values = rng.integers(-(2**31), 2**31, size=(3, 50), dtype=np.int64).astype(np.int32)
        values[0, :3] = [-(2**31), top, top]
        start = -(2**31)
    else:
        values = rng.integers(0, 2**width, size=(3, 50)).astype(np.int32)
        values[1, ::7] = top
        start = 0
    k = np.array([1, 17, 50], dtype=np.int32)
    found = accel.kth_smallest(keras.ops.convert_to_tensor(values), keras.ops.convert_to_tensor(k), width, start)
    if keras.backend.backend() == "tensorflow":
        assert found is None  # TensorFlow bisects in `ranking`
        return
    expected = [int(np.sort(row)[rank - 1]) for row, rank in zip(values, k)]
    assert keras.ops.convert_to_numpy(found).tolist() == expected


def test_counts_gives_each_masks_true_entries_per_row():
    rng = np.random.default_rng(0)
    masks = [rng.random((4, 3, 5)) < p for p in (0.0, 0.3, 0.9)]
    found = accel.counts([keras.ops.convert_to_tensor(mask) for mask in masks])
    assert [numpy(c).tolist() for c in found] == [mask.reshape(4, -1).sum(1).tolist() for mask in masks]
    assert all(keras.backend.standardize_dtype(c.dtype) == "int32" for c in found)


@pytest.fixture
def lent(monkeypatch):
    """The shapes of the values TensorFlow is handed without a copy (`accel._lent`)."""
    shapes = []
    original = accel._lent
    monkeypatch.setattr(accel, "_lent", lambda value: shapes.append(value.shape) or original(value))
    return shapes


@pytest.mark.parametrize("count", [3, 20], ids=["op-by-op", "one-graph-call"])
@pytest.mark.parametrize("width", [16, 10], ids=["aligned-rows", "unaligned-rows"])
def test_assigning_the_cpu_paths_memory_leaves_the_variables_their_own(count, width, lent):
    # The CPU path's results live in `accel.memory` blocks. TensorFlow keeps
    # such a block as the variables' memory without a copy (DLPack) where it
    # is aligned as its kernels require; rows that are not are copied (an
    # unaligned tensor would abort the process in a reduction). Either way
    # the block is reused only once no variable holds it.
    variables = [keras.Variable(np.zeros((width,), "float32")) for _ in range(count)]
    entries = 1 << 16  # a pooled size, of which the rows take the start
    block = memory.empty((entries,), np.float32)
    stacked = block[: count * width].reshape(count, width)
    expected = np.arange(count * width, dtype=np.float32).reshape(count, width)
    stacked[...] = expected
    accel.assign(variables, list(stacked))
    del block, stacked
    for _ in range(3):  # blocks of that size, taken and overwritten
        memory.empty((entries,), np.float32).fill(-1.0)
    for row, variable in zip(expected, variables):
        assert numpy(variable).tolist() == row.tolist()
        variable.assign_add(np.ones((width,), "float32"))  # in place where the backend can
        assert numpy(variable).tolist() == (row + 1.0).tolist()
        assert float(keras.ops.convert_to_numpy(keras.ops.sum(variable.value))) == float((row + 1.0).sum())
    if keras.backend.backend() == "tensorflow":
        if count >= accel._GRAPH_WRITES_FROM:  # lent whole, split in the graph
            assert lent == [(count, width)]
        else:  # each row lent if it starts on a boundary (all 16-float rows, every 8th of 10)
            assert lent == [(width,)] * sum(row * width * 4 % memory.ALIGNMENT == 0 for row in range(count))


@pytest.mark.parametrize("width", [1024, 1 << 14], ids=["small-stacked", "large-one-by-one"])
def test_many_values_of_separate_blocks_are_assigned_and_kept(width, lent):
    # Many values of one shape that are not one block's rows (an optimizer's
    # moments, each zeroed on its own): small ones are stacked into a new
    # block and lent whole, large ones lent one by one (on TensorFlow).
    count = 20
    variables = [keras.Variable(np.zeros((width,), "float32")) for _ in range(count)]
    values = [memory.empty((width,), np.float32) for _ in range(count)]
    for index, value in enumerate(values):
        value.fill(float(index))
    accel.assign(variables, values)
    del values, value
    for _ in range(2 * count):
        memory.empty((width,), np.float32).fill(-1.0)
        memory.empty((count, width), np.float32).fill(-1.0)
    for index, variable in enumerate(variables):
        assert np.all(numpy(variable) == float(index))
    if keras.backend.backend() == "tensorflow":
        assert lent == ([(count, width)] if width < accel._LENT_ONE_BY_ONE_FROM else [(width,)] * count)


def test_a_group_stacked_before_the_compiled_call_gives_the_same_bits(monkeypatch):
    # On JAX, many variables of one shape go into the compiled application
    # stacked on the host (`accel.stacked_values`: fewer inputs compile
    # faster); elsewhere, and below the threshold, the call stacks them.
    # Either way an application writes the same bits.
    import kerastroke

    def applied(threshold):
        monkeypatch.setattr(accel, "_STACKED_INPUTS_FROM", threshold)
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((8,))] + [keras.layers.Dense(8) for _ in range(4)])
        callback = kerastroke.Pruning(min_value=-0.3, max_value=0.3, seed=5)  # compiled on JAX: no ranking
        callback.set_model(model)
        callback.apply(1)
        return [numpy(v) for v in model.weights]

    stacked, unstacked = applied(2), applied(10**9)
    for a, b in zip(stacked, unstacked):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    variables = [keras.Variable(np.full((3,), float(i), "float32")) for i in range(4)]
    monkeypatch.setattr(accel, "_STACKED_INPUTS_FROM", 2)
    block = accel.stacked_values(variables)
    if keras.backend.backend() == "jax":
        assert numpy(block).tolist() == [[float(i)] * 3 for i in range(4)]
    else:
        assert block is None


@pytest.mark.parametrize("count", [2, 9], ids=["few", "many"])
def test_large_rows_of_the_cpu_paths_memory_are_assigned_and_kept(count):
    # Large rows of one block: on JAX each is transferred on its own, and
    # JAX's CPU client keeps that memory as the array's (no copy); on
    # TensorFlow each is lent on its own. The block goes back to `memory`
    # only once no variable holds a row of it, so blocks taken and
    # overwritten afterwards never change a variable.
    width = accel._TRANSFERRED_ALONE_FROM
    variables = [keras.Variable(np.zeros((width,), "float32")) for _ in range(count)]
    block = memory.empty((count, width), np.float32)
    expected = np.arange(count, dtype=np.float32)[:, None] + np.linspace(0.0, 1.0, width, dtype=np.float32)
    block[...] = expected
    accel.assign(variables, list(block))
    del block
    for _ in range(3):
        memory.empty((count, width), np.float32).fill(-1.0)
    for row, variable in zip(expected, variables):
        np.testing.assert_array_equal(numpy(variable), row)
        variable.assign_add(np.ones((width,), "float32"))
        np.testing.assert_array_equal(numpy(variable), row + 1.0)


def test_values_are_what_keras_value_gives_inside_and_outside_scopes():
    # `accel._values` reads the array a variable holds directly only where
    # that is what `variable.value` gives: a stateless scope's value and an
    # autocast scope's cast must still come through.
    from keras.src.backend.common.variables import AutocastScope

    variable = keras.Variable(np.array([1.0, 2.0], "float32"))
    tensor = keras.ops.convert_to_tensor(np.array([3.0], "float32"))
    (value, same) = accel._values([variable, tensor])
    assert numpy(value).tolist() == [1.0, 2.0] and same is tensor
    assert value is variable._value  # the held array itself, not a copy
    stand_in = keras.ops.convert_to_tensor(np.array([5.0, 6.0], "float32"))
    with keras.StatelessScope(state_mapping=[(variable, stand_in)]):
        assert numpy(accel._values([variable])[0]).tolist() == [5.0, 6.0]
    with AutocastScope("float16"):
        assert keras.backend.standardize_dtype(accel._values([variable])[0].dtype) == "float16"


def test_assign_inside_a_stateless_scope_records_the_values_and_writes_nothing():
    # The CPU path's results (rows of one `memory` block) go straight into
    # the variables only outside a stateless scope; inside one, they are
    # the scope's values, as `variable.assign` makes them.
    count = accel._STACKED_TRANSFERS_FROM
    variables = [keras.Variable(np.zeros((4,), "float32")) for _ in range(count)]
    block = memory.empty((count, 4), np.float32)
    block[...] = np.arange(count * 4, dtype=np.float32).reshape(count, 4)
    with keras.StatelessScope() as scope:
        accel.assign(variables, list(block))
        recorded = [numpy(scope.get_current_value(variable)).tolist() for variable in variables]
    assert recorded == block.tolist()
    assert all(numpy(variable).tolist() == [0.0] * 4 for variable in variables)
    accel.assign(variables, list(block))
    assert [numpy(variable).tolist() for variable in variables] == block.tolist()


def test_assign_takes_numpy_values_of_every_dtype_without_aliasing_them():
    # Integer and bool values (the masks that hold zeros are int32) go the
    # fast way too; on TensorFlow and PyTorch a NumPy value that is not the
    # CPU path's own is copied, so changing it afterwards changes no
    # variable. (JAX's CPU client may keep an aligned NumPy array's memory
    # through Keras's own `assign` as well; the engine never writes a value
    # it has assigned, so that is not checked there.)
    dtypes = ["int32", "float64", "bool", "uint8", "float32"]
    variables = [keras.Variable(np.zeros((3,), d), dtype=d, trainable=False) for d in dtypes]
    values = [np.array([1, 2, 3], d) for d in dtypes]
    accel.assign(variables, values)
    if keras.backend.backend() != "jax":
        for value in values:
            value[...] = 0
    assert [numpy(v).tolist() for v in variables] == [[1, 2, 3], [1.0, 2.0, 3.0], [True, True, True], [1, 2, 3], [1.0, 2.0, 3.0]]
    assert [keras.backend.standardize_dtype(v.dtype) for v in variables] == dtypes
