"""`kerastroke compare` with every built-in preset, and the same numbers on every backend."""

import keras
import pytest

from kerastroke.compare import Settings, load_bundled, run_comparison
from kerastroke.compare.cli import build_parser, chosen_techniques
from kerastroke.compare.options import DEFAULT_TECHNIQUES, TECHNIQUES
from kerastroke.compare.report import markdown_report

BUILT_IN = ["stroke", "pruning", "neuroplast", "magnitude_pruning", "set", "shrink_perturb"]

# Final validation loss on wine, seed 0, 6 epochs, measured on TensorFlow; PyTorch gave the
# same to 2e-7. Initial weights and batch order come from NumPy, and every preset draws
# counter-based bits (SET and ShrinkPerturb the traced Glorot-uniform draw of the layer's
# own initializer), so only training's float rounding differs between backends.
WINE_SEED0_6_EPOCHS = {
    "baseline": 0.6324707865715027,
    "stroke": 0.7985576391220093,
    "pruning": 0.8110061287879944,
    "neuroplast": 0.6279395222663879,
    "magnitude_pruning": 0.9502966403961182,
    "set": 1.089431643486023,
    "shrink_perturb": 1.0196062326431274,
}


@pytest.fixture(scope="module")
def wine_runs():
    # SET runs before ShrinkPerturb: SET's zero masks must not outlive its own run.
    comparison = run_comparison(
        load_bundled("wine"),
        ["stroke", "pruning", "neuroplast", "magnitude_pruning", "set", "shrink_perturb"],
        seeds=[0],
        settings=Settings(epochs=6),
    )
    return comparison, {run.technique: run for run in comparison.runs}


def test_every_built_in_preset_is_offered():
    assert list(TECHNIQUES) == BUILT_IN
    parsed = build_parser().parse_args(["compare", "--techniques", "set", "Shrink-Perturb,magnitude_pruning"])
    assert chosen_techniques(parsed) == ["set", "shrink_perturb", "magnitude_pruning"]
    everything = build_parser().parse_args(["compare", "--techniques", "all"])
    assert chosen_techniques(everything) == BUILT_IN
    assert chosen_techniques(build_parser().parse_args(["compare"])) == list(DEFAULT_TECHNIQUES)
    assert set(DEFAULT_TECHNIQUES) <= set(BUILT_IN)


def test_help_documents_each_technique_and_its_parameters(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    text = capsys.readouterr().out
    for name, technique in TECHNIQUES.items():
        assert f"  {name} " in text and technique.call in text
    assert "MagnitudePruning(sparsity=0.5)" in text
    assert "SET(sparsity=0.9, drop_fraction=0.3)" in text
    assert "ShrinkPerturb(shrink=0.4, perturb=0.1, period=6)" in text


def test_each_preset_does_what_it_says(wine_runs):
    _, runs = wine_runs
    assert runs["magnitude_pruning"].sparsity == pytest.approx(0.5, abs=0.01)
    assert runs["set"].sparsity == pytest.approx(0.9, abs=0.01)
    # Period 6: the first application is at epoch 5, and it touches every entry.
    assert runs["shrink_perturb"].changed_fraction == [0.0] * 5 + [1.0]
    assert runs["shrink_perturb"].settings == {
        "shrink": 0.4, "perturb": 0.1, "period": 6, "reset_optimizer": False,
        "layers": None, "biases": True,
    }


def test_a_persistent_preset_leaves_no_mask_for_the_next_run(wine_runs):
    _, runs = wine_runs
    # ShrinkPerturb ran after SET on the same compiled model; SET held 90% of it at zero.
    assert runs["shrink_perturb"].sparsity == 0.0


def test_same_numbers_as_on_tensorflow(wine_runs):
    """The reference figures came from TensorFlow; every backend must repeat them."""
    _, runs = wine_runs
    measured = {name: runs[name].val_loss[-1] for name in WINE_SEED0_6_EPOCHS}
    assert measured == pytest.approx(WINE_SEED0_6_EPOCHS, rel=1e-5), keras.backend.backend()


def test_report_says_a_seed_gives_the_same_numbers_on_every_backend(wine_runs):
    comparison, _ = wine_runs
    text = markdown_report(comparison, {})
    assert f"Backend: {keras.backend.backend()}." in text
    assert "the same numbers on TensorFlow, JAX and PyTorch up to float rounding" in text
