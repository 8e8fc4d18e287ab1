"""PNG plots of a `Comparison` or a `ContinualComparison`, drawn with matplotlib's Agg canvas.

Figures are built as `matplotlib.figure.Figure` objects on an explicit Agg
canvas, never through pyplot: no display is needed and no global figure state
is left behind in the caller's process.
"""

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kerastroke.compare.options import BASELINE

ACCURACY_PNG = "val_accuracy.png"
WEIGHTS_PNG = "weight_distribution.png"


def _figure(width, height):
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _colours(techniques):
    palette = colormaps["tab10"]
    others = [t for t in techniques if t != BASELINE]
    colours = {technique: palette(index % 10) for index, technique in enumerate(others)}
    colours[BASELINE] = "0.15"
    return colours


def accuracy_plot(comparison, path):
    """Validation accuracy per epoch: the mean over seeds, with a ±1 std band."""
    figure = _figure(7.0, 4.5)
    axes = figure.add_subplot()
    colours = _colours(comparison.techniques)
    epochs = np.arange(1, comparison.settings.epochs + 1)
    for technique in comparison.techniques:
        curves = np.array([run.val_accuracy for run in comparison.runs_of(technique)])
        mean = curves.mean(axis=0)
        # The baseline is dashed and on top: a technique that tracks it must not hide it.
        baseline = technique == BASELINE
        axes.plot(
            epochs, mean, color=colours[technique], label=technique, linewidth=1.8,
            linestyle="--" if baseline else "-", zorder=3 if baseline else 2,
        )
        if len(curves) > 1:
            std = curves.std(axis=0, ddof=1)
            axes.fill_between(
                epochs, mean - std, mean + std, color=colours[technique], alpha=0.2, linewidth=0
            )
    seeds = len(comparison.seeds)
    band = f"band: ±1 std over {seeds} seeds" if seeds > 1 else "one seed: no band"
    axes.set_title(f"Validation accuracy on {comparison.dataset['name']} (mean; {band})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation accuracy (after the technique's step)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def weight_plot(comparison, path):
    """Histogram of every kernel entry after training, one panel per technique.

    Entries are pooled over seeds. The y axis is logarithmic so that a spike
    at zero (Pruning) and the bulk of the distribution show together; the
    panel title gives the fraction of entries that are exactly zero.
    """
    techniques = comparison.techniques
    values = {t: np.concatenate([r.kernel_values for r in comparison.runs_of(t)]) for t in techniques}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    # The 99.9th percentile keeps a few outliers from squeezing the bulk into a couple of bins.
    reach = float(np.percentile(np.abs(finite), 99.9)) if finite.size else 1.0
    reach = reach if reach > 0 else 1.0
    bins = np.linspace(-reach, reach, 161)
    colours = _colours(techniques)
    figure = _figure(7.0, 1.7 * len(techniques) + 0.8)
    axes_list = figure.subplots(len(techniques), 1, sharex=True, squeeze=False)[:, 0]
    for axes, technique in zip(axes_list, techniques):
        entries = values[technique]
        shown = np.clip(entries[np.isfinite(entries)], -reach, reach)
        axes.hist(shown, bins=bins, color=colours[technique], log=True)
        zero = float(np.mean(entries == 0.0))
        title = f"{technique}: {zero:.1%} of kernel entries exactly 0"
        acted_on = _selected_range(comparison.runs_of(technique))
        if acted_on is not None:
            axes.axvspan(*acted_on, color="0.5", alpha=0.15, linewidth=0, zorder=0)
            title += f"; shaded: the range it selects, [{acted_on[0]:g}, {acted_on[1]:g}]"
        axes.set_title(title, fontsize=9, loc="left")
        axes.set_ylabel("entries")
        axes.grid(alpha=0.3)
    axes_list[-1].set_xlabel(
        "kernel value after training (pooled over seeds; outer bins hold the clipped tails)"
    )
    figure.suptitle(f"Final weight distribution on {comparison.dataset['name']}")
    figure.tight_layout()
    figure.savefig(path)


def _selected_range(runs):
    # Pruning and NeuroPlast select by value; their settings say which range.
    settings = runs[0].settings if runs else None
    if not settings or settings.get("min_value") is None or settings.get("max_value") is None:
        return None
    return float(settings["min_value"]), float(settings["max_value"])


def write_plots(comparison, directory):
    """Writes both plots into `directory`; returns `{title: file name}`."""
    accuracy_plot(comparison, os.path.join(directory, ACCURACY_PNG))
    weight_plot(comparison, os.path.join(directory, WEIGHTS_PNG))
    return {
        "Validation accuracy per epoch": ACCURACY_PNG,
        "Final weight distribution": WEIGHTS_PNG,
    }


TASK_ACCURACY_PNG = "task_accuracy.png"
DORMANT_PNG = "dormant_units.png"


def _per_task_plot(comparison, path, field, ylabel, title):
    figure = _figure(7.0, 4.5)
    axes = figure.add_subplot()
    colours = _colours(comparison.techniques)
    tasks = np.arange(1, comparison.settings.tasks + 1)
    for technique in comparison.techniques:
        curves = np.array([getattr(run, field) for run in comparison.runs_of(technique)])
        mean = curves.mean(axis=0)
        baseline = technique == BASELINE
        axes.plot(
            tasks, mean, color=colours[technique], label=technique, linewidth=1.8, marker="o",
            markersize=3, linestyle="--" if baseline else "-", zorder=3 if baseline else 2,
        )
        if len(curves) > 1:
            std = curves.std(axis=0, ddof=1)
            axes.fill_between(
                tasks, mean - std, mean + std, color=colours[technique], alpha=0.2, linewidth=0
            )
    seeds = len(comparison.seeds)
    band = f"band: ±1 std over {seeds} seeds" if seeds > 1 else "one seed: no band"
    axes.set_title(f"{title} ({comparison.task_kind} tasks on {comparison.dataset['name']}; mean; {band})",
                   fontsize=10)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("task")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)


def task_accuracy_plot(comparison, path):
    """Accuracy at the end of each task: the mean over seeds, with a ±1 std band."""
    _per_task_plot(
        comparison, path, "accuracy", "accuracy at the task's end", "Accuracy per task"
    )


def dormant_plot(comparison, path):
    """Fraction of dormant hidden units at the end of each task, mean over seeds ±1 std."""
    tau = comparison.settings.dormant_threshold
    _per_task_plot(
        comparison, path, "dormant",
        f"fraction of hidden units dormant (score <= {tau:g})", "Dormant units per task",
    )


def write_continual_plots(comparison, directory):
    """Writes the continual scenario's plots into `directory`; returns `{title: file name}`."""
    task_accuracy_plot(comparison, os.path.join(directory, TASK_ACCURACY_PNG))
    dormant_plot(comparison, os.path.join(directory, DORMANT_PNG))
    return {"Accuracy per task": TASK_ACCURACY_PNG, "Dormant units per task": DORMANT_PNG}
