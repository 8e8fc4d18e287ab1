"""Host memory: views of CPU tensors, and lent buffers taken back only once free."""

import keras
import numpy as np
import pytest

from kerastroke.accel import host

# Only TensorFlow adopts a lent buffer; the other backends copy what they are given.
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's buffer sharing")


@pytest.fixture(autouse=True)
def no_lent_buffers(monkeypatch):
    monkeypatch.setattr(host, "_lent", [])


def _address(array):
    return array.__array_interface__["data"][0]


def _lent_to(variable, values):
    buffer = host.aligned_empty(values.shape, values.dtype)
    buffer[...] = values
    variable.assign(host.lend(buffer))
    return _address(buffer)


def test_a_lent_buffer_is_reused_only_once_the_variable_lets_go():
    variable = keras.Variable(np.zeros((64, 64), np.float32))
    address = _lent_to(variable, np.ones((64, 64), np.float32))
    assert _address(host.view(variable.value)) == address  # the variable adopted it
    held = host.aligned_empty((64, 64), np.float32)
    assert _address(held) != address  # still the variable's
    variable.assign(np.full((64, 64), 2.0, np.float32))
    assert np.all(variable.numpy() == 2.0)
    assert _address(host.aligned_empty((64, 64), np.float32)) == address  # free: taken back


def test_a_view_of_a_lent_buffer_keeps_it():
    variable = keras.Variable(np.zeros(1000, np.float32))
    address = _lent_to(variable, np.arange(1000, dtype=np.float32))
    view = host.view(variable.value)
    variable.assign(np.zeros(1000, np.float32))
    assert _address(host.aligned_empty((1000,), np.float32)) != address
    assert np.array_equal(view, np.arange(1000, dtype=np.float32))


def test_buffers_of_another_size_are_not_reused():
    variable = keras.Variable(np.zeros(1000, np.float32))
    address = _lent_to(variable, np.ones(1000, np.float32))
    variable.assign(np.zeros(1000, np.float32))
    assert _address(host.aligned_empty((999,), np.float32)) != address
    assert _address(host.aligned_empty((500,), np.float64)) == address  # 4000 bytes either way


def test_free_buffers_beyond_the_spare_limit_are_dropped(monkeypatch):
    for size in (500, 501, 502):  # sizes that do not reuse each other's buffers
        variable = keras.Variable(np.zeros(size, np.float32))
        _lent_to(variable, np.ones(size, np.float32))
        variable.assign(np.zeros(size, np.float32))
    assert len(host._lent) == 3 and all(entry.free() for entry in host._lent)
    monkeypatch.setattr(host, "SPARE_BYTES", 3000)
    host.aligned_empty((10,), np.float32)  # none fits; 2,072 + 2,068 bytes would pass 3,000
    assert [entry.raw.nbytes for entry in host._lent] == [502 * 4 + 64]  # the newest stays


def test_buffers_are_aligned_for_tensorflow():
    for size in (1, 3, 1000, 4097):
        assert _address(host.aligned_empty((size,), np.float32)) % 64 == 0


def test_release_frees_the_buffers_nothing_holds():
    held, let_go = keras.Variable(np.zeros(100, np.float32)), keras.Variable(np.zeros(200, np.float32))
    _lent_to(held, np.ones(100, np.float32))
    _lent_to(let_go, np.ones(200, np.float32))
    let_go.assign(np.zeros(200, np.float32))
    host.release()
    assert [entry.raw.nbytes for entry in host._lent] == [100 * 4 + 64]
    assert np.all(held.numpy() == 1.0)


def test_callbacks_in_two_threads_share_the_lent_buffers_safely(monkeypatch):
    # One model per thread, each written 20 times with values of its own
    # sign: a buffer one thread's writer lent is taken back by one thread,
    # never by both, and never ends up in the other's model. Checking a
    # buffer is made slow, so that both threads are inside it at once.
    import threading
    import time

    from kerastroke import Stroke

    check = host._Lent.free

    def slow_check(entry):
        free = check(entry)
        time.sleep(0.0005)  # the other thread runs between this check and what follows it
        return free

    monkeypatch.setattr(host._Lent, "free", slow_check)

    def train(errors, model, low, high):
        try:
            stroke = Stroke(low_bound=low, high_bound=high, volatility_ratio=0.5, seed=int(low + 2))
            stroke.set_model(model)
            for step in range(20):
                assert stroke.apply(step)["changed"] > 0
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    bounds = [(1.0, 2.0), (-2.0, -1.0)]
    built = []
    for _ in bounds:
        model = keras.Sequential([keras.Input((256,)), *[keras.layers.Dense(256) for _ in range(4)]])
        for variable in model.weights:
            variable.assign(np.zeros(variable.shape, np.float32))
        built.append(model)
    errors = []
    threads = [
        threading.Thread(target=train, args=(errors, model, low, high))
        for model, (low, high) in zip(built, bounds)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for model, (low, high) in zip(built, bounds):
        for variable in model.weights:
            if len(variable.shape) == 2:
                values = keras.ops.convert_to_numpy(variable)
                written = values[values != 0.0]
                assert written.size > values.size // 2
                assert np.all((written >= low) & (written < high))
