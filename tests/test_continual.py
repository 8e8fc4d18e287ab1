"""`kerastroke compare --scenario continual`: tasks, training on without reset, report, bad input.

Small settings throughout: a few images, tasks and epochs, on the backend
under test (the environment's KERAS_BACKEND).
"""

import json

import keras
import numpy as np
import pytest

import kerastroke
from kerastroke.compare import continual, continual_report, options
from kerastroke.compare.cli import build_parser, chosen_techniques, main
from kerastroke.compare.data import load_bundled
from kerastroke.compare.options import ContinualSettings, Technique

TINY = ContinualSettings(tasks=3, epochs=2, samples=96, probe_samples=64)


@pytest.fixture(scope="module")
def digits():
    return load_bundled("digits")


# -- the tasks -------------------------------------------------------------------------------


def test_random_label_tasks_relabel_one_fixed_set_of_images(digits):
    tasks = continual.random_label_tasks(digits, 4, 96, seed=3)
    assert [task.index for task in tasks] == [0, 1, 2, 3]
    subset = digits.x_train[continual.training_subset(digits, 96)]
    for task in tasks:
        np.testing.assert_array_equal(task.x_train, subset)
        # Scored on what it trains on: memorising the labels is the task.
        np.testing.assert_array_equal(task.x_score, task.x_train)
        np.testing.assert_array_equal(task.y_score, task.y_train)
        assert task.y_train.dtype == np.int32 and task.y_train.min() >= 0
        assert task.y_train.max() < digits.classes and task.permutation is None
    labels = np.array([task.y_train for task in tasks])
    # Every pair of tasks disagrees on most images (chance agreement is 1 in 10).
    for a in range(4):
        for b in range(a + 1, 4):
            assert np.mean(labels[a] == labels[b]) < 0.3
    assert len(np.unique(labels)) == digits.classes


def test_tasks_depend_on_the_seed_and_only_on_it(digits):
    first = continual.random_label_tasks(digits, 2, 96, seed=0)
    again = continual.random_label_tasks(digits, 2, 96, seed=0)
    other = continual.random_label_tasks(digits, 2, 96, seed=1)
    np.testing.assert_array_equal(first[1].y_train, again[1].y_train)
    assert not np.array_equal(first[1].y_train, other[1].y_train)
    # The images are fixed by the scenario, not by the run's seed.
    np.testing.assert_array_equal(first[0].x_train, other[0].x_train)
    assert len(continual.training_subset(digits, 10**6)) == len(digits.x_train)


def test_permuted_tasks_reorder_the_features_of_both_splits(digits):
    tasks = continual.permuted_tasks(digits, 3, 96, seed=0)
    chosen = continual.training_subset(digits, 96)
    orders = [task.permutation for task in tasks]
    for task in tasks:
        assert sorted(task.permutation) == list(range(digits.features))
        np.testing.assert_array_equal(task.x_train, digits.x_train[chosen][:, task.permutation])
        np.testing.assert_array_equal(task.y_train, digits.y_train[chosen])
        # Scored on the held-out split, in the task's order.
        np.testing.assert_array_equal(task.x_score, digits.x_val[:, task.permutation])
        np.testing.assert_array_equal(task.y_score, digits.y_val)
    assert all(not np.array_equal(orders[a], orders[b]) for a in range(3) for b in range(a + 1, 3))


def test_make_tasks_refuses_an_unknown_kind(digits):
    with pytest.raises(ValueError, match="'shuffled'"):
        continual.make_tasks(digits, "shuffled", TINY, seed=0)


@pytest.mark.parametrize(
    "field, value",
    [("tasks", 0), ("epochs", 1.5), ("samples", True), ("learning_rate", 0.0),
     ("learning_rate", float("inf")), ("dormant_threshold", -0.5), ("batch_size", "32")],
)
def test_settings_refuse_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        ContinualSettings(**{field: value})


# -- training through the tasks -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(digits):
    comparison = continual.run_continual(
        digits, ["stroke", "neuroplast"], seeds=[0, 1], settings=TINY
    )
    return comparison


