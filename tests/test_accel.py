"""The backend-aware steps of `kerastroke.accel`: each gives what plain `keras.ops` would.

Their speed differs by backend (stacked on TensorFlow, one compiled call per
tensor on JAX); these tests pin the values, on every backend.
"""

import keras
import numpy as np
import pytest

from kerastroke import accel


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("stacked_below", [1 << 16, 1], ids=["small-stacked", "each-alone"])
def test_where_each_keeps_order_across_shapes_and_dtypes(monkeypatch, stacked_below):
    # Tensors of one shape and dtype are stacked unless large; results are the same.
    monkeypatch.setattr(accel, "_STACKED_BELOW", stacked_below)
    olds = [
        keras.ops.convert_to_tensor(np.array([1.0, 2.0, 3.0], "float32")),
        keras.ops.convert_to_tensor(np.array([[4.0, 5.0], [6.0, 7.0]], "float32")),
        keras.ops.convert_to_tensor(np.array([8.0, 9.0, 10.0], "float32")),
        keras.ops.convert_to_tensor(np.array([1, 2], "int32")),
        keras.ops.convert_to_tensor(np.array([11.0, 12.0, 13.0], "float32")),
    ]
    masks = [
        np.array([True, False, True]),
        np.array([[False, True], [True, False]]),
        np.array([False, False, True]),
        np.array([True, False]),
        np.array([False, True, False]),
    ]
    news = [None, keras.ops.full((2, 2), -1.0), keras.ops.full((3,), 0.5), None, None]

    results = accel.where_each(masks, news, olds)

    assert [numpy(r).tolist() for r in results] == [
        [0.0, 2.0, 0.0],
        [[4.0, -1.0], [-1.0, 7.0]],
        [8.0, 9.0, 0.5],
        [0, 2],
        [11.0, 0.0, 13.0],
    ]
    assert [keras.backend.standardize_dtype(r.dtype) for r in results] == ["float32"] * 3 + ["int32", "float32"]
    assert numpy(olds[0]).tolist() == [1.0, 2.0, 3.0]  # inputs untouched


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
