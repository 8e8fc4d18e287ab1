"""Counter-based int32 hashing in keras.ops: the NumPy reference bit for bit, bijections,
literal digests (the same on every backend), and the same bits traced as eager."""

import hashlib

import keras
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kerastroke.core import hashing, seeds
from tests import reference_hashing as reference
from tests import strategies as ks
from tests.traced import compiled_variants, jax_has_x64

int32s = st.integers(min_value=-(2**31), max_value=2**31 - 1)
keys64 = st.integers(min_value=0, max_value=2**64 - 1)
counter_arrays = hnp.arrays(np.int32, ks.shapes(max_dims=2, max_side=16), elements=int32s)
labels = st.one_of(st.text(max_size=8), st.integers(-(2**70), 2**70))

EDGES = np.array([0, 1, -1, 2**31 - 1, -(2**31), 0x55555555, -0x55555556], dtype=np.int32)


def numpy(x):
    return np.ascontiguousarray(keras.ops.convert_to_numpy(x))


def sha256(array, dtype):
    return hashlib.sha256(np.asarray(array).astype(dtype).tobytes()).hexdigest()


# The same literals on TensorFlow, JAX (with and without x64) and PyTorch.
DIGEST_KEY = seeds.key(2024, "digest")
COUNTERS = np.arange(4096, dtype=np.int32)


def batch_keys():
    return np.stack([hashing.key_words(seeds.key(2024, "digest", i)) for i in range(3)])


def test_literal_digests():
    key = hashing.key_words(DIGEST_KEY)
    assert key.tolist() == [1944113459, 1389263682]
    draws = numpy(hashing.bits(key, COUNTERS))
    assert draws[:4].tolist() == [-124214652, 720050098, -1655286935, -492336988]
    assert sha256(draws, "<i4") == (
        "0d46ff0a0b613be0fb0dd5e6a440555ee4dfc69d8468090b96fc0e94bf04e7ba"
    )
    assert sha256(numpy(hashing.bits(batch_keys(), COUNTERS)), "<i4") == (
        "7e6f43d78aa1940983dabef3dbe0d7cc43646014282e854f3129f75ad08f5c7d"
    )
    assert numpy(hashing.derive(key, "select")).tolist() == [850143818, 390196217]
    assert numpy(hashing.derive(key, 7)).tolist() == [100309060, 1830743459]
    assert sha256(numpy(hashing.unit(key, COUNTERS)), "<f4") == (
        "7ca5739976022d85a2353583201fdf61d844d879d0ed1a125198e66232b628c6"
    )
    assert sha256(numpy(hashing.uniform(batch_keys(), COUNTERS, -0.5, 0.25)), "<f4") == (
        "81f2e05ebb403baaf49284bf319078e2bd71ea77e4c6e6b08fe4f21ce6102752"
    )


@pytest.mark.skipif(not jax_has_x64(), reason="float64 needs JAX_ENABLE_X64 on JAX")
def test_literal_float64_digest():
    u = numpy(hashing.unit(hashing.key_words(DIGEST_KEY), COUNTERS, "float64"))
    assert u[:2].tolist() == [0.9710790275670979, 0.16764972981072634]
    assert sha256(u, "<f8") == "1a6b09a334aea936e341e667dc2d9e738196e96da6c6b076ce6868e88160ca5f"


def test_mix_matches_the_reference_on_edge_values():
    assert numpy(hashing.mix(EDGES)).tolist() == reference.mix(EDGES).tolist()


@ks.examples(2)
@given(x=counter_arrays)
def test_mix_matches_the_reference_and_inverts(x):
    y = numpy(hashing.mix(x))
    assert y.dtype == np.int32 and y.shape == x.shape
    assert np.array_equal(y, reference.mix(x))
    assert np.array_equal(reference.unmix(y), x)


@given(key=keys64)
def test_key_words_are_the_low_and_high_words(key):
    words = hashing.key_words(key)
    assert words.dtype == np.int32
    assert int(words.view(np.uint32)[0]) + (int(words.view(np.uint32)[1]) << 32) == key


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_key_words_rejects_out_of_range_keys(bad):
    with pytest.raises(ValueError, match="key"):
        hashing.key_words(bad)


