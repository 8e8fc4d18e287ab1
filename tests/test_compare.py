"""`kerastroke compare`: an end-to-end run, its outputs, determinism, and bad input.

The subprocesses run the backend under test (the environment's KERAS_BACKEND).
"""

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kerastroke.compare import Settings, load_bundled, run_comparison
from kerastroke.compare.cli import main
from kerastroke.compare.progress import Progress
from kerastroke.compare.report import verdicts

EPOCHS = 2
SEEDS = (0, 1)
TECHNIQUES = ("baseline", "stroke", "pruning", "neuroplast")


ROOT = Path(__file__).resolve().parents[1]


def _env():
    # The backend under test, and no log level of ours: the command must quiet TensorFlow itself.
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    # This checkout's package, whichever one the virtual environment was installed from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# What TensorFlow, XLA and absl print unless the command keeps it out.
FRAMEWORK_NOISE = [
    re.compile(r"absl::InitializeLog"),
    re.compile(r"^[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\]", re.M),
    re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: [IWEF] ", re.M),
    re.compile(r"cuInit"),
    re.compile(r"NodeDef mentions attribute"),
    re.compile(r"^WARNING:tensorflow:", re.M),
]


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """One real run of the console script and one bad-file run of `python -m kerastroke`."""
    tmp = tmp_path_factory.mktemp("compare")
    script = Path(sys.executable).with_name("kerastroke")
    assert script.exists(), f"console script missing: {script}; run pip install -e ."
    commands = {
        "run": [str(script), "compare", "--epochs", str(EPOCHS), "--seeds", *map(str, SEEDS),
                "--out", str(tmp / "out")],
        "bad": [sys.executable, "-m", "kerastroke", "compare", "--data", str(tmp / "nope.npz")],
    }
    started = {
        name: subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        )
        for name, argv in commands.items()
    }
    finished = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        finished[name] = subprocess.CompletedProcess(commands[name], process.returncode, stdout, stderr)
    return finished, tmp


@pytest.fixture(scope="module")
def cli_run(processes):
    finished, tmp = processes
    done = finished["run"]
    assert done.returncode == 0, done.stderr[-3000:]
    return done, tmp / "out"


def test_table_on_stdout_progress_on_stderr(cli_run):
    done, _ = cli_run
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["technique", "val", "accuracy"]
    rows = {line.split()[0]: line for line in lines[2:6]}
    assert list(rows) == list(TECHNIQUES)
    assert all("±" in row for row in rows.values())
    assert "%" in rows["pruning"]
    assert "In short:" in done.stdout
    # Progress names every run, with runs done of total.
    assert "[1/8] baseline, seed 0" in done.stderr
    assert "[8/8] neuroplast, seed 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_stderr_carries_no_framework_log_lines(cli_run):
    done, _ = cli_run
    noise = [p.pattern for p in FRAMEWORK_NOISE if p.search(done.stderr)]
    assert noise == [], done.stderr[:3000]
    # Only our progress and the closing lines remain.
    for line in done.stderr.splitlines():
        assert line.startswith(("[", "done in", "report:", "results:", "plots:")), line


