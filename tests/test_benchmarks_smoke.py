"""The benchmark harness computes its ratios from the numbers it measured (no timing asserted)."""

import pytest

from benchmarks import floor, report
from benchmarks.models import PRESETS
from benchmarks.timing import Timing, measure, ratio


def test_measure_counts_calls_and_keeps_warmup_apart():
    calls = []
    timing = measure(calls.append, repeats=4, prepare=lambda: calls.append("prepare"))
    assert calls == ["prepare", 0, "prepare", 1, "prepare", 2, "prepare", 3, "prepare", 4]
    assert len(timing.samples) == 4 and len(timing.warmup) == 1
    assert timing.best == min(timing.samples)


def test_ratio_handles_missing_numbers():
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(None, 3.0) is None and ratio(1.0, 0.0) is None


def test_floor_ratios_are_measured_times_over_measured_memcpy():
    row = floor.measure_side(16, repeats=2, budget_s=None)
    for name in PRESETS:
        entry = row["presets"][name]
        assert entry["repeats"] == 2
        assert entry["ratio_to_memcpy"] == pytest.approx(entry["min_s"] / row["memcpy"]["min_s"])
        assert entry["ns_per_weight"] == pytest.approx(entry["min_s"] / row["weights"] * 1e9)


def test_targets_and_growth_follow_the_numbers():
    def row(side, scale):
        presets = {name: {"min_s": scale * side * side, "ratio_to_memcpy": 2.0, "ns_per_weight": 1.0}
                   for name in PRESETS}
        return {"side": side, "weights": side * side, "memcpy": {"min_s": 1e-9 * side * side}, "presets": presets}

    rows = [row(4, 1e-9), row(8, 1e-9)]
    growth = floor.growth(rows)
    assert growth["Stroke"]["exponent"] == pytest.approx(1.0)
    assert growth["memcpy"]["exponent_largest"] == pytest.approx(1.0)
    verdicts = report.targets({"floor": {"rows": rows, "growth": growth},
                               "fit": {"configs": {"baseline": {"callback_share": 0.0},
                                                           "Stroke": {"callback_share": 0.05}}}})
    assert verdicts["b"]["met"] is True and verdicts["b"]["value"] == 2.0
    assert verdicts["c"]["met"] is True
    assert verdicts["d"]["met"] is False and verdicts["d"]["worst"] == "Stroke"
    assert Timing((3.0, 1.0, 2.0)).median == 2.0
