"""RigL: the gradient drop-and-grow selector, the probe gradients of each
backend, the plumbing that hands them to selectors, and the preset on models
whose gradients are known by hand."""

import json
import math

import attrs
import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kerastroke
from kerastroke import PlasticityCallback, RigL, Rule, mutators, schedules, selectors
from kerastroke.engine import probes
from tests import strategies as ks

TINY32 = np.finfo(np.float32).tiny

# -- the selector ---------------------------------------------------------------

_values = st.sampled_from([0.0, 0.0, 0.5, -0.25, 1.0, -2.0, 0.01, 3.0])
_gradients = st.floats(-4, 4, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0])


# A few shapes: the selector flattens whatever it gets, and every new shape
# costs the eager JAX backend fresh compilations.
_SHAPES = [(7,), (3, 5), (2, 3, 4)]


@st.composite
def _weights_and_gradient(draw):
    shape = draw(st.sampled_from(_SHAPES))
    w = draw(hnp.arrays(np.float32, shape, elements=_values | st.sampled_from([np.nan, np.inf])))
    g = draw(hnp.arrays(np.float32, shape, elements=_gradients))
    return w, g


def _select(w, amount, seed, g, backend=False):
    mask = selectors.gradient_drop_and_grow()(ks.as_input(w, backend), amount, seed,
                                              gradient=ks.as_input(g, backend))
    return ks.to_numpy(mask)


@given(_weights_and_gradient(), ks.amounts, st.integers(0, 2**20), ks.on_backend)
def test_exact_counts_and_only_eligible_entries(pair, amount, seed, backend):
    w, g = pair
    mask = _select(w, amount, seed, g, backend)
    assert mask.shape == w.shape and mask.dtype == bool
    active = np.isfinite(w) & (w != 0)
    growable = (w == 0) & np.isfinite(g)
    k = min(round(amount * active.sum()), int(growable.sum()))
    assert int((mask & active).sum()) == k
    assert int((mask & growable).sum()) == k
    assert not (mask & ~active & ~growable).any()  # NaN/inf weights, NaN/inf gradients: never


@given(_weights_and_gradient(), ks.amounts, st.integers(0, 2**20))
def test_drops_the_smallest_weights_and_grows_the_largest_gradients(pair, amount, seed):
    w, g = pair
    mask = _select(w, amount, seed, g)
    active = np.isfinite(w) & (w != 0)
    growable = (w == 0) & np.isfinite(g)
    dropped, grown = mask & active, mask & growable
    if dropped.any() and (active & ~dropped).any():
        assert np.abs(w[dropped]).max() <= np.abs(w[active & ~dropped]).min()
    if grown.any() and (growable & ~grown).any():
        assert np.abs(g[grown]).min() >= np.abs(g[growable & ~grown]).max()


@given(_weights_and_gradient(), ks.amounts, st.integers(0, 2**20))
def test_pure_same_seed_same_mask_inputs_untouched(pair, amount, seed):
    w, g = pair
    w_copy, g_copy = w.copy(), g.copy()
    first = _select(w, amount, seed, g)
    assert np.array_equal(first, _select(w, amount, seed, g))
    assert np.array_equal(ks.bits(w), ks.bits(w_copy)) and np.array_equal(ks.bits(g), ks.bits(g_copy))


@given(
    hnp.arrays(np.float32, 24, elements=_values),
    hnp.arrays(np.float32, 24, elements=st.floats(-4, 4, width=32)),
    ks.amounts,
    st.integers(0, 1000),
)
def test_with_drop_and_grow_values_the_number_of_nonzeros_is_kept(w, g, amount, seed):
    mask = _select(w, amount, seed, g)
    new = ks.to_numpy(mutators.drop_and_grow(mutators.zero())(w, mask, seed))
    assert int((new != 0).sum()) == int((w != 0).sum())
    assert (new[mask & (w != 0)] == 0).all()
    assert (new[mask & (w == 0)] == TINY32).all()  # "zero", nudged to count as non-zero
    assert np.array_equal(ks.bits(new[~mask]), ks.bits(w[~mask]))