@pytest.mark.parametrize("bad", [1.0, "7", None, True])
def test_key_words_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="key"):
        hashing.key_words(bad)


@given(key=keys64, counters=counter_arrays)
def test_bits_match_the_reference_and_invert_to_the_counters(key, counters):
    words = hashing.key_words(key)
    draws = numpy(hashing.bits(words, counters))
    assert draws.dtype == np.int32 and draws.shape == counters.shape
    assert np.array_equal(draws, reference.bits(words, counters))
    # Bijective in the counter: the inverse gives every counter back.
    assert np.array_equal(reference.unbits(words, draws), counters)


def test_bits_never_tie_across_many_counters():
    counters = np.arange(1 << 18, dtype=np.int32) * 8191 - (1 << 30)
    draws = numpy(hashing.bits(hashing.key_words(99), counters))
    assert np.unique(draws).size == counters.size


@given(
    batch=st.lists(keys64, min_size=1, max_size=4),
    size=st.integers(1, 16),
    same_counters=st.booleans(),
)
def test_a_batch_of_keys_gives_each_row_its_own_draws(batch, size, same_counters):
    words = np.stack([hashing.key_words(k) for k in batch])
    counters = np.arange(size, dtype=np.int32)
    if not same_counters:
        counters = np.tile(counters, (len(batch), 1)) + np.arange(len(batch), dtype=np.int32)[:, None]
    draws = numpy(hashing.bits(words, counters))
    assert draws.shape == (len(batch), size)
    for row, key in enumerate(batch):
        mine = counters if same_counters else counters[row]
        assert np.array_equal(draws[row], numpy(hashing.bits(hashing.key_words(key), mine)))


def test_a_square_batch_broadcasts_each_key_along_its_own_row():
    # R == N is where TensorFlow's `keras.ops.add` would add a (R, 1) key along the
    # last axis instead; the edge words include -2**31, whose negation wraps.
    batch = [0, 2**63, 2**64 - 1, 2**32]
    words = np.stack([hashing.key_words(k) for k in batch])
    counters = np.arange(16, dtype=np.int32).reshape(4, 4)
    draws = numpy(hashing.bits(words, counters))
    assert np.array_equal(draws, reference.bits(words, counters))
    for row, key in enumerate(batch):
        assert np.array_equal(draws[row], numpy(hashing.bits(hashing.key_words(key), counters[row])))


@given(key=keys64, label=labels)
def test_derive_matches_the_reference(key, label):
    words = hashing.key_words(key)
    sub = numpy(hashing.derive(words, label))
    assert sub.dtype == np.int32 and sub.shape == (2,)
    expected = reference.derive(words, label if isinstance(label, str) else int(label))
    assert np.array_equal(sub, expected)


@given(batch=st.lists(keys64, min_size=1, max_size=5), label=labels)
def test_derive_on_the_host_gives_the_traced_words(batch, label):
    # The engine derives its rules' keys on the host; the pieces derive theirs
    # in traced ops: both must be one stream.
    words = np.stack([hashing.key_words(k) for k in batch])
    on_host = hashing.derive_on_host(words, label)
    assert on_host.dtype == np.int32 and on_host.shape == words.shape
    assert np.array_equal(on_host, numpy(hashing.derive(words, label)))
    assert np.array_equal(hashing.derive_on_host(words[0], label), on_host[0])


def test_words_of_seeds_are_the_key_words_of_their_keys():
    # One array for a batch of seeds: row i is key_words(seeds.key(seed i)),
    # low word first.
    from kerastroke.core import seeds

    batch = [0, 7, 2**31 - 2]
    expected = np.stack([hashing.key_words(seeds.key(seed)) for seed in batch])
    words = hashing.words_of(batch)
    assert words.dtype == np.int32 and words.shape == (3, 2)
    assert np.array_equal(words, expected)
    assert hashing.words_of([]).shape == (0, 2)


def test_derive_on_the_host_rejects_keys_without_two_words():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        hashing.derive_on_host(np.zeros((3, 3), np.int32), "x")