def test_every_run_records_every_task(tiny_runs):
    comparison = tiny_runs
    assert comparison.techniques == ["baseline", "stroke", "neuroplast"]
    assert [(r.technique, r.seed) for r in comparison.runs] == [
        (t, s) for s in (0, 1) for t in ("baseline", "stroke", "neuroplast")
    ]
    for run in comparison.runs:
        assert len(run.accuracy) == len(run.loss) == len(run.dormant) == TINY.tasks
        assert all(0.0 <= a <= 1.0 for a in run.accuracy)
        assert all(0.0 <= d <= 1.0 for d in run.dormant)
        assert all(np.isfinite(run.loss)) and run.seconds > 0
        if run.technique == "baseline":
            assert run.changed_fraction is None and run.settings is None
        else:
            # One application per epoch of the whole sequence.
            assert len(run.changed_fraction) == TINY.tasks * TINY.epochs
    stroke = comparison.runs_of("stroke")[0]
    assert stroke.changed_fraction == pytest.approx([0.05] * 6, abs=1e-3)
    # Memorising 96 random labels over 10 classes: the first task is learnt beyond chance.
    assert all(run.accuracy[0] > 0.15 for run in comparison.runs_of("baseline"))


def test_same_seed_same_numbers(digits, tiny_runs):
    again = continual.run_continual(digits, ["stroke"], seeds=[1], settings=TINY)
    before = {r.technique: r for r in tiny_runs.runs if r.seed == 1}
    for run in again.runs:
        assert run.accuracy == before[run.technique].accuracy
        assert run.dormant == before[run.technique].dormant
        assert run.loss == pytest.approx(before[run.technique].loss, rel=1e-5)


def test_the_model_and_its_optimizer_train_on_across_tasks(digits, monkeypatch):
    """The epoch index goes on across tasks and the optimizer is never reset between them."""
    # Applies at epochs 1, 3, 5, ...: counted per task it would never apply with 1 epoch a task.
    every_other = Technique("ShrinkPerturb", {"shrink": 0.5, "perturb": 0.0, "period": 2}, "test")
    monkeypatch.setitem(options.CONTINUAL_TECHNIQUES, "every_other", every_other)
    settings = ContinualSettings(tasks=4, epochs=1, samples=64, batch_size=32)
    trainer = continual.ContinualTrainer(digits, settings, train_samples=64)
    tasks = continual.make_tasks(digits, options.RANDOM_LABELS, settings, seed=0)
    weights = continual.experiment.initial_weights(digits.features, digits.classes, 64, seed=0)
    run = trainer.run("every_other", 0, weights, tasks)
    assert run.changed_fraction == [0.0, 1.0, 0.0, 1.0]
    steps = settings.tasks * settings.epochs * 2
    assert int(keras.ops.convert_to_numpy(trainer.model.optimizer.iterations)) == steps
    # A second run on the same trainer starts again from the initial weights and a fresh optimizer.
    assert trainer.run("every_other", 0, weights, tasks).accuracy == run.accuracy


class _ProbeTaker(kerastroke.PlasticityCallback):
    """A technique that needs a probe batch, as ReDo does; it changes nothing."""

    seen = []

    def __init__(self, probe, seed=None):
        rule = kerastroke.Rule(kerastroke.selectors.random_fraction(), kerastroke.mutators.zero(),
                               kerastroke.schedules.constant(0.0))
        super().__init__([rule], seed=seed, name="probe_taker")
        _ProbeTaker.seen.append(np.array(probe))


def test_a_technique_that_takes_a_probe_gets_the_first_tasks_inputs(digits, monkeypatch):
    monkeypatch.setattr(kerastroke, "ProbeTaker", _ProbeTaker, raising=False)
    monkeypatch.setitem(
        options.CONTINUAL_TECHNIQUES, "probe_taker", Technique("ProbeTaker", {}, "test", takes=("probe",))
    )
    _ProbeTaker.seen.clear()
    settings = ContinualSettings(tasks=2, epochs=1, samples=64, probe_samples=40)
    comparison = continual.run_continual(digits, ["probe_taker"], seeds=[0], settings=settings)
    first = continual.make_tasks(digits, options.RANDOM_LABELS, settings, seed=0)[0]
    assert len(_ProbeTaker.seen) == 1
    np.testing.assert_array_equal(_ProbeTaker.seen[0], first.x_train[:40])
    assert comparison.runs_of("probe_taker")[0].changed_fraction == [0.0, 0.0]
    with pytest.raises(ValueError, match="ProbeTaker needs probe"):
        options.CONTINUAL_TECHNIQUES["probe_taker"].build(0)