def test_ties_are_broken_at_random_with_exact_counts():
    w = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.2, 0.2, 0.2], "float32")
    g = np.array([0.5, -0.5, 0.5, 0.1, 9.0, 0.0, 0.0, 0.0], "float32")
    picks = {tuple(_select(w, 0.5, seed, g).tolist()) for seed in range(60)}
    for pick in picks:
        pick = np.array(pick)
        assert pick[:3].sum() == 2 and not pick[3] and not pick[4] and pick[5:].sum() == 2
    assert len({p[:3] for p in picks}) == 3 and len({p[5:] for p in picks}) == 3


def test_fewer_growable_entries_shrink_both_sides():
    w = np.array([0.0, 0.0, 0.3, 0.4, 0.5, 0.6], "float32")
    g = np.array([np.nan, 2.0, 0.0, 0.0, 0.0, 0.0], "float32")
    assert _select(w, 1.0, 0, g).tolist() == [False, True, True, False, False, False]


def test_gradient_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="gradient"):
        selectors.gradient_drop_and_grow()(np.zeros((2, 3), "float32"), 0.5, 0, gradient=np.zeros(6, "float32"))


def test_selector_declares_the_gradient_and_round_trips():
    selector = selectors.gradient_drop_and_grow()
    assert probes.declared(selector) == ("gradient",)
    config = kerastroke.core.serialization.serialize(selector)
    assert kerastroke.core.serialization.deserialize(json.loads(json.dumps(config))) == selector


def test_cosine_is_rigls_drop_fraction_decay():
    """RigL's `drop_fraction * (1 + cos(pi * step / end)) / 2`, and 0 from `end` on."""
    schedule = schedules.cosine(0.3, end=40)
    for step in range(60):
        expected = 0.3 * (1 + math.cos(math.pi * step / 40)) / 2 if step < 40 else 0.0
        assert schedule(step) == pytest.approx(expected, abs=1e-15)


# -- a linear model whose gradients are known -----------------------------------

# Loss: mean over samples and outputs of (x W - y)^2, so dL/dW = 2 / (n m) x^T (x W - y).
_X = np.array(
    [[1.0, 0.5, -1.0, 2.0], [0.0, 1.0, 1.5, -0.5], [2.0, -1.0, 0.5, 1.0], [-1.0, 0.5, 0.0, 1.5], [0.5, 2.0, -1.5, 0.0]],
    "float32",
)
_Y = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 2.0], [-1.0, 0.5, 1.0], [2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], "float32")
# Half the entries are zero, and the non-zero magnitudes are all distinct.
_W = np.array([[0.9, 0.0, -0.05], [0.0, 0.4, 0.0], [-0.3, 0.0, 0.7], [0.0, -0.1, 0.0]], "float32")


def _hand_gradient(w=_W, x=_X, y=_Y, l2=0.0):
    x, y, w = (a.astype(np.float64) for a in (x, y, w))
    return 2.0 / y.size * x.T @ (x @ w - y) + 2.0 * l2 * w


def _linear(optimizer="sgd", l2=None, w=_W):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, use_bias=False, name="linear",
                           kernel_regularizer=None if l2 is None else keras.regularizers.L2(l2)),
    ])
    model.compile(optimizer, "mse")
    model.get_layer("linear").kernel.assign(w)
    return model


def _kernel(model):
    return np.array(keras.ops.convert_to_numpy(model.get_layer("linear").kernel))


@pytest.mark.parametrize("l2", [None, 0.25])
def test_probe_gradients_equal_the_hand_computed_ones(l2):
    model = _linear(l2=l2)
    (gradient,) = probes.gradients(model, _X, _Y, [model.get_layer("linear").kernel])
    assert tuple(gradient.shape) == (4, 3) and keras.backend.standardize_dtype(gradient.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gradient), _hand_gradient(l2=l2 or 0.0), rtol=1e-5, atol=1e-6)


def test_probe_gradients_change_nothing_in_the_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.5), keras.layers.Dense(3),
    ])
    model.compile("adam", "mse", metrics=["mae"])
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
    first = probes.gradients(model, _X, _Y, model.trainable_variables)
    second = probes.gradients(model, _X, _Y, model.trainable_variables)
    for a, b in zip(first, second):  # inference mode: no dropout draw
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for old, variable in zip(before, model.variables):
        assert np.array_equal(old, keras.ops.convert_to_numpy(variable)), variable.path


