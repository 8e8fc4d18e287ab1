"""The CPU path (`kerastroke.accel.host`): the same bits as the compiled path.

Each built-in piece's host form is compared with its `keras.ops` form on
batches with every kind of float32 entry (NaN, infinities, signed zeros,
subnormals, ties), and whole applications of the presets with the path on
and off. On JAX the path is off by default; these tests switch it on there
too, so every backend checks the loops against its own compiled pieces.
"""

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerastroke import SET, MagnitudePruning, NeuroPlast, Pruning, ShrinkPerturb, Stroke, accel, mutators, selectors
from kerastroke.accel import host
from kerastroke.core import hashing
from kerastroke.engine import writer
from tests import strategies as ks

pytestmark = pytest.mark.skipif(not host.available(), reason="Numba is not installed: no CPU path to test")

_SPECIAL = np.array(
    [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.2e-38, 0.05, -0.05, 0.5, 1.0, 3.0], np.float32
)


@st.composite
def batches(draw):
    """float32 batches (R, N): normals, many ties, and the special values."""
    # A few shapes only: on JAX each new shape compiles the batched forms afresh.
    rows = draw(st.sampled_from([1, 3]))
    size = draw(st.sampled_from([1, 7, 64, 200]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    batch = rng.normal(scale=0.1, size=(rows, size)).astype(np.float32)
    kind = draw(st.sampled_from(["normal", "ties", "special"]))
    if kind == "ties":
        batch = rng.choice(np.array([0.0, 0.01, -0.01, 0.02], np.float32), size=(rows, size))
    elif kind == "special":
        where = rng.random((rows, size)) < 0.3
        batch[where] = rng.choice(_SPECIAL, size=int(where.sum()))
    return batch


def _keys(rows, seed):
    return hashing.words_of([seed + row for row in range(rows)])


def _bits(x):
    return np.asarray(keras.ops.convert_to_numpy(x)).view(np.uint32)


_RANGES = [(-0.05, 0.05), (0.0, 0.0), (-0.0, 1e-45), (-1.0, 0.0), (-np.inf, 0.01), (0.02, np.inf)]


@pytest.mark.parametrize(
    "pieces",
    [
        st.just(selectors.random_fraction()),
        st.sampled_from(_RANGES).map(lambda bounds: selectors.value_range(*bounds)),
        st.just(selectors.smallest_magnitude()),
    ],
    ids=["random_fraction", "value_range", "smallest_magnitude"],
)
@given(batch=batches(), amount=ks.amounts, seed=st.integers(0, 2**31), data=st.data())
def test_selector_host_matches_batched(pieces, batch, amount, seed, data):
    keys = _keys(len(batch), seed)
    piece = data.draw(pieces)
    expected = keras.ops.convert_to_numpy(piece.select_batch(batch, amount, keys))
    np.testing.assert_array_equal(piece.select_host(batch, amount, keys), expected)


def test_smallest_magnitude_breaks_ties_as_the_batched_form_does():
    # 40 equal magnitudes and 5 to take: the random tie-break decides, exactly as compiled.
    batch = np.full((2, 40), 0.25, np.float32)
    batch[:, ::2] *= -1
    keys = _keys(2, 11)
    piece = selectors.smallest_magnitude()
    mask = piece.select_host(batch, 0.125, keys)
    assert mask.sum(axis=1).tolist() == [5, 5]
    np.testing.assert_array_equal(mask, keras.ops.convert_to_numpy(piece.select_batch(batch, 0.125, keys)))


def test_smallest_magnitude_with_among_has_no_host_form():
    assert selectors.smallest_magnitude(among=selectors.value_range(-1.0, 1.0)).select_host is None


@given(
    batch=batches(),
    seed=st.integers(0, 2**31),
    bounds=st.sampled_from([(-0.05, 0.05), (0.0, 1.0), (-2.0, 0.0), (0.5, 0.5), (-3.0, 1e-3)]),
    mask_seed=st.integers(0, 2**32 - 1),
)
def test_uniform_host_matches_batched(batch, seed, bounds, mask_seed):
    keys = _keys(len(batch), seed)
    mask = np.random.default_rng(mask_seed).random(batch.shape) < 0.5
    piece = mutators.uniform(*bounds)
    expected = _bits(piece.mutate_batch(batch, mask, keys))
    np.testing.assert_array_equal(piece.mutate_host(batch, mask, keys).view(np.uint32), expected)


@pytest.mark.parametrize("density", [0.0, 0.02, 0.3, 1.0])
@pytest.mark.parametrize("bounds", [(-0.05, 0.05), (-3.0, 1e-3)])
def test_uniform_host_matches_batched_across_its_steps(density, bounds):
    # The host loop draws 1024 entries per step (gathered under the mask,
    # then drawn as arrays); rows of 2500 end steps at 1024, 2048 and in the
    # middle of the third.
    rng = np.random.default_rng(int(density * 100))
    batch = rng.normal(scale=0.1, size=(2, 2500)).astype(np.float32)
    mask = rng.random(batch.shape) < density
    keys = _keys(2, 11)
    piece = mutators.uniform(*bounds)
    expected = _bits(piece.mutate_batch(batch, mask, keys))
    np.testing.assert_array_equal(piece.mutate_host(batch, mask, keys).view(np.uint32), expected)


@given(batch=batches(), value=st.sampled_from([0.0, -0.0, 0.5, -3.25, 1e-45]), mask_seed=st.integers(0, 2**32 - 1))
def test_constant_host_matches_batched(batch, value, mask_seed):
    keys = _keys(len(batch), 0)
    mask = np.random.default_rng(mask_seed).random(batch.shape) < 0.5
    piece = mutators.constant(value)
    expected = _bits(piece.mutate_batch(batch, mask, keys))
    np.testing.assert_array_equal(piece.mutate_host(batch, mask, keys).view(np.uint32), expected)


@given(
    batch=batches(),
    seed=st.integers(0, 2**31),
    init=st.sampled_from(["glorot_uniform", "he_uniform", "lecun_uniform", "zeros", "ones",
                          {"class_name": "RandomUniform", "config": {"minval": -0.3, "maxval": 0.1}},
                          {"class_name": "Constant", "config": {"value": -2.5}}]),
    mask_seed=st.integers(0, 2**32 - 1),
)
def test_initializer_host_matches_batched(batch, seed, init, mask_seed):
    keys = _keys(len(batch), seed)
    mask = np.random.default_rng(mask_seed).random(batch.shape) < 0.5
    piece = mutators.initializer(init)
    expected = _bits(piece.mutate_batch(batch, mask, keys))
    np.testing.assert_array_equal(piece.mutate_host(batch, mask, keys).view(np.uint32), expected)


@given(batch=batches(), amount=ks.amounts, seed=st.integers(0, 2**31), mask_seed=st.integers(0, 2**32 - 1))
def test_drop_and_grow_host_matches_batched(batch, amount, seed, mask_seed):
    keys = _keys(len(batch), seed)
    selector = selectors.drop_and_grow()
    mask = selector.select_host(batch, amount, keys)
    np.testing.assert_array_equal(mask, keras.ops.convert_to_numpy(selector.select_batch(batch, amount, keys)))
    # The mutator also on masks the selector would not give (zeros and non-zeros alike).
    other = np.random.default_rng(mask_seed).random(batch.shape) < 0.5
    mutator = mutators.drop_and_grow(mutators.initializer("glorot_uniform"))
    for chosen in (mask, other):
        expected = _bits(mutator.mutate_batch(batch, chosen, keys))
        np.testing.assert_array_equal(mutator.mutate_host(batch, chosen, keys).view(np.uint32), expected)


def test_active_and_empty_reads_each_entry_once_and_counts_per_row():
    # Drop-and-grow's eligibility in one pass: a subnormal is active (not
    # empty), -0.0 is empty, NaN and inf are neither.
    weights = np.array([[0.0, -0.0, np.nan, np.inf, 1e-45, 0.5], [1.0, -2.0, 0.0, -np.inf, 3.0, 4.0]], np.float32)
    before = weights.copy()
    active, empty, active_count, empty_count = host.active_and_empty(weights)
    assert active.tolist() == [[False, False, False, False, True, True], [True, True, False, False, True, True]]
    assert empty.tolist() == [[True, True, False, False, False, False], [False, False, True, False, False, False]]
    assert active_count.tolist() == [2, 4] and empty_count.tolist() == [2, 1]
    np.testing.assert_array_equal(weights.view(np.uint32), before.view(np.uint32))


def test_drop_and_grow_host_forms_leave_their_inputs_alone():
    weights = np.array([[0.0, 0.3, 0.0, -0.1, 0.2, 0.0]], np.float32)
    mask = np.array([[True, False, False, True, False, True]])
    saved_weights, saved_mask = weights.copy(), mask.copy()
    keys = _keys(1, 5)
    selectors.drop_and_grow().select_host(weights, 0.5, keys)
    mutators.drop_and_grow(mutators.initializer("glorot_uniform")).mutate_host(weights, mask, keys)
    np.testing.assert_array_equal(weights, saved_weights)
    np.testing.assert_array_equal(mask, saved_mask)


_FUSES_ON_JAX = pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason=(
        "jax.jit fuses shrink-and-perturb's multiply and add: no host form on JAX "
        "(test_pieces_whose_values_differ_on_the_host_have_no_host_form checks it)"
    ),
)


@_FUSES_ON_JAX
@given(
    batch=batches(),
    seed=st.integers(0, 2**31),
    init=st.sampled_from(["glorot_uniform", "zeros", {"class_name": "Constant", "config": {"value": 1e-40}}]),
    factors=st.sampled_from([(0.4, 0.1), (1.0, 0.0), (0.0, 1.0), (0.5, 1e-40), (1e-45, 3.0)]),
    mask_seed=st.integers(0, 2**32 - 1),
)
def test_shrink_perturb_host_matches_batched(batch, seed, init, factors, mask_seed):
    keys = _keys(len(batch), seed)
    mask = np.random.default_rng(mask_seed).random(batch.shape) < 0.5
    piece = mutators.shrink_perturb(*factors, initializer=init)
    expected = _bits(piece.mutate_batch(batch, mask, keys))
    np.testing.assert_array_equal(piece.mutate_host(batch, mask, keys).view(np.uint32), expected)


@_FUSES_ON_JAX
@pytest.mark.parametrize("shrink", [0.4, 0.75, 0.999])
def test_shrink_perturb_host_rounds_near_the_smallest_normal_as_the_backend(shrink):
    # Every float32 whose product with `shrink` lies near 2**-126, where a
    # backend that flushes results (TensorFlow, XLA) tells tiny from normal
    # after rounding to 24 bits, and gradual underflow may round up instead.
    start = np.array([2.0**-126 / shrink], np.float32).view(np.uint32)[0] - 3000
    batch = np.arange(start, start + 6000, dtype=np.uint32).view(np.float32).reshape(2, 3000)
    batch[1] *= -1
    mask = np.ones(batch.shape, bool)
    piece = mutators.shrink_perturb(shrink, 0.0, initializer="zeros")
    expected = _bits(piece.mutate_batch(batch, mask, _keys(2, 0)))
    got = piece.mutate_host(batch, mask, _keys(2, 0)).view(np.uint32)
    np.testing.assert_array_equal(got, expected)
    magnitudes = got & 0x7FFFFFFF
    assert (magnitudes < 0x00800000).any() and (magnitudes >= 0x00800000).any()  # both sides of the edge


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="only PyTorch's flushing of subnormals is a switch")
def test_shrink_perturb_host_follows_torch_set_flush_denormal():
    import torch

    batch = np.array([[2.0**-126, -(2.0**-125), 1e-40, 0.25]], np.float32)
    mask = np.ones(batch.shape, bool)
    piece = mutators.shrink_perturb(0.5, 0.0, initializer="zeros")
    assert torch.set_flush_denormal(True)
    try:
        flushed = piece.mutate_host(batch, mask, _keys(1, 0)).view(np.uint32)
        np.testing.assert_array_equal(flushed, _bits(piece.mutate_batch(batch, mask, _keys(1, 0))))
    finally:
        torch.set_flush_denormal(False)
    kept = piece.mutate_host(batch, mask, _keys(1, 0)).view(np.uint32)
    np.testing.assert_array_equal(kept, _bits(piece.mutate_batch(batch, mask, _keys(1, 0))))
    # 2**-127 is subnormal: flushed to +0.0, or kept; -(2**-126) is normal either way.
    assert [hex(b) for b in flushed[0, :2]] == ["0x0", "0x80800000"]
    assert [hex(b) for b in kept[0, :2]] == ["0x400000", "0x80800000"]


