"""Generated training data (NumPy only, so the parent process and tfmot's worker can share it)."""

import numpy as np


def make_data(samples, features, classes, seed=0):
    """Gaussian inputs, labels from a random linear teacher: learnable, no download.

    Example:
    >>> x, y = make_data(8, 4, 3)
    >>> x.shape, y.shape, x.dtype.name, y.dtype.name
    ((8, 4), (8,), 'float32', 'int32')
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, features), dtype=np.float32)
    teacher = rng.standard_normal((features, classes), dtype=np.float32)
    y = np.argmax(x @ teacher, axis=1).astype(np.int32)
    return x, y