def test_probe_gradients_need_a_compiled_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"not compiled.*model\.compile"):
        probes.gradients(model, _X, _Y, model.trainable_variables)
    rigl = RigL(sparsity=0.5, probe=(_X, _Y), seed=0, reset_optimizer=False)
    rigl.set_model(model)
    before = [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]
    with pytest.raises(ValueError, match="not compiled"):
        rigl.apply(0)
    for old, variable in zip(before, model.weights):  # nothing half-applied
        assert np.array_equal(old, keras.ops.convert_to_numpy(variable))


def _expected_exchange(w, gradient, k):
    """Flat positions RigL drops and grows, from NumPy's own ranking (no ties at the cut)."""
    active, empty = np.flatnonzero(w != 0), np.flatnonzero(w == 0)
    by_magnitude = active[np.argsort(np.abs(w.ravel()[active]))]
    by_gradient = empty[np.argsort(-np.abs(gradient.ravel()[empty]))]
    magnitudes = np.abs(w.ravel()[by_magnitude])
    scores = np.abs(gradient.ravel()[by_gradient])
    assert magnitudes[k - 1] < magnitudes[k] and scores[k - 1] > scores[k] * 1.001  # a clear cut
    return set(by_magnitude[:k].tolist()), set(by_gradient[:k].tolist())


def _adam_slots(model, variable):
    prefix = variable.path.replace("/", "_") + "_"
    return [s for s in model.optimizer.variables if s.name.startswith(prefix)]


def test_rigl_drops_and_grows_exactly_the_expected_entries():
    model = _linear("adam")
    kernel = model.get_layer("linear").kernel
    # Give Adam's moments values everywhere, then put the hand-built weights back.
    model.fit(_X, _Y, epochs=1, verbose=0)
    kernel.assign(_W)
    slots = _adam_slots(model, kernel)
    assert len(slots) == 2
    moments = [np.array(keras.ops.convert_to_numpy(s)) for s in slots]
    assert all((m != 0).all() for m in moments)
    drop, grow = _expected_exchange(_W, _hand_gradient(), k=2)  # round(1/3 * 6 active) = 2

    rigl = RigL(sparsity=0.5, drop_fraction=1 / 3, probe=(_X, _Y), seed=0)
    rigl.set_model(model)
    result = rigl.apply(0)

    new = _kernel(model).ravel()
    old = _W.ravel()
    changed = set(np.flatnonzero(new != old).tolist())
    assert changed == drop | grow
    assert (new[sorted(drop)] == 0).all()
    assert (new[sorted(grow)] == TINY32).all()
    assert int((new != 0).sum()) == int((old != 0).sum()) == 6
    assert result == {"changed": 4, "fraction": 4 / 12, "sparsity": 0.5}
    for before, slot in zip(moments, slots):  # reset_optimizer=True: exactly those entries
        after = np.array(keras.ops.convert_to_numpy(slot)).ravel()
        assert (after[sorted(changed)] == 0).all()
        untouched = np.setdiff1d(np.arange(12), sorted(changed))
        assert np.array_equal(after[untouched], before.ravel()[untouched])


def test_rigl_first_application_sparsifies_a_dense_kernel_then_exchanges():
    dense = np.array([[0.9, 0.2, -0.05], [0.15, 0.4, -0.6], [-0.3, 0.01, 0.7], [0.5, -0.1, 0.25]], "float32")
    model = _linear(w=dense)
    rigl = RigL(sparsity=0.5, drop_fraction=1 / 3, probe=(_X, _Y), seed=0, reset_optimizer=False)
    rigl.set_model(model)
    rigl.apply(0)
    # Rule 1 prunes the six smallest; rule 2 exchanges on the gradients of the dense weights.
    pruned = np.where(np.abs(dense) > 0.25, dense, 0).astype("float32")
    drop, grow = _expected_exchange(pruned, _hand_gradient(dense), k=2)
    new = _kernel(model).ravel()
    expected = pruned.ravel().copy()
    expected[sorted(drop)] = 0
    expected[sorted(grow)] = TINY32
    assert np.array_equal(new, expected)