def test_pieces_whose_values_differ_on_the_host_have_no_host_form():
    # Normal draws use each backend's erfinv.
    assert getattr(mutators.normal(0.1), "mutate_host", None) is None
    assert mutators.initializer("glorot_normal").mutate_host is None
    assert mutators.shrink_perturb(0.4, 0.1, initializer="glorot_normal").mutate_host is None
    # Shrink-and-perturb rounds its multiply and add apart; jax.jit fuses them.
    uniform = mutators.shrink_perturb(0.4, 0.1, initializer="glorot_uniform")
    assert (uniform.mutate_host is None) is (keras.backend.backend() == "jax")
    assert mutators.drop_and_grow().mutate_host is None  # grows from normal(0.01)
    # An initializer whose distribution kerastroke does not know is drawn by Keras.
    assert mutators.initializer("orthogonal").mutate_host is None


def test_a_rule_redrawing_from_an_unknown_initializer_takes_the_compiled_path():
    from kerastroke import PlasticityCallback, Rule, schedules

    model = _model()
    before = _weights(model)
    rule = Rule(selectors.random_fraction(), mutators.initializer("orthogonal"), schedules.constant(0.25))
    callback = PlasticityCallback([rule], seed=0)
    callback.set_model(model)
    with pytest.warns(UserWarning, match="without a batched form"):  # Keras draws it, eagerly
        plan = callback._writer(callback._resolved())
    assert plan.host is False
    assert callback.apply(0)["changed"] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, _weights(model)))


