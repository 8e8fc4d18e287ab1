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

At most `_KEEP_BYTES` of free blocks are kept; arrays under `_POOLED_FROM`
bytes are not pooled (`malloc` serves them from memory it keeps): they are
plain NumPy arrays, which no backend is ever lent (see `owner`). Every
pooled block starts on a `ALIGNMENT`-byte boundary, as TensorFlow requires
of memory it takes without a copy.
"""

import collections
import math
import threading

import numpy as np

ALIGNMENT = 64
_POOLED_FROM = 1 << 16
_KEEP_BYTES = 1 << 29  # 512 MiB

_returned = collections.deque()  # blocks let go of, not yet counted as free
_free = {}  # size in bytes -> list of free blocks
_lock = threading.Lock()
_kept = [0]  # bytes in `_free`


class _Owner:
    """The owner of one block's memory while arrays use it (their `base`);
    when the last of them is gone, it hands the block back."""

    __slots__ = ("__array_interface__", "_block")

    def __del__(self, give_back=_returned.append):  # bound now: still there at exit
        give_back(self._block)


def _new_block(nbytes):
    """A free block: `(bytes, address)`, the address aligned to `ALIGNMENT`."""
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    block = raw[offset:offset + nbytes]
    return block, raw.ctypes.data + offset


def _take(nbytes):
    with _lock:
        while _returned:
            block = _returned.popleft()
            size = block[0].size
            if _kept[0] + size <= _KEEP_BYTES:
                _free.setdefault(size, []).append(block)
                _kept[0] += size
        blocks = _free.get(nbytes)
        if blocks:
            _kept[0] -= nbytes
            return blocks.pop()
    return None


def empty(shape, dtype):
    """An uninitialised C-contiguous array, from `_POOLED_FROM` bytes aligned
    to `ALIGNMENT` bytes and reused from earlier arrays of the same size
    where one is free.

    Example:
    >>> a = empty((512, 512), np.float32)
    >>> a.shape, a.dtype.name, a.ctypes.data % ALIGNMENT
    ((512, 512), 'float32', 0)
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _POOLED_FROM:
        return np.empty(shape, dtype)
    block = _take(nbytes)
    if block is None:
        block = _new_block(nbytes)
    owner = _Owner()
    owner._block = block
    owner.__array_interface__ = {"shape": shape, "typestr": dtype.str, "data": (block[1], False), "version": 3}
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
