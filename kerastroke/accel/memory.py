"""Host memory for the CPU path's arrays, reused once nothing holds it.

On this machine (glibc), `malloc` hands every large freed block back to the
system, so an array of a few MB costs a page fault per 4 KB page each time
it is made again: for a pass over 16 MB of weights, several times the pass
itself. `empty` gives arrays whose memory comes back here when the last
array (or view, or backend tensor built on it) that uses it is gone, and the
next `empty` of the same size takes it again, faulted in already.

Nothing is reused while anything holds it: a block returns through a
finalizer of the object that owns the array's memory, which NumPy views,
DLPack capsules and tensors sharing the memory all keep alive. Blocks come
back on whatever thread lets go of them; they are only appended to a queue
there (atomic in CPython), and taken in under a lock by `empty`, so no
finalizer ever waits on a lock.

At most `_KEEP_BYTES` of free blocks are kept; blocks under `_POOLED_FROM`
bytes are not pooled (`malloc` serves them from memory it keeps). Every
block starts on a `ALIGNMENT`-byte boundary, as TensorFlow requires of
memory it takes without a copy.
"""

import collections
import math
import threading
import weakref

import numpy as np

ALIGNMENT = 64
_POOLED_FROM = 1 << 16
_KEEP_BYTES = 1 << 29  # 512 MiB

_returned = collections.deque()  # blocks let go of, not yet counted as free
_free = {}  # size in bytes -> list of free blocks
_lock = threading.Lock()
_kept = [0]  # bytes in `_free`


class _Owner:
    """The owner of one block's memory while arrays use it (their `base`)."""

    __slots__ = ("__array_interface__", "__weakref__")


def _new_block(nbytes):
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    return np.ndarray((nbytes,), np.uint8, buffer=raw, offset=-raw.ctypes.data % ALIGNMENT)


def _take(nbytes):
    with _lock:
        while _returned:
            block = _returned.popleft()
            if _kept[0] + block.size <= _KEEP_BYTES:
                _free.setdefault(block.size, []).append(block)
                _kept[0] += block.size
        blocks = _free.get(nbytes)
        if blocks:
            _kept[0] -= nbytes
            return blocks.pop()
    return None


def empty(shape, dtype):
    """An uninitialised C-contiguous array, its memory aligned to `ALIGNMENT` bytes
    and reused from earlier arrays of the same size where one is free.

    Example:
    >>> a = empty((3, 4), np.float32)
    >>> a.shape, a.dtype.name, a.ctypes.data % ALIGNMENT
    ((3, 4), 'float32', 0)
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _POOLED_FROM:
        return _new_block(nbytes).view(dtype).reshape(shape)
    block = _take(nbytes)
    if block is None:
        block = _new_block(nbytes)
    owner = _Owner()
    owner.__array_interface__ = {
        "shape": shape, "typestr": dtype.str, "data": (block.ctypes.data, False), "version": 3,
    }
    weakref.finalize(owner, _returned.append, block)
    return np.asarray(owner)


def owner(array):
    """The owner of `array`'s pooled block (`array` from `empty`, or a view of
    one), or None for other memory.

    Example:
    >>> pooled = empty((512, 512), np.uint32)
    >>> owner(pooled.view(np.float32)[1]) is owner(pooled) is not None, owner(np.ones(3))
    (True, None)
    """
    return getattr(whole(array), "base", None)


def whole(array):
    """The array `empty` gave, of which `array` is a view, or None."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array if isinstance(array.base, _Owner) else None


def kept_bytes():
    """Bytes of free blocks kept for reuse (those let go of since the last `empty` not yet counted)."""
    with _lock:
        return _kept[0]