@given(values=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=300), data=st.data())
def test_the_radix_selection_gives_the_kth_smallest_and_the_keys_below_and_equal(values, data):
    from kerastroke.accel import loops

    keys = np.array(values, dtype=np.uint32)
    if data.draw(st.booleans()):  # many equal keys, as the zeros of a pruned tensor
        keys[: len(keys) // 2] = keys[0]
    k = data.draw(st.integers(1, len(keys)))
    threshold, below, tied = loops._kth(keys, k, np.empty(len(keys) + 1, np.uint32))
    assert int(threshold) == int(np.sort(keys)[k - 1])
    assert (int(below), int(tied)) == (int(np.sum(keys < threshold)), int(np.sum(keys == threshold)))


def test_the_smallest_loop_keeps_exact_counts_when_the_threshold_is_the_left_out_key():
    # An eligible NaN whose magnitude bits are all ones has the key that
    # marks left-out entries; at that threshold the radix selection's count
    # of equal keys includes the left-out ones, and the ties are still drawn
    # among the eligible entries only. (The built-in selectors never make a
    # NaN eligible; the loop stays exact for any mask.)
    from kerastroke.accel import loops

    bits = np.array([[0x7FFFFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x3F800000]], dtype=np.uint32)
    eligible = np.array([[True, True, False, True]])
    out = np.empty((1, 4), bool)
    scratch = (np.empty(4, np.uint32), np.empty(4, np.uint32), np.empty(5, np.uint32))
    for seed in range(8):
        words = np.array([seed], np.uint32), np.array([seed + 100], np.uint32)
        loops.smallest(bits, eligible, np.array([2]), *words, out, *scratch)
        assert out[0, 3] and not out[0, 2]  # the one below the threshold, never the left-out one
        assert out[0, :2].sum() == 1  # and one of the two tied eligible entries


def test_host_pieces_never_write_their_inputs():
    batch = np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32)
    before = batch.copy()
    keys = _keys(2, 3)
    mask = selectors.smallest_magnitude().select_host(batch, 0.5, keys)
    mutators.uniform(-0.1, 0.1).mutate_host(batch, mask, keys)
    mutators.constant(0.0).mutate_host(batch, mask, keys)
    np.testing.assert_array_equal(batch, before)