def test_zeros_are_held_between_applications_and_grown_entries_train():
    model = _linear("sgd")
    rigl = RigL(sparsity=0.5, drop_fraction=1 / 3, probe=(_X, _Y), seed=0)
    rigl.set_model(model)
    rigl.apply(0)
    after = _kernel(model)
    grown = after == TINY32
    model.fit(_X, _Y, epochs=3, batch_size=5, verbose=0)  # three optimizer steps, no application
    trained = _kernel(model)
    assert (trained[after == 0] == 0).all()  # dropped and never-grown entries held at zero
    assert (np.abs(trained[grown]) > 1e-4).all()  # grown at the largest gradients: they move
    assert int((trained != 0).sum()) == 6


def test_rigl_stops_exchanging_from_end_and_at_drop_fraction_zero():
    model = _linear()
    rigl = RigL(sparsity=0.5, drop_fraction=0.5, probe=(_X, _Y), end=2, seed=0)
    rigl.set_model(model)
    assert rigl.apply(0)["changed"] == 6  # round(0.5 * 6) = 3 dropped, 3 grown
    frozen = _kernel(model)
    assert rigl.apply(2)["changed"] == 0 and rigl.apply(5)["changed"] == 0
    assert np.array_equal(_kernel(model), frozen)


def test_a_global_scope_gradient_rule_ranks_every_variable_together():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(3, name="b")])
    model.compile("sgd", "mse")
    rng = np.random.default_rng(1)
    for layer in model.layers:
        w = rng.normal(size=tuple(layer.kernel.shape)).astype("float32")
        w[rng.random(w.shape) < 0.5] = 0
        layer.kernel.assign(w)
    kernels = [layer.kernel for layer in model.layers]
    old = np.concatenate([np.array(keras.ops.convert_to_numpy(k)).ravel() for k in kernels])
    gradient = np.concatenate(
        [np.array(keras.ops.convert_to_numpy(g)).ravel() for g in probes.gradients(model, _X, _Y, kernels)]
    )
    k = round(0.25 * (old != 0).sum())
    drop, grow = _expected_exchange(old, gradient, k)
    rule = Rule(selectors.gradient_drop_and_grow(), mutators.drop_and_grow(mutators.zero()),
                schedules.constant(0.25), scope="global")
    callback = PlasticityCallback([rule], probe=(_X, _Y), seed=0)
    callback.set_model(model)
    callback.apply(0)
    new = np.concatenate([np.array(keras.ops.convert_to_numpy(k)).ravel() for k in kernels])
    assert set(np.flatnonzero(new != old).tolist()) == drop | grow