def test_derive_splits_streams_by_label_and_by_key():
    words = np.stack([hashing.key_words(k) for k in (1, 2, 3)])
    names = ("select", "mutate", "drop", "grow", 0, 1)
    subs = [numpy(hashing.derive(words, name)) for name in names]
    assert all(s.shape == (3, 2) for s in subs)
    pairs = {tuple(row) for s in subs for row in s.tolist()}
    assert len(pairs) == 3 * len(names)


@pytest.mark.parametrize("bad", [1.5, None, True, b"x"])
def test_derive_rejects_labels_that_are_not_str_or_int(bad):
    # Label digests are cached; True equals 1 as a dict key, so the check must
    # come before the cache (1 is hashed first here).
    hashing.derive_on_host(hashing.key_words(1), 1)
    with pytest.raises(TypeError, match="label"):
        hashing.derive(hashing.key_words(1), bad)
    with pytest.raises(TypeError, match="label"):
        hashing.derive_on_host(hashing.key_words(1), bad)


def test_bits_reject_keys_without_two_words():
    with pytest.raises(ValueError, match="key"):
        hashing.bits(np.zeros(3, np.int32), np.arange(4, dtype=np.int32))


@given(key=keys64, counters=counter_arrays)
def test_unit_float32_is_the_top_24_bits_in_0_1(key, counters):
    words = hashing.key_words(key)
    u = numpy(hashing.unit(words, counters))
    assert u.dtype == np.float32
    assert np.array_equal(u, reference.unit(words, counters))
    assert np.all((u >= 0.0) & (u < 1.0))
    top = reference.bits(words, counters).view(np.uint32) >> np.uint32(8)
    assert np.array_equal(u.astype(np.float64) * 2.0**24, top.astype(np.float64))


@pytest.mark.skipif(not jax_has_x64(), reason="float64 needs JAX_ENABLE_X64 on JAX")
@given(key=keys64, counters=counter_arrays)
def test_unit_float64_has_53_bits_and_agrees_with_float32(key, counters):
    words = hashing.key_words(key)
    u = numpy(hashing.unit(words, counters, "float64"))
    assert u.dtype == np.float64
    assert np.array_equal(u, reference.unit(words, counters, "float64"))
    assert np.all((u >= 0.0) & (u < 1.0))
    scaled = u * 2.0**53
    assert np.array_equal(scaled, np.floor(scaled))
    # The top 24 of the 53 bits are the float32 draw.
    top = np.floor(u * 2.0**24) * 2.0**-24
    assert np.array_equal(top.astype(np.float32), numpy(hashing.unit(words, counters)))


def test_unit_statistics():
    u = numpy(hashing.unit(hashing.key_words(5), np.arange(100_000, dtype=np.int32)))
    # Mean of 100,000 uniform draws: standard deviation 0.0009.
    assert abs(float(u.mean()) - 0.5) < 0.005
    # Each tenth of [0, 1) holds 10,000 draws, standard deviation 95.
    counts = np.histogram(u, bins=10, range=(0.0, 1.0))[0]
    assert np.all(np.abs(counts - 10_000) < 500), counts


@pytest.mark.skipif(jax_has_x64(), reason="only JAX without JAX_ENABLE_X64 lacks float64")
def test_unit_float64_is_refused_without_x64():
    with pytest.raises(ValueError, match="float64"):
        hashing.unit(hashing.key_words(1), np.arange(3, dtype=np.int32), "float64")


@pytest.mark.parametrize("bad", ["int32", "float16"])
def test_unit_rejects_other_dtypes(bad):
    with pytest.raises(ValueError, match="dtype"):
        hashing.unit(hashing.key_words(1), np.arange(3, dtype=np.int32), bad)