@pytest.mark.parametrize("with_masks", [False, True])
@pytest.mark.parametrize("with_keeps", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@given(original=batches(), seed=st.integers(0, 2**32 - 1))
def test_the_summary_counts_as_the_writer_does(with_masks, with_keeps, with_mask, original, seed):
    # Every combination of outputs: the loop is compiled for each one apart.
    rng = np.random.default_rng(seed)
    new = original.copy()
    touched = rng.random(new.shape) < 0.5
    new[touched] = rng.choice(_SPECIAL, size=int(touched.sum()))
    mask = touched | (rng.random(new.shape) < 0.2)
    changed, zeros, differs, keeps, introduced = host.summary(new, original, with_masks, with_keeps,
                                                              mask if with_mask else None)

    zero_new, zero_old = (_bits(new) & 0x7FFFFFFF) == 0, (_bits(original) & 0x7FFFFFFF) == 0  # +0.0 and -0.0 only
    expected_differs = ~((_bits(new) == _bits(original)) | (np.isnan(new) & np.isnan(original)) | (zero_new & zero_old))
    np.testing.assert_array_equal(changed, expected_differs.sum(axis=1))
    np.testing.assert_array_equal(zeros, zero_new.sum(axis=1))
    if with_masks:
        np.testing.assert_array_equal(differs, expected_differs)
    else:
        assert differs is None
    if with_keeps:
        np.testing.assert_array_equal(keeps, np.where(zero_new, 0, -1).astype(np.int32))
    else:
        assert keeps is None
    if with_mask:
        np.testing.assert_array_equal(introduced, (mask & ~np.isfinite(new) & np.isfinite(original)).sum(axis=1))
    else:
        assert introduced is None


def test_the_loops_select_the_kth_smallest_exactly():
    # Expected values written out: the three smallest magnitudes are 0.0, 0.05 and -0.1.
    batch = np.array([[0.3, -0.1, 0.2, 0.0, -0.5, 0.4, 0.15, -0.2, 0.6, 0.05]], np.float32)
    mask = host.smallest(batch, np.ones(batch.shape, bool), np.array([3]), _keys(1, 0))
    assert np.flatnonzero(mask[0]).tolist() == [1, 3, 9]
    # Only the eligible ones count: without entries 3 and 9, the next are -0.1, 0.15 and 0.2.
    eligible = np.ones(batch.shape, bool)
    eligible[0, [3, 9]] = False
    mask = host.smallest(batch, eligible, np.array([3]), _keys(1, 0))
    assert np.flatnonzero(mask[0]).tolist() == [1, 2, 6]


def _model():
    # Three groups: two Dense kernels of one shape, one of another, and a Conv2D kernel.
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, kernel_initializer="glorot_uniform"),
        keras.layers.Flatten(),
        keras.layers.Dense(16),
        keras.layers.Dense(16),
        keras.layers.Dense(16),
        keras.layers.Dense(3),
    ])
    model.compile(optimizer="adam", loss="mse")  # SET resets the optimizer's moments
    model.optimizer.build(model.trainable_variables)
    return model


