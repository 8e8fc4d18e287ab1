"""Weights in host memory: views of CPU tensors, aligned buffers, and lending them back.

On TensorFlow's CPU backend a variable's memory is read through DLPack
without a copy, and a new NumPy buffer is handed back the same way: the
variable adopts it on `assign`. Handing back costs nothing, but a new
buffer does: its pages are faulted in (and zeroed by the kernel) on first
write, and the variable's old buffer is unmapped when it lets go of it.
So the buffers lent to TensorFlow are taken back for the next write once
nothing holds them any more: TensorFlow releases the reference its DLPack
import held when it lets go of the memory, and every NumPy view of a
buffer holds a reference to it.
"""

import math
import sys
import threading

import keras
import numpy as np

from kerastroke.core import arrays

# TensorFlow's CPU kernels require buffers aligned to 64 bytes (Eigen's
# largest packet); a tensor sharing an unaligned NumPy buffer aborts the process.
_ALIGN = 64

# Free buffers kept for reuse, at most this many bytes in all; the rest are freed.
SPARE_BYTES = 512 * 2**20


def _tensorflow_on_cpu(x):
    return keras.backend.backend() == "tensorflow" and "CPU" in getattr(x, "device", "")


class _Capsule:
    """Hands a TensorFlow DLPack capsule to `np.from_dlpack`, which wants `__dlpack__`."""

    def __init__(self, x):
        import tensorflow as tf

        # A variable is read first: reading a CPU variable shares its buffer.
        self.capsule = tf.experimental.dlpack.to_dlpack(tf.convert_to_tensor(x))

    def __dlpack__(self, stream=None, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


class _Lent:
    """A buffer lent out; free once no array (lent, or any view of it) holds it."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def references(self):
        return sys.getrefcount(self.raw)

    def free(self):
        # Every array sharing the buffer holds a reference to it, and so does
        # TensorFlow through the lent array until it lets go of its memory.
        return self.references() == _UNSHARED


# The count `_Lent.references` gives for a buffer nothing else holds,
# measured rather than assumed (interpreters count temporary references differently).
_UNSHARED = _Lent(np.empty(1, np.uint8)).references()

_lent = []
# Callbacks in several threads (one model each) share `_lent`: taking a buffer
# out of it and putting one in happen under this lock.
_lock = threading.Lock()


def aligned_empty(dims, dtype):
    """An uninitialised NumPy array whose buffer `lend` can share.

    A buffer of the same size that TensorFlow has let go of is reused;
    otherwise the buffer is new.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(dims) * dtype.itemsize
    raw = _reclaim(nbytes + _ALIGN)
    if raw is None:
        raw = np.empty(nbytes + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(dims)


def _reclaim(size):
    """A free lent buffer of `size` bytes, taken out of `_lent`, or None.

    Free buffers beyond `SPARE_BYTES` (oldest first) are dropped on the way.
    """
    found, spare = None, 0
    with _lock:
        for entry in reversed(list(_lent)):
            if not entry.free():
                continue
            if found is None and entry.raw.nbytes == size:
                found = entry.raw
                _lent.remove(entry)
            elif spare + entry.raw.nbytes <= SPARE_BYTES:
                spare += entry.raw.nbytes
            else:
                _lent.remove(entry)
    return found


def release():
    """Frees the lent buffers nothing holds any more (the callbacks call it when training ends)."""
    with _lock:
        _lent[:] = [entry for entry in _lent if not entry.free()]


def view(x):
    """A NumPy array sharing the memory of the CPU tensor `x`, or None.

    None where the memory cannot be shared: a tensor on an accelerator, or
    a dtype DLPack has no type for (bfloat16 in TensorFlow). The view must
    only be read.
    """
    if keras.backend.backend() == "tensorflow":
        if not _tensorflow_on_cpu(x):
            return None
        try:
            return np.from_dlpack(_Capsule(x))
        except (BufferError, RuntimeError, TypeError):
            return None  # bfloat16 has no DLPack type
    if "cpu" not in str(getattr(x, "device", "cpu")).lower():
        return None
    return arrays.to_numpy(x)  # a view of CPU memory on JAX and PyTorch


def copy(x):
    """A new, writable NumPy array with the values of the tensor `x`, in a buffer `lend` can share.

    A TensorFlow CPU tensor is read through DLPack without a copy and then
    copied once by NumPy. NumPy's fresh large buffers are backed by huge
    pages; a fresh TensorFlow buffer of the same size costs several memcpys
    in page faults on first touch.
    """
    source = view(x) if _tensorflow_on_cpu(x) else None
    if source is None:
        return np.array(arrays.to_numpy(x))
    out = aligned_empty(source.shape, source.dtype)
    np.copyto(out, source)
    return out


def lend(array):
    """A backend tensor of the NumPy `array`, sharing its memory where the backend can.

    The caller hands `array` over: it must not be written afterwards. A
    buffer from `aligned_empty` shared with TensorFlow is reused by a later
    `aligned_empty` once TensorFlow has let go of it.
    """
    if keras.backend.backend() == "tensorflow" and array.ctypes.data % _ALIGN == 0:
        import tensorflow as tf

        try:
            shared = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        except (BufferError, RuntimeError, TypeError):
            pass  # bfloat16 has no DLPack type
        else:
            raw = array.base
            if isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.base is None:
                with _lock:
                    _lent.append(_Lent(raw))
            return shared
    return arrays.tensor(array)
