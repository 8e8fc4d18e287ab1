"""Stroke on real small models of every common architecture, checked entry by entry.

For each model a `Recorder` keeps the weights right before the callback
applies; after `fit` every variable is compared with them: targeted kernels
change in exactly `round(ratio * size)` entries, all to the written value, and
every other variable (biases unless asked, BatchNormalization statistics and
parameters, optimizer state) keeps its exact bits. The new weights are also
compared bit for bit with the pure `write.apply_rules` on the recorded values.
"""

import numpy as np
import pytest

from kerastroke import Stroke
from kerastroke.engine import writer as write
from tests import models

# builder, the kernels it must target, its variables named `bias`.
ARCHITECTURES = {
    "sequential": (
        models.mlp_sequential,
        ["hidden/kernel", "middle/kernel", "out/kernel"],
        ["hidden/bias", "middle/bias", "out/bias"],
    ),
    "functional": (
        models.mlp_functional,
        ["left/kernel", "right/kernel", "out/kernel"],
        ["left/bias", "right/bias", "out/bias"],
    ),
    "subclassed": (models.mlp_subclassed, ["hidden/kernel", "out/kernel"], ["hidden/bias", "out/bias"]),
    "nested": (
        models.nested,
        ["inner/inner_a/kernel", "inner/inner_b/kernel", "out/kernel"],
        ["inner/inner_a/bias", "inner/inner_b/bias", "out/bias"],
    ),
    "lstm": (
        models.lstm,
        ["lstm_cell/kernel", "lstm_cell/recurrent_kernel", "out/kernel"],
        ["lstm_cell/bias", "out/bias"],
    ),
    "gru": (
        models.gru,
        ["gru_cell/kernel", "gru_cell/recurrent_kernel", "out/kernel"],
        ["gru_cell/bias", "out/bias"],  # GRU's bias is 2-D (reset_after=True).
    ),
    "multi_head_attention": (
        models.attention,
        ["query/kernel", "key/kernel", "value/kernel", "attention_output/kernel", "out/kernel"],
        # The query/key/value biases are 2-D: still biases, not kernels.
        ["query/bias", "key/bias", "value/bias", "attention_output/bias", "out/bias"],
    ),
    "conv1d": (models.conv1d, ["conv/kernel", "out/kernel"], ["conv/bias", "out/bias"]),
    "conv2d": (models.conv2d, ["conv/kernel", "out/kernel"], ["conv/bias", "out/bias"]),
    "conv3d": (models.conv3d, ["conv/kernel", "out/kernel"], ["conv/bias", "out/bias"]),
    "embedding": (models.embedding, ["embed/embeddings", "out/kernel"], ["out/bias"]),
    # gamma and beta are 1-D and not named `bias`: never touched, nor the moving statistics.
    "batch_norm": (models.batch_norm, ["hidden/kernel", "out/kernel"], ["hidden/bias", "out/bias"]),
}

RATIO = 0.25

# Every architecture once with kernels only; those whose biases are unusual also with biases.
CASES = [(name, False) for name in ARCHITECTURES] + [
    (name, True) for name in ("nested", "gru", "multi_head_attention", "conv3d", "batch_norm")
]


def _fit_with_recorder(model, callback):
    recorder = models.Recorder()
    history = models.fit(model, [recorder, callback])
    return recorder.before[0], models.snapshot(model), history


@pytest.mark.parametrize("name, biases", CASES, ids=[f"{n}-biases={b}" for n, b in CASES])
def test_stroke_changes_exactly_the_chosen_entries_of_the_targeted_variables(name, biases):
    build, kernel_suffixes, bias_suffixes = ARCHITECTURES[name]
    model = build()
    stroke = Stroke(value=models.MARK, volatility_ratio=RATIO, biases=biases, seed=11)

    before, after, history = _fit_with_recorder(model, stroke)

    suffixes = kernel_suffixes + (bias_suffixes if biases else [])
    targeted = models.select(before, suffixes)
    mark = np.float32(models.MARK)
    expected_total, targeted_size = 0, 0
    for path, old in before.items():
        new = after[path]
        if path not in targeted:
            assert models.same_bits(new, old), f"{path} was not targeted but changed"
            continue
        assert not np.any(old == mark), f"{path} already held the marker value"
        changed = new != old
        expected = round(RATIO * old.size)
        assert int(changed.sum()) == expected, path
        assert np.all(new[changed] == mark), path
        expected_total += expected
        targeted_size += old.size

    assert history.history["stroke_changed"] == [expected_total]
    assert history.history["stroke_fraction"] == [pytest.approx(expected_total / targeted_size)]

    # The same draw, bit for bit, from the pure function and the derived seed.
    variables = [v for v in model.weights if v.path in targeted]
    assert len(variables) == len(targeted)
    for variable in variables:
        expected, _ = write.apply_rules(
            before[variable.path], stroke.rules, 0, stroke.variable_seed(variable, 0)
        )
        assert models.same_bits(np.asarray(expected), after[variable.path]), variable.path


@pytest.mark.parametrize("name", ["functional", "lstm", "multi_head_attention", "conv3d", "embedding"])
def test_random_values_are_the_pure_functions_draw(name):
    build, kernel_suffixes, bias_suffixes = ARCHITECTURES[name]
    model = build()
    stroke = Stroke(low_bound=-1.0, high_bound=1.0, volatility_ratio=0.4, biases=True, seed=5)

    before, after, history = _fit_with_recorder(model, stroke)

    targeted = models.select(before, kernel_suffixes + bias_suffixes)
    changed_total = 0
    for variable in model.weights:
        old, new = before[variable.path], after[variable.path]
        if variable.path not in targeted:
            assert models.same_bits(new, old), variable.path
            continue
        expected, changed = write.apply_rules(old, stroke.rules, 0, stroke.variable_seed(variable, 0))
        assert models.same_bits(np.asarray(expected), new), variable.path
        differs = new != old
        assert int(differs.sum()) == changed
        # Without replacement: exactly round(ratio * size) entries were drawn.
        assert changed <= round(0.4 * old.size)
        assert np.all((new[differs] >= -1.0) & (new[differs] < 1.0))
        changed_total += changed
    assert history.history["stroke_changed"] == [changed_total]
    assert changed_total > 0