def _weights(model):
    return [np.array(keras.ops.convert_to_numpy(v)).view(np.uint32) for v in model.weights]


_PRESETS = [
    lambda: Stroke(volatility_ratio=0.3, biases=True, seed=5),
    lambda: Stroke(value=0.0, volatility_ratio=0.2, seed=6),
    lambda: Pruning(min_value=-0.1, max_value=0.1, seed=7),
    lambda: NeuroPlast(min_value=-0.15, max_value=0.15, pruning_min=-0.02, pruning_max=0.02, seed=8),
    lambda: MagnitudePruning(0.6, seed=9),
    lambda: SET(sparsity=0.5, drop_fraction=0.3, seed=10),
    pytest.param(lambda: ShrinkPerturb(0.4, 0.1, seed=11), marks=_FUSES_ON_JAX),
]


@pytest.mark.parametrize(
    "make", _PRESETS, ids=["stroke", "stroke-value", "pruning", "neuroplast", "magnitude", "set", "shrink-perturb"]
)
def test_an_application_on_the_cpu_path_writes_what_the_compiled_path_writes(make, monkeypatch):
    monkeypatch.setattr(accel, "HOST_BACKENDS", {keras.backend.backend(): "every"})
    model = _model()
    start = [v.numpy() if hasattr(v, "numpy") else keras.ops.convert_to_numpy(v) for v in model.weights]

    slots = [v for v in model.optimizer.variables if "float" in str(v.dtype) and len(v.shape)]
    results = {}
    for on_host in (True, False):
        for variable, value in zip(model.weights, start):
            variable.assign(value)
        for slot in slots:  # moments that a reset visibly zeroes
            slot.assign(keras.ops.full(slot.shape, 0.5, slot.dtype))
        callback = make()
        callback.set_model(model)
        plan = callback._writer(callback._resolved())
        if not on_host:
            plan.host = False
        assert plan.host is on_host
        logs = [callback.apply(step) for step in (0, 1)]
        results[on_host] = (_weights(model) + [np.array(keras.ops.convert_to_numpy(v)) for v in slots], logs)

    (host_values, host_logs), (compiled_values, compiled_logs) = results[True], results[False]
    assert host_logs == compiled_logs
    assert host_logs[0]["changed"] > 0
    for a, b in zip(host_values, compiled_values):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make, ranking", [(lambda: Stroke(seed=0), True), (lambda: Pruning(seed=0), False)],
                         ids=["stroke-selects-a-part", "pruning-selects-whole-ranges"])