def test_unknown_technique_kind_or_no_seeds_are_refused(digits):
    with pytest.raises(ValueError, match="'pruning'"):
        continual.run_continual(digits, ["pruning"], seeds=[0], settings=TINY)
    with pytest.raises(ValueError, match="'shuffled'"):
        continual.run_continual(digits, [], seeds=[0], settings=TINY, task_kind="shuffled")
    with pytest.raises(ValueError, match="seeds"):
        continual.run_continual(digits, [], seeds=[], settings=TINY)


# Per-task loss of the baseline and stroke on digits (random labels, TINY, seed 0), measured
# on TensorFlow: initial weights, tasks and batch order come from NumPy and Stroke's draws are
# counter-based, so every backend must repeat them. ShrinkPerturb draws from Keras initializers.
# JAX and PyTorch agreed to 2e-7.
TINY_SEED0_LOSS = {
    "baseline": [1.266947627067566, 1.8076995611190796, 1.8581701517105103],
    "stroke": [1.4412355422973633, 1.8160988092422485, 1.895361304283142],
    "neuroplast": [1.2678954601287842, 1.800522804260254, 1.8592796325683594],
}
TINY_SEED0_ACCURACY = {"baseline": [58, 33, 26], "stroke": [53, 31, 25], "neuroplast": [58, 31, 28]}


def test_same_numbers_on_every_backend(tiny_runs):
    runs = {run.technique: run for run in tiny_runs.runs if run.seed == 0}
    for technique, expected in TINY_SEED0_LOSS.items():
        assert runs[technique].loss == pytest.approx(expected, rel=1e-5), keras.backend.backend()
        correct = [round(a * 96) for a in runs[technique].accuracy]
        assert correct == TINY_SEED0_ACCURACY[technique], keras.backend.backend()


# -- the report ---------------------------------------------------------------------------------


def _summary(first, last):
    def figures(values):
        values = np.asarray(values, "float64")
        return (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None)

    return {
        name: {"first": figures(first[name]), "last": figures(last[name])} for name in first
    }


def test_verdicts_say_who_keeps_plasticity_beyond_the_spread():
    first = {t: [0.95, 0.96, 0.97] for t in ("baseline", "a", "b", "c")}
    last = {
        "baseline": [0.40, 0.45, 0.50],  # std 0.05
        "a": [0.70, 0.72, 0.74],  # +0.32: keeps
        "b": [0.42, 0.50, 0.58],  # +0.05 with std 0.08: within
        "c": [0.20, 0.21, 0.22],  # -0.26: worse
    }
    summary = _summary(first, last)
    found = {v["technique"]: v for v in continual_report.verdicts(summary, floor=1 / 512)}
    assert {t: v["outcome"] for t, v in found.items()} == {"a": "keeps", "b": "within", "c": "worse"}
    assert found["a"]["spread"] == pytest.approx(0.05) and found["b"]["spread"] == pytest.approx(0.08)
    change = continual_report.baseline_change(summary, floor=1 / 512)
    assert change["lost"] is True and change["difference"] == pytest.approx(-0.51)
    short = continual_report.in_short(list(found.values()), change)
    assert "the baseline lost plasticity" in short
    assert "Keeps plasticity beyond the seed-to-seed spread: a." in short
    assert "b (within the spread of the baseline)" in short and "c (below the baseline)" in short
    # A baseline that did not lose plasticity is said so: the run cannot show a technique keeping it.
    steady = _summary({"baseline": [0.9, 0.92]}, {"baseline": [0.91, 0.9]})
    assert continual_report.baseline_change(steady)["lost"] is False
    alone = _summary({"baseline": [0.9], "a": [0.9]}, {"baseline": [0.4], "a": [0.8]})
    assert continual_report.verdicts(alone)[0]["outcome"] is None
    assert continual_report.in_short(continual_report.verdicts(alone),
                                     continual_report.baseline_change(alone)) == ""