# -- parameters and config -------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: RigL(), r"`probe` must be given"),
        (lambda: RigL(probe=_X), r"`probe` must be a pair"),
        (lambda: RigL(probe=(_X, _Y[:3])), r"`probe` must hold"),
        (lambda: RigL(probe=(_X[:0], _Y[:0])), r"`probe` must hold"),
        (lambda: RigL(sparsity=1.5, probe=(_X, _Y)), r"`sparsity` must be in \[0, 1\]"),
        (lambda: RigL(drop_fraction=-0.1, probe=(_X, _Y)), r"`drop_fraction` must be in \[0, 1\]"),
        (lambda: RigL(drop_fraction=-0.1, end=10, probe=(_X, _Y)), r"`drop_fraction` must be in \[0, 1\]"),
        (lambda: RigL(end=0, probe=(_X, _Y)), r"`end` must be >= 1"),
        (lambda: RigL(end=2.5, probe=(_X, _Y)), r"`end` must be an integer"),
        (lambda: RigL(drop_fraction=schedules.constant(0.3), end=10, probe=(_X, _Y)), r"`end` sets"),
        (lambda: RigL(grow=3, probe=(_X, _Y)), r"`grow` must be callable"),
        (lambda: RigL(frequency="often", probe=(_X, _Y)), r"`frequency`"),
        (lambda: RigL(reset_optimizer="yes", probe=(_X, _Y)), r"`reset_optimizer`"),
        (lambda: PlasticityCallback(Rule(selectors.gradient_drop_and_grow(), mutators.zero())), r"`probe` must"),
    ],
)
def test_bad_parameters_fail_at_construction(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@kerastroke.register_piece(name="tests.rigl.wants_curvature")
@attrs.frozen
class _WantsCurvature:
    inputs = ("curvature",)

    def __call__(self, weights, amount, seed, *, curvature):
        return curvature > 0


def test_a_selector_declaring_an_unknown_input_fails_at_construction():
    with pytest.raises(ValueError, match=r"'curvature'.*\('gradient',\)"):
        PlasticityCallback(Rule(_WantsCurvature(), mutators.zero()), probe=(_X, _Y))


def test_the_writer_names_a_declared_input_it_was_not_given():
    from kerastroke.engine import writer

    rule = Rule(selectors.gradient_drop_and_grow(), mutators.drop_and_grow(mutators.zero()))
    with pytest.raises(ValueError, match=r"rule 0 .*declares the inputs \['gradient'\].*probe=\(x, y\)"):
        writer.apply_rules(_W, [rule], step=0, seed=0)


def _same_config(a, b):
    np.testing.assert_equal(a, b)  # arrays compared by value, lists and tuples alike


def test_config_round_trips_with_the_probe():
    rigl = RigL(sparsity=0.8, drop_fraction=0.4, probe=(_X, _Y.astype("float64")), end=50, frequency=10, seed=3)
    config = rigl.get_config()
    rebuilt = RigL.from_config(config)
    _same_config(rebuilt.get_config(), config)
    assert rebuilt.rules == rigl.rules
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(rigl)))
    assert serialized["registered_name"] == "kerastroke>RigL"
    loaded = keras.saving.deserialize_keras_object(serialized)
    assert type(loaded) is RigL and loaded.rules == rigl.rules
    _same_config(loaded.get_config(), config)
    assert loaded.probe[1].dtype == np.float64  # dtypes survive the JSON round trip


def test_a_plain_callback_with_a_probe_round_trips_through_keras_json():
    rule = Rule(selectors.gradient_drop_and_grow(), mutators.drop_and_grow(mutators.zero()), schedules.constant(0.2))
    callback = PlasticityCallback(rule, probe=(_X, _Y), persistent=True, seed=1)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(callback)))
    loaded = keras.saving.deserialize_keras_object(serialized)
    assert loaded.rules == callback.rules
    _same_config(loaded.get_config(), callback.get_config())


# -- training ------------------------------------------------------------------------


class _RecordEveryBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kernels = []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append([np.array(keras.ops.convert_to_numpy(v)) for v in self.model.trainable_variables
                             if len(v.shape) == 2])


def test_fit_keeps_the_sparsity_and_exchanges_until_end():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 10)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rigl = RigL(sparsity=0.75, drop_fraction=0.3, probe=(x[:32], y[:32]), end=8, frequency=3, seed=0)
    recorder = _RecordEveryBatch()
    history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=[rigl, recorder])
    # 6 batches per epoch, applications at optimizer steps 3, 6, 9, 12; recorded steps are 1..12.
    applied = {3, 6, 9, 12}
    for step, kernels in enumerate(recorder.kernels, start=1):
        if step < 3:
            continue
        for kernel in kernels:
            assert int((kernel != 0).sum()) == round(0.25 * kernel.size), step
        if step + 1 <= len(recorder.kernels) and step + 1 not in applied:
            for now, later in zip(kernels, recorder.kernels[step]):
                assert ((now == 0) == (later == 0)).all(), step  # held between applications
    exchanged = [
        any(((a == 0) != (b == 0)).any() for a, b in zip(recorder.kernels[s - 2], recorder.kernels[s - 1]))
        for s in (6, 9, 12)
    ]
    assert exchanged == [True, False, False]  # f(step) is 0 from end=8 on
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert 'default "rigl"' in RigL.__doc__ and "`rigl_changed`" in RigL.__doc__
    assert history.history["rigl_changed"][0] > 0
    assert kerastroke.strip(model) is model
    assert all(v.constraint is None for v in model.trainable_variables)
    assert history.history["rigl_sparsity"][-1] == pytest.approx(
        sum(k.size - round(0.25 * k.size) for k in recorder.kernels[-1]) / sum(k.size for k in recorder.kernels[-1])
    )