def test_which_applications_take_the_cpu_path_by_default(make, ranking, monkeypatch):
    # TensorFlow and PyTorch: every application; JAX: those with a rule that
    # selects a part (an exact count by rank), which XLA compiles slowly.
    calls = []
    original = writer._host_application
    monkeypatch.setattr(writer, "_host_application", lambda *args: calls.append(args) or original(*args))
    callback = make()
    callback.set_model(_model())
    callback.apply(0)
    backend = keras.backend.backend()
    assert bool(calls) is (backend in ("tensorflow", "torch") or (backend == "jax" and ranking))


def test_rules_without_host_forms_take_the_compiled_path(monkeypatch):
    monkeypatch.setattr(accel, "HOST_BACKENDS", {keras.backend.backend(): "every"})
    model = _model()
    from kerastroke import PlasticityCallback, Rule, schedules

    rule = Rule(selectors.smallest_magnitude(among=selectors.value_range(-1.0, 1.0)), mutators.zero(),
                schedules.constant(0.5))
    callback = PlasticityCallback([rule], seed=0)
    callback.set_model(model)
    assert callback._writer(callback._resolved()).host is False
    assert writer._on_host(callback._writer(callback._resolved()).groups) is False


def test_apply_rules_returns_a_tensor_from_the_cpu_path_too():
    weights = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(4, 6)
    rules = Stroke(volatility_ratio=0.5, seed=0).rules
    new, changed = writer.apply_rules(weights, rules, 0, 7)
    assert keras.ops.is_tensor(new) and not isinstance(new, np.ndarray)
    assert changed == 12  # round(0.5 * 24) entries redrawn


@pytest.mark.parametrize("parts", [2, 3])
def test_selections_and_draws_split_over_threads_give_the_same_bits(parts, monkeypatch):
    rng = np.random.default_rng(4)
    batch = rng.normal(size=(5, 300)).astype(np.float32)
    batch[:, :100] = 0.0  # ties at the threshold for the magnitudes
    keys = _keys(5, 21)
    mask = rng.random(batch.shape) < 0.5
    # Shrink-and-perturb has no host form on JAX; a redraw takes the same uniform loop.
    combined = mutators.shrink_perturb(0.4, 0.1, initializer="glorot_uniform")
    if keras.backend.backend() == "jax":
        combined = mutators.initializer("he_uniform")

    def run():
        return [
            selectors.random_fraction().select_host(batch, 0.3, keys),
            selectors.smallest_magnitude().select_host(batch, 0.4, keys),
            mutators.uniform(-0.5, 0.5).mutate_host(batch, mask, keys).view(np.uint32),
            combined.mutate_host(batch, mask, keys).view(np.uint32),
        ]

    expected = run()
    monkeypatch.setattr(host, "_PARALLEL_FROM", 0)
    monkeypatch.setattr(host, "_PARTS", parts)
    host._pool.cache_clear()
    try:
        split = run()
    finally:
        host._pool.cache_clear()
    for a, b in zip(split, expected):
        np.testing.assert_array_equal(a, b)