@given(
    key=keys64,
    counters=counter_arrays,
    bounds=st.lists(ks.float_elements("float32", allow_nan=False, allow_infinity=False),
                    min_size=2, max_size=2).map(sorted),
    dtype=st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
)
def test_uniform_matches_the_reference_within_bounds(key, counters, bounds, dtype):
    if dtype == "float64" and not jax_has_x64():
        dtype = "float32"
    low, high = bounds
    # Known limits of `uniform` (the mutators never ask for these: they clamp
    # draws into bounds of the weights' own dtype): the sign of a zero drawn
    # between two zero bounds, bounds below the dtype's smallest normal, and
    # bounds so close to the subnormal range that a product of a bound's
    # smallest piece and a draw's smallest piece is subnormal, which XLA on
    # the CPU flushes to zero (found on JAX with bounds [0, 8e-37] in
    # float32). Pieces reach down to 2**-24 (float64: 2**-53) of their value,
    # so the bounds must be 2**48 (2**106) times the smallest normal of the
    # working dtype.
    own = float(np.finfo(ks.numpy_dtype(dtype)).tiny) if dtype != "bfloat16" else 1.2e-38
    work = np.float64 if dtype == "float64" else np.float32
    tiny = max(own, float(np.finfo(work).tiny) * (2.0**106 if work is np.float64 else 2.0**48))
    assume(all(b == 0.0 or abs(b) >= tiny for b in bounds))
    assume(not (low == 0.0 and high == 0.0))
    words = hashing.key_words(key)
    x = numpy(hashing.uniform(words, counters, low, high, dtype))
    assert x.dtype == ks.numpy_dtype(dtype)
    expected = reference.uniform(words, counters, low, high, ks.numpy_dtype(dtype))
    assert np.array_equal(ks.bits(x), ks.bits(expected))
    wide = x.astype(np.float64)
    finite = np.isfinite(wide)  # float16 overflows for float32 bounds
    assert np.all(wide[finite] >= np.float64(low) - abs(low) * 2**-7)
    assert np.all(wide[finite] <= np.float64(high) + abs(high) * 2**-7)


@pytest.mark.parametrize("bounds", [(0.1, 0.3), (-0.7, 0.2), (0.0, 1.401298464324817e-45)])
def test_float64_bounds_are_not_rounded_through_float32(bounds):
    # Regression: `ops.cast` of a Python float goes through float32 on
    # TensorFlow (0.1 became 0.10000000149011612, a float32 subnormal 0.0),
    # so float64 draws differed from JAX's and PyTorch's.
    if not jax_has_x64():
        pytest.skip("float64 needs JAX_ENABLE_X64 on JAX")
    words = hashing.key_words(3)
    counters = np.arange(64, dtype=np.int32)
    x = numpy(hashing.uniform(words, counters, *bounds, "float64"))
    expected = reference.uniform(words, counters, *bounds, np.float64)
    np.testing.assert_array_equal(ks.bits(x), ks.bits(expected))


def test_uniform_spans_far_apart_bounds_without_overflow():
    big = float(np.finfo(np.float32).max)
    x = numpy(hashing.uniform(hashing.key_words(2), np.arange(10_000, dtype=np.int32), -big, big))
    assert np.all(np.isfinite(x))
    assert x.min() < -big / 2 and x.max() > big / 2


def test_inputs_are_not_mutated():
    counters = np.arange(5, dtype=np.int32)
    key = hashing.key_words(1)
    hashing.uniform(key, counters, -1.0, 1.0)
    hashing.derive(key, "x")
    assert counters.tolist() == [0, 1, 2, 3, 4] and key.tolist() == [1, 0]


@pytest.mark.parametrize("name, wrap", compiled_variants())
def test_compiled_draws_are_the_eager_bits(name, wrap):
    keys = keras.ops.convert_to_tensor(batch_keys())
    counters = keras.ops.convert_to_tensor(COUNTERS)

    def draw(keys, counters):
        select = hashing.derive(keys, "select")
        wide = (hashing.uniform(keys, counters, -3.0, 2.0, "float64"),) if jax_has_x64() else ()
        return (
            hashing.bits(select, counters),
            hashing.unit(keys, counters),
            hashing.uniform(keys, counters, -3.0, 2.0),
        ) + wide

    eager = [numpy(x) for x in draw(keys, counters)]
    traced = [numpy(x) for x in wrap(draw)(keys, counters)]
    for a, b in zip(eager, traced):
        assert np.array_equal(ks.bits(a), ks.bits(b)), name
    assert np.array_equal(eager[0], reference.bits(reference.derive(batch_keys(), "select"), COUNTERS))
    assert np.array_equal(eager[2], reference.uniform(batch_keys(), COUNTERS, -3.0, 2.0))
    if jax_has_x64():
        wide = reference.uniform(batch_keys(), COUNTERS, -3.0, 2.0, "float64")
        assert np.array_equal(eager[3], wide)