def test_results_json_shape(cli_run):
    _, out = cli_run
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == list(SEEDS)
    assert results["training"]["epochs"] == EPOCHS
    assert results["dataset"]["name"] == "digits"
    assert (results["dataset"]["train_samples"], results["dataset"]["val_samples"]) == (1437, 360)
    assert list(results["techniques"]) == list(TECHNIQUES)
    for name, technique in results["techniques"].items():
        assert [run["seed"] for run in technique["runs"]] == list(SEEDS)
        for run in technique["runs"]:
            assert len(run["val_accuracy"]) == len(run["val_loss"]) == EPOCHS
            assert run["final_val_accuracy"] == run["val_accuracy"][-1]
            assert run["final_val_loss"] == run["val_loss"][-1]
            assert 0.0 <= run["sparsity"] <= 1.0 and run["seconds"] > 0
            assert 0.1 < run["final_val_accuracy"] <= 1.0  # better than chance on 10 classes
            if name == "baseline":
                assert run["changed_fraction"] is None and technique["settings"] is None
            else:
                assert len(run["changed_fraction"]) == EPOCHS
        accuracies = [run["final_val_accuracy"] for run in technique["runs"]]
        assert technique["summary"]["val_accuracy_mean"] == pytest.approx(np.mean(accuracies))
        assert technique["summary"]["val_accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    runs = {name: t["runs"] for name, t in results["techniques"].items()}
    # What each preset does at its defaults must show in the numbers.
    assert all(run["sparsity"] == 0.0 for run in runs["baseline"])
    assert all(run["sparsity"] > 0.5 for run in runs["pruning"])  # zeroes |w| <= 0.2
    stroke_fractions = [f for run in runs["stroke"] for f in run["changed_fraction"]]
    assert stroke_fractions == pytest.approx([0.05] * len(stroke_fractions), abs=1e-3)
    assert results["techniques"]["pruning"]["settings"]["max_value"] == 0.2
    assert {d["technique"] for d in results["differences"]} == set(TECHNIQUES[1:])


def test_report_and_plots(cli_run):
    _, out = cli_run
    report = (out / "report.md").read_text()
    assert "| technique | val accuracy | val loss | zero weights | seconds |" in report
    assert "seed-to-seed spread" in report
    # One plain statement per technique and metric.
    assert report.count("larger** than the seed-to-seed spread") == 6
    for name in ("val_accuracy.png", "weight_distribution.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({name})" in report


def test_same_seeds_same_numbers_whatever_else_runs(cli_run):
    """A second run, in this process, in another order and without stroke, repeats the CLI's numbers."""
    _, out = cli_run
    saved = json.loads((out / "results.json").read_text())["techniques"]
    again = run_comparison(
        load_bundled("digits"), ["neuroplast", "pruning"], seeds=[1], settings=Settings(epochs=EPOCHS)
    )
    assert [run.technique for run in again.runs] == ["baseline", "neuroplast", "pruning"]
    for run in again.runs:
        before = saved[run.technique]["runs"][1]
        assert before["seed"] == 1
        assert run.val_accuracy == before["val_accuracy"]
        # The command turns on TensorFlow's op determinism, whose reduction kernels round
        # differently (1 ulp) from the default ones this process uses; each is repeatable.
        assert run.val_loss == pytest.approx(before["val_loss"], rel=1e-6, abs=0)
        assert run.sparsity == before["sparsity"]
        assert run.changed_fraction == before["changed_fraction"]


def _write_bad(kind, path):
    good = {
        "x_train": np.zeros((6, 4), "float32"),
        "y_train": np.array([0, 1, 0, 1, 0, 1]),
        "x_val": np.zeros((2, 4), "float32"),
        "y_val": np.array([0, 1]),
    }
    if kind == "missing file":
        return path
    if kind == "not an npz":
        path.write_text("x_train,y_train\n1,2\n")
    elif kind == "single npy array":
        with open(path, "wb") as file:
            np.save(file, good["x_train"])
    elif kind == "missing key":
        np.savez(path, **{k: v for k, v in good.items() if k != "y_val"})
    elif kind == "mismatched lengths":
        np.savez(path, **dict(good, y_train=np.array([0, 1, 0])))
    elif kind == "mismatched features":
        np.savez(path, **dict(good, x_val=np.zeros((2, 5), "float32")))
    elif kind == "x wrong dims":
        np.savez(path, **dict(good, x_train=np.zeros((6, 2, 2), "float32")))
    elif kind == "y wrong dims":
        np.savez(path, **dict(good, y_val=np.array([[1, 0], [0, 1]])))
    elif kind == "object array":
        np.savez(path, **dict(good, y_train=np.array([0, 1, "a", None, 0, 1], dtype=object)))
    elif kind == "zip of text files":
        with zipfile.ZipFile(path, "w") as archive:
            for key in good:
                archive.writestr(key, "1,2,3\n")
    elif kind == "member named .npy that is not one":
        np.savez(path, **{k: v for k, v in good.items() if k != "y_val"})
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("y_val.npy", "0,1\n")
    elif kind == "overflows float32":
        np.savez(path, **dict(good, x_val=np.full((2, 4), 1e39)))
    elif kind == "unseen validation label":
        np.savez(path, **dict(good, y_val=np.array([0, 2])))
    return path


BAD_FILES = {
    "missing file": "no such file",
    "not an npz": "not an .npz archive",
    "single npy array": "not an .npz archive",
    "missing key": "missing array y_val",
    "mismatched lengths": "x_train has 6 samples but y_train has 3",
    "mismatched features": "x_train has 4 features but x_val has 5",
    "x wrong dims": "x_train must be 2-D",
    "y wrong dims": "y_val must be 1-D",
    "object array": "cannot read y_train: it holds Python objects",
    "zip of text files": "member 'x_train' is not a .npy array",
    "member named .npy that is not one": "member 'y_val.npy' is named .npy but is not a .npy array",
    "overflows float32": "x_val holds values up to 1e+39, beyond float32's range",
    "unseen validation label": "y_val has labels that y_train never has (2)",
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_one_line_and_status_2(kind, tmp_path, capfd):
    path = _write_bad(kind, tmp_path / "data.npz")
    out = tmp_path / "out"
    status = main(["compare", "--data", str(path), "--out", str(out)])
    captured = capfd.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("kerastroke compare: error: ")
    assert BAD_FILES[kind] in lines[0]
    assert "allow_pickle" not in lines[0]  # numpy's advice, meaningless to the user
    assert not out.exists()  # rejected before anything was trained or written


def test_bad_file_through_python_m(processes):
    finished, tmp = processes
    done = finished["bad"]
    assert done.returncode == 2
    # The file is checked before any framework loads: nothing else can reach stderr.
    assert done.stderr == f"kerastroke compare: error: {tmp / 'nope.npz'}: no such file\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--epochs", "0"],
        ["--seeds", "1", "1"],
        ["--seeds", "-3"],
        ["--techniques", "dropout"],
        ["--techniques", ""],
        ["--seeds", ""],
        ["--seeds", " , "],
        ["--dataset", "mnist"],  # would need a download: not offered
        ["--dataset", "wine", "--data", "x.npz"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, tmp_path, capfd):
    with pytest.raises(SystemExit) as stopped:
        status = main(["compare", "--out", str(tmp_path / "out"), *argv])
        raise SystemExit(status)
    assert stopped.value.code == 2
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 1 and "error:" in lines[0], lines
    assert not (tmp_path / "out").exists()


def _summary(base, other):
    def figures(values):
        values = np.asarray(values, "float64")
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return (float(np.mean(values)), std)

    return {
        "baseline": {"val_accuracy": figures(base), "val_loss": figures(base)},
        "pruning": {"val_accuracy": figures(other), "val_loss": figures(other)},
    }


def test_verdicts_compare_the_difference_with_the_larger_spread():
    far = verdicts(_summary([0.90, 0.92, 0.91], [0.80, 0.82, 0.81]))[0]
    assert far["larger"] is True and far["spread"] == pytest.approx(0.01)
    near = verdicts(_summary([0.90, 0.92, 0.91], [0.905, 0.925, 0.915]))[0]
    assert near["larger"] is False
    alone = verdicts(_summary([0.9], [0.5]))[0]
    assert alone["larger"] is None and alone["spread"] is None
    # Seeds that agree exactly have no spread; one validation sample is the floor for accuracy.
    tied = verdicts(_summary([0.9, 0.9], [0.9025, 0.9025]), resolution=1 / 360)
    assert [v["larger"] for v in tied] == [False, True]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_logs_lines_elsewhere():
    terminal, log = _Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(stream)
        progress.run_started(0, 8, "stroke", 3)
        progress.epoch_ended(4, 20)
        progress.finished()
    assert "\r[1/8] stroke, seed 3: epoch 5/20" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n") and terminal.getvalue().count("\n") == 1
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("[1/8] stroke, seed 3") and lines[-1].startswith("done in")
    assert "\r" not in log.getvalue() and "epoch" not in log.getvalue()


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capfd):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    status = main(["compare", "--dataset", "wine", "--out", str(taken)])
    lines = capfd.readouterr().err.splitlines()
    assert status == 2 and lines == [f"kerastroke compare: error: --out {taken} exists and is not a directory"]
    assert taken.read_text() == "mine"


def test_a_failed_write_leaves_no_half_written_folder(tmp_path, monkeypatch):
    from kerastroke.compare import cli, experiment, plots

    run = experiment.Run(
        technique="baseline", seed=0, val_accuracy=[0.5], val_loss=[1.0], changed_fraction=None,
        sparsity=0.0, seconds=0.1, kernel_values=np.zeros(4, "float32"),
    )
    comparison = experiment.Comparison(
        dataset={"name": "fake", "source": "a test", "train_samples": 4, "val_samples": 2,
                 "features": 2, "classes": 2},
        settings=Settings(epochs=1), seeds=[0], techniques=["baseline"], runs=[run],
    )

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "write_plots", full_disk)
    out = tmp_path / "new" / "out"
    with pytest.raises(OSError, match="No space left"):
        cli._write_outputs(comparison, str(out))
    # results.json, written first, was removed with both folders the call had made.
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(OSError):
        cli._write_outputs(comparison, str(kept))
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