def test_report_and_results_of_a_run(tiny_runs):
    text = continual_report.markdown_report(tiny_runs, {"Accuracy per task": "task_accuracy.png"})
    assert "| technique | first-task accuracy | last-task accuracy |" in text
    assert "Tasks: **random labels**. 3 tasks on one fixed subset of 96 training images" in text
    assert "never reset" in text and "Adam (learning rate 0.03)" in text
    assert text.count("- **") == 2  # one sentence per technique
    assert "- The baseline's last-task accuracy" in text
    assert "![Accuracy per task](task_accuracy.png)" in text
    assert f"Backend: {keras.backend.backend()}." in text
    results = json.loads(json.dumps(continual_report.results(tiny_runs), allow_nan=False))
    assert results["scenario"] == "continual" and results["tasks"] == "random-labels"
    assert results["training"]["tasks"] == 3 and results["seeds"] == [0, 1]
    stroke = results["techniques"]["stroke"]
    assert [len(run["accuracy"]) for run in stroke["runs"]] == [3, 3]
    assert stroke["summary"]["last_task_accuracy_mean"] == pytest.approx(
        np.mean([run["accuracy"][-1] for run in stroke["runs"]])
    )
    assert {v["technique"] for v in results["verdicts"]} == {"stroke", "neuroplast"}


# -- the command line ----------------------------------------------------------------------------


def test_the_command_runs_the_scenario(tmp_path, capfd, monkeypatch):
    from kerastroke.compare import cli

    # In this process: the command's process-wide deterministic kernels would outlive the test.
    monkeypatch.setattr(cli, "_deterministic_ops", lambda: None)
    out = tmp_path / "out"
    status = main(["compare", "--scenario", "continual", "--tasks", "permuted", "--task-count", "2",
                   "--epochs", "1", "--seeds", "0", "1", "--techniques", "stroke", "--out", str(out)])
    done = capfd.readouterr()
    assert status == 0, done.err[-3000:]
    lines = done.out.splitlines()
    assert lines[0].split()[:2] == ["technique", "first-task"]
    assert [line.split()[0] for line in lines[2:4]] == ["baseline", "stroke"]
    assert "In short: the baseline" in done.out
    assert "[4/4] stroke, seed 1" in done.err and f"report: {out / 'report.md'}" in done.err
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == "permuted" and results["training"]["epochs"] == 1
    assert "Tasks: **permuted inputs**" in (out / "report.md").read_text()
    for name in ("task_accuracy.png", "dormant_units.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_defaults_of_each_scenario():
    stationary = build_parser().parse_args(["compare"])
    assert stationary.scenario == "stationary"
    assert chosen_techniques(stationary) == list(options.DEFAULT_TECHNIQUES)
    continual_args = build_parser().parse_args(["compare", "--scenario", "continual"])
    assert chosen_techniques(continual_args) == list(options.CONTINUAL_TECHNIQUES)
    picked = build_parser().parse_args(
        ["compare", "--scenario", "continual", "--techniques", "Shrink-Perturb,stroke", "all"]
    )
    assert chosen_techniques(picked) == ["shrink_perturb", "stroke", "redo", "continual_backprop", "neuroplast"]


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--tasks", "permuted"], "--tasks applies to --scenario continual only"),
        (["--task-count", "4"], "--task-count applies to --scenario continual only"),
        (["--scenario", "continual", "--techniques", "pruning"],
         "unknown technique 'pruning'; choose from shrink_perturb, redo, continual_backprop, stroke, "
         "neuroplast or all (for --scenario continual)"),
        (["--scenario", "continual", "--tasks", "shuffled"], "invalid choice: 'shuffled'"),
        (["--scenario", "continual", "--task-count", "0"], "expected a positive integer"),
        (["--scenario", "continual", "--epochs", "-1"], "expected a positive integer"),
        (["--scenario", "continual", "--seeds", "2", "2"], "--seeds lists a seed twice"),
        (["--scenario", "sequential"], "invalid choice: 'sequential'"),
    ],
)
def test_bad_options_are_one_line_exit_2_and_no_output(argv, said, tmp_path, capfd):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        raise SystemExit(main(["compare", "--out", str(out), *argv]))
    assert stopped.value.code == 2
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith("kerastroke") and "error:" in lines[0] and said in lines[0], lines[0]
    assert not out.exists()