class _SwapsRows(mutators.Constant):
    """A pure host form whose result is a view of its input: the batch's rows
    in reverse order (each variable of a group takes another's values)."""

    def mutate_host(self, weights, mask, keys):
        return weights[::-1]


def test_the_readers_reused_buffer_is_never_written_to_a_variable(monkeypatch):
    # The CPU path stacks a group's variables into one buffer per reader and
    # thread, reused by the next read (`accel.host_reader`). A host form whose
    # result views its input must not hand that buffer to `accel.assign`: a
    # backend may keep a NumPy value's memory as the variable's, and the
    # next read would then change the variable behind the backend's back.
    monkeypatch.setattr(accel, "HOST_BACKENDS", {keras.backend.backend(): "every"})
    # Variables that happen to lie row after row are viewed, not stacked
    # (`accel._joined`; on JAX two arrays of one size can sit side by side):
    # here the reader always stacks, so there is a buffer to watch.
    monkeypatch.setattr(accel, "_joined", lambda parts: None)
    from kerastroke import PlasticityCallback, Rule

    assigned = []
    original_assign = accel.assign
    monkeypatch.setattr(accel, "assign", lambda variables, values: assigned.extend(values) or original_assign(
        variables, values))
    model = _model()
    callback = PlasticityCallback([Rule(selectors.random_fraction(), _SwapsRows(0.0))], seed=0)
    callback.set_model(model)
    plan = callback._writer(callback._resolved())
    assert plan.host
    callback.apply(0)
    (pair,) = [group for group in plan.groups if len(group.variables) == 2]  # two Dense kernels of one shape
    buffer = pair.reader()
    assert pair.reader() is buffer  # one buffer, refilled by each read
    assert len(assigned) == 2  # the pair, swapped; alone in its group, a kernel keeps its values
    assert not any(np.may_share_memory(value, buffer) for value in assigned)


def test_a_readers_buffer_belongs_to_one_thread():
    import threading

    variables = [keras.Variable(np.full((3,), float(i), "float32")) for i in range(2)]
    read = accel.host_reader(variables)
    mine = read()
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(read()))
    accel.assign(variables, [np.full((3,), 5.0, "float32")] * 2)
    worker.start()
    worker.join()
    assert mine.tolist() == [[0.0] * 3, [1.0] * 3]  # another thread's read left this one alone
    assert theirs[0].tolist() == [[5.0] * 3] * 2


class _InfiniteOnHost(mutators.Constant):
    """A host form that gives its selected entries +inf."""

    def mutate_host(self, weights, mask, keys):
        return np.where(mask, np.float32(np.inf), weights)


@pytest.mark.parametrize("rules", [1, 2], ids=["counted-in-the-summary", "counted-per-rule"])
def test_a_host_form_giving_non_finite_values_writes_nothing(rules, monkeypatch):
    # One rule's non-finite values are counted in the summary's pass; with
    # several, after each rule. Either way nothing is written.
    monkeypatch.setattr(accel, "HOST_BACKENDS", {keras.backend.backend(): "every"})
    from kerastroke import PlasticityCallback, Rule

    model = _model()
    chain = [Rule(selectors.random_fraction(), mutators.zero())] * (rules - 1)
    chain.append(Rule(selectors.random_fraction(), _InfiniteOnHost(0.0)))
    callback = PlasticityCallback(chain, seed=0)
    callback.set_model(model)
    assert callback._writer(callback._resolved()).host
    before = _weights(model)
    with pytest.raises(ValueError, match=f"rule {rules - 1}.*NaN or infinite"):
        callback.apply(0)
    for a, b in zip(_weights(model), before):
        np.testing.assert_array_equal(a, b)
