"""The benchmark harness computes its ratios and verdicts from the numbers it measured (no timing asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from benchmarks import apply, models, report
from benchmarks.timing import Timing, measure, ratio

ROOT = Path(__file__).resolve().parent.parent


def test_measure_counts_calls_and_keeps_warmup_apart():
    calls = []
    timing = measure(calls.append, repeats=4, prepare=lambda: calls.append("prepare"))
    assert calls == ["prepare", 0, "prepare", 1, "prepare", 2, "prepare", 3, "prepare", 4]
    assert len(timing.samples) == 4 and len(timing.warmup) == 1
    assert timing.best == min(timing.samples)
    assert Timing((3.0, 1.0, 2.0)).median == 2.0


def test_ratio_handles_missing_numbers():
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(None, 3.0) is None and ratio(1.0, 0.0) is None


def test_budget_is_ten_memcpys_and_twenty_microseconds_per_variable():
    assert apply.budget(1e-3, 0) == pytest.approx(10e-3)
    assert apply.budget(1e-3, 512) == pytest.approx(10e-3 + 512 * 20e-6)


def test_targets_are_counted_from_the_model_by_the_contract():
    model = models.build("transformer", blocks=1, d_model=8, heads=2, mlp=16, sequence=4)
    kernels = models.targeted(model, biases=False)
    with_biases = models.targeted(model, biases=True)
    # Query, key, value, output projections (3-d), two MLP kernels, the head; the query, key and
    # value biases are 2-d but named `bias`, so they are biases.
    assert len(kernels) == 7 and all(len(v.shape) >= 2 and v.name != "bias" for v in kernels)
    assert sum(len(v.shape) == 3 for v in kernels) == 4
    kernel_ids = {id(v) for v in kernels}
    extra = [v for v in with_biases if id(v) not in kernel_ids]
    assert len(with_biases) == 14 and all(v.name == "bias" for v in extra)
    # LayerNormalization's gamma and beta are trainable but never targeted.
    assert not any(v.name in ("gamma", "beta") for v in with_biases)
    assert models.takes_biases("ShrinkPerturb", models.PRESETS["ShrinkPerturb"]())
    assert not models.takes_biases("Stroke", models.PRESETS["Stroke"]())


def test_one_model_measured_end_to_end():
    spec = {"kind": "dense", "sizes": {"layers": 3, "width": 8}}
    presets = {name: models.PRESETS[name] for name in ("Stroke", "MagnitudePruning", "ShrinkPerturb")}
    row = apply.measure_model("tiny", spec, presets, repeats=2, budget_s=None, next_step=True, step_repeats=1,
                              memcpy_repeats=3, log=lambda message: None)
    assert row["targets"]["kernels"]["variables"] == 3 and row["targets"]["kernels"]["entries"] == 192
    assert row["targets"]["kernels and biases"]["entries"] == 192 + 24
    for name, entry in row["presets"].items():
        assert "error" not in entry, entry.get("traceback")
        yardstick = row["targets"][entry["targets"]]
        assert entry["targets"] == ("kernels and biases" if name == "ShrinkPerturb" else "kernels")
        assert entry["repeats"] == 2 and entry["first_s"] == entry["warmup_s"][0]
        assert entry["ratio_to_memcpy"] == pytest.approx(entry["min_s"] / yardstick["memcpy"]["min_s"])
        assert entry["met"] == (entry["min_s"] <= yardstick["budget_s"])
        step = entry["next_step"]
        assert step["plain"]["repeats"] == step["after"]["repeats"] == 1
        assert step["extra_s"] == pytest.approx(step["after"]["min_s"] - step["plain"]["min_s"])
    assert row["presets"]["MagnitudePruning"]["changed_fraction"] == pytest.approx(0.5, abs=0.02)
    assert row["presets"]["Stroke"]["changed_fraction"] == pytest.approx(0.05, abs=0.02)
    for yardstick in row["targets"].values():  # the CPU path runs on every backend here (Numba installed)
        assert yardstick["io"]["repeats"] >= 1 and yardstick["io"]["min_s"] > 0


def test_an_application_that_computes_nothing_leaves_every_value_as_it_was():
    # The benchmark's I/O yardstick reads each group to the host, copies it
    # and writes it back: the variables (of two shapes) keep their values.
    model = models.build("dense", layers=3, width=8)
    variables = models.targeted(model, biases=True)
    before = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    copy_through = apply._copy_through(variables)
    for _ in range(3):
        copy_through()
    for value, variable in zip(before, variables):
        assert (keras.ops.convert_to_numpy(variable) == value).all()
    assert apply._copy_through([]) is None


def _entry(seconds, budget, first):
    return {"min_s": seconds, "budget_s": budget, "over_budget": seconds / budget, "met": seconds <= budget,
            "ratio_to_memcpy": seconds / 1e-3, "first_s": first, "first_met": first < 2.0, "warmup_s": [first],
            "targets": "kernels", "changed_fraction": 0.05}


def _fit_row(overhead, cpu):
    return {"overhead": overhead, "cpu_overhead": cpu, "min_epoch_s": 1.0, "callback_s_per_epoch": 0.01,
            "sparsity_after": 0.8}


def _results():
    yardstick = {"variables": 4, "entries": 100, "memcpy": {"min_s": 1e-3}, "read_back": {"min_s": 1e-4},
                 "budget_s": 0.01}
    row = {"description": "Dense", "targets": {"kernels": {**yardstick, "io": {"min_s": 3e-4}},
                                               "kernels and biases": yardstick},
           "presets": {"Stroke": _entry(0.005, 0.01, 0.5), "SET": _entry(0.05, 0.01, 3.0)}}
    fit = {"frequency": 100, "schedule": {"final": 0.8, "end": 2400}, "warmup_epochs": 1, "timed_epochs": 5,
           "model": {"layers": [256] * 17 + [10], "kernels": 17, "kernel_weights": 1_050_000},
           "data": {"samples": 25_600, "batch_size": 64, "steps_per_epoch": 400},
           "configs": {"baseline": {**_fit_row(0.0, 0.0), "spread": 0.05},
                       "MagnitudePruning": _fit_row(0.05, 0.12), "Stroke": _fit_row(0.02, 0.01)}}
    return {
        "mode": "quick", "started": "now", "duration_s": 60.0, "command": ["python", "-m", "benchmarks"],
        "load_start": [1.0, 1.0, 1.0], "load_end": [2.0, 1.0, 1.0],
        "machine": {"cpu": "CPU", "usable_cores": 2, "memory_gib": 8.0, "python": "3.11", "kerastroke": "3",
                    "git_commit": "abc", "versions": {"keras": "3", "numpy": "2"}},
        "backends": {"jax": {"backend": {"keras_backend": "jax", "version": "0.1", "x64": False},
                             "duration_s": 50.0, "apply": {"models": {"dense4": row}, "load_at_start": [1.0]},
                             "fit": {**fit, "load_at_start": [1.0]}}},
        "tfmot": {"configs": {"baseline": _fit_row(0.0, 0.0), "prune_low_magnitude": _fit_row(0.2, 0.2)},
                  "versions": {"tf_keras": "2", "tensorflow_model_optimization": "0.8"},
                  "spec": {"frequency": 100}, "sparsity_after": 0.8},
    }


def test_verdicts_and_tables_follow_the_numbers():
    results = _results()
    verdicts = report.targets(results)["jax"]
    assert verdicts["application"]["met_count"] == 1 and verdicts["application"]["met"] is False
    assert verdicts["application"]["worst"]["preset"] == "SET"
    assert verdicts["application"]["worst"]["over_budget"] == pytest.approx(5.0)
    assert verdicts["first"]["met"] is False and verdicts["first"]["worst"]["s"] == 3.0
    # Wall clock says 1.05x, CPU time 1.12x: on opposite sides of 1.10, so no verdict is claimed.
    assert verdicts["fit"]["MagnitudePruning"]["met"] is None
    assert verdicts["fit"]["Stroke"]["met"] is True
    assert verdicts["fit"]["tfmot"]["met"] is True
    results["targets"] = report.targets(results)
    text = report.markdown(results)
    assert "**50.0 ms (50.0x) no**" in text and "5.00 ms (5.0x) yes" in text
    assert "**3.00 s**" in text and "1.050x" in text
    assert "| 0.30 ms; - |" in text  # I/O alone: measured for the kernels, not for kernels and biases


def test_quick_run_writes_merged_results(tmp_path):
    """`python -m benchmarks --quick` on this backend, two models, two presets, without tfmot."""
    backend = keras.backend.backend()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "benchmarks", "--quick", "--backends", backend, "--models", "dense4,conv",
               "--presets", "Stroke,MagnitudePruning", "--skip-tfmot", "--out", str(tmp_path), "--stem", "smoke"]
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert list(results["backends"]) == [backend]
    result = results["backends"][backend]
    assert result["backend"]["keras_backend"] == backend
    assert result["backend"]["jax_enable_x64"] is None  # unset for the worker
    assert set(result["apply"]["models"]) == {"dense4", "conv"}
    for row in result["apply"]["models"].values():
        assert set(row["presets"]) == {"Stroke", "MagnitudePruning"}
    assert set(result["fit"]["configs"]) == {"baseline", "MagnitudePruning", "Stroke"}
    assert results["targets"][backend]["application"]["measured"] == 4
    markdown = (tmp_path / "smoke.md").read_text()
    assert f"## One application, {backend}" in markdown and "## Fit time" in markdown
