"""The CPU path's host memory (`kerastroke.accel.memory`): reused, never while held."""

import threading

import keras
import numpy as np
import pytest

from kerastroke.accel import memory

_BIG = (256, 1024)  # 1 MB of float32: pooled


def _address(array):
    return array.__array_interface__["data"][0]


@pytest.mark.parametrize("shape, dtype", [(_BIG, np.float32), ((3, 5), np.bool_), ((0, 4), np.uint32)])
def test_empty_gives_an_array_of_the_shape_and_dtype_aligned_where_pooled(shape, dtype):
    # Small arrays are NumPy's own: no owner, so never lent to a backend,
    # which is what the alignment is for.
    array = memory.empty(shape, dtype)
    assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous and array.flags.writeable
    pooled = array.nbytes >= memory._POOLED_FROM
    assert (memory.owner(array) is not None) == pooled
    if pooled:
        assert _address(array) % memory.ALIGNMENT == 0


def test_a_block_is_reused_once_nothing_holds_it():
    first = memory.empty(_BIG, np.float32)
    address = _address(first)
    view = first[7:9]
    del first
    held = memory.empty(_BIG, np.float32)
    assert _address(held) != address  # a view still holds the first block
    del view
    again = memory.empty(_BIG, np.float32)
    assert _address(again) == address
    del held, again


def test_a_block_that_a_backend_tensor_holds_is_not_reused():
    # On the CPU a backend may build a tensor on a NumPy array's memory (PyTorch's
    # from_numpy, DLPack on TensorFlow); the block returns only when it lets go.
    array = memory.empty(_BIG, np.float32)
    array.fill(2.0)
    address = _address(array)
    if keras.backend.backend() == "torch":
        import torch

        tensor = torch.from_numpy(array)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    else:
        tensor = array[:]  # JAX copies a NumPy array to its own buffer: a view holds it here
    del array
    other = memory.empty(_BIG, np.float32)
    assert _address(other) != address
    other.fill(5.0)
    assert float(keras.ops.convert_to_numpy(tensor).max()) == 2.0
    del tensor
    assert _address(memory.empty(_BIG, np.float32)) == address


def test_blocks_let_go_on_another_thread_come_back():
    array = memory.empty(_BIG, np.float32)
    address = _address(array)
    holder = [array]
    del array
    worker = threading.Thread(target=holder.clear)
    worker.start()
    worker.join()
    assert _address(memory.empty(_BIG, np.float32)) == address


def test_at_most_the_limit_of_free_memory_is_kept(monkeypatch):
    monkeypatch.setattr(memory, "_free", {})
    monkeypatch.setattr(memory, "_kept", [0])
    monkeypatch.setattr(memory, "_KEEP_BYTES", 3 * 1024 * 1024)
    arrays = [memory.empty(_BIG, np.float32) for _ in range(5)]  # 5 MB
    del arrays
    memory.empty((1, 1 << 16), np.uint8)  # takes in what was let go of
    assert memory.kept_bytes() == 3 * 1024 * 1024


def test_small_arrays_are_plain_numpy_memory():
    # Under `_POOLED_FROM` bytes `malloc` serves arrays from memory it keeps anyway.
    small = memory.empty((4, 4), np.float32)
    assert small.base is None and memory.owner(small) is None
    assert isinstance(memory.empty(_BIG, np.float32).base, memory._Owner)
