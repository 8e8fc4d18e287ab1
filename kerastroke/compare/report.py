"""Summaries of a `Comparison`: the stdout table, results.json and report.md.

Spread means the sample standard deviation over seeds (ddof=1). A technique's
difference from the baseline is called *larger than the seed-to-seed spread*
when the difference of the means exceeds the larger of the two standard
deviations (for accuracy, at least one validation sample's worth). That is a
rule of thumb for a handful of seeds, not a test of significance, and the
report says so.
"""

import dataclasses
import math

import keras
import numpy as np

import kerastroke
from kerastroke.compare.options import BASELINE

# Compared with the baseline, in this order, under these names.
METRICS = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}


def mean_std(values):
    """`(mean, std)` over seeds; std is None for a single value (there is no spread)."""
    values = np.asarray(values, dtype="float64")
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), std


def summarise(comparison):
    """Per technique: final validation accuracy and loss (mean, std), sparsity, seconds."""
    summary = {}
    for technique in comparison.techniques:
        runs = comparison.runs_of(technique)
        summary[technique] = {
            "val_accuracy": mean_std([run.val_accuracy[-1] for run in runs]),
            "val_loss": mean_std([run.val_loss[-1] for run in runs]),
            "sparsity": float(np.mean([run.sparsity for run in runs])),
            "seconds": float(np.mean([run.seconds for run in runs])),
        }
    return summary


def verdicts(summary, resolution=None):
    """Each technique's difference from the baseline, per metric, against the spread.

    Args:
        summary: From `summarise`.
        resolution: The accuracy of one validation sample (1 / samples). Accuracy
            moves in such steps, so the spread used for accuracy is never less:
            two seeds that happen to agree exactly must not make a one-sample
            difference look larger than the noise.

    Returns:
        A list of dicts with keys technique, metric, baseline, value,
        difference, spread (None with one seed) and larger (None with one seed).
    """
    base = summary[BASELINE]
    result = []
    for technique, figures in summary.items():
        if technique == BASELINE:
            continue
        for metric in METRICS:
            (base_mean, base_std), (mean, std) = base[metric], figures[metric]
            difference = mean - base_mean
            spread = None if std is None or base_std is None else max(std, base_std)
            if spread is not None and metric == "val_accuracy" and resolution:
                spread = max(spread, resolution)
            result.append(
                {
                    "technique": technique,
                    "metric": metric,
                    "baseline": base_mean,
                    "value": mean,
                    "difference": difference,
                    "spread": spread,
                    "larger": None if spread is None else bool(abs(difference) > spread),
                }
            )
    return result


def mean_std_text(mean, std):
    """`mean ± std` with four decimals; the mean alone when there is no spread."""
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def table_rows(summary):
    """Header and rows of the results table, as strings."""
    header = ["technique", "val accuracy", "val loss", "zero weights", "seconds"]
    rows = [
        [
            technique,
            mean_std_text(*figures["val_accuracy"]),
            mean_std_text(*figures["val_loss"]),
            f"{figures['sparsity']:.2%}",
            f"{figures['seconds']:.1f}",
        ]
        for technique, figures in summary.items()
    ]
    return header, rows


def text_table(summary):
    """The table for a terminal: aligned columns, numbers right-aligned."""
    return aligned(*table_rows(summary))


def aligned(header, rows):
    """`header` and `rows` (lists of strings) as aligned text: first column left, others right."""
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first] + rest)

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def markdown_table(summary):
    return markdown(*table_rows(summary))


def markdown(header, rows):
    """`header` and `rows` as a Markdown table, the columns after the first right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def resolution(comparison):
    """The accuracy one validation sample is worth: 1 / validation samples."""
    return 1.0 / comparison.dataset["val_samples"]


def _sentence(verdict):
    said = (
        f"**{verdict['technique']}**: {METRICS[verdict['metric']]} {verdict['value']:.4f} "
        f"vs. the baseline's {verdict['baseline']:.4f} (difference {verdict['difference']:+.4f})"
    )
    if verdict["larger"] is None:
        return f"{said}: one seed only, so there is no spread to compare it with."
    if verdict["larger"]:
        return f"{said} is **larger** than the seed-to-seed spread ({verdict['spread']:.4f})."
    return f"{said} is **not larger** than the seed-to-seed spread ({verdict['spread']:.4f})."


def markdown_report(comparison, plots):
    """report.md: settings, the table, the differences against the spread, the plots.

    Args:
        comparison: A `Comparison`.
        plots: `{title: file name}` of the PNGs written next to the report.
    """
    summary = summarise(comparison)
    data = comparison.dataset
    settings = comparison.settings
    seeds = ", ".join(str(s) for s in comparison.seeds)
    lines = [
        "# kerastroke compare",
        "",
        f"Dataset: **{data['name']}**, {data['train_samples']} training and "
        f"{data['val_samples']} validation samples, {data['features']} features, "
        f"{data['classes']} classes ({data['source']}).",
        "",
        f"Model: {data['features']} -> Dense({settings.hidden_units}, relu) -> "
        f"Dense({data['classes']}) logits; Adam (learning rate {settings.learning_rate:g}), "
        f"batch size {settings.batch_size}, {settings.epochs} epochs; seeds {seeds}. "
        "Within a seed every technique starts from the same initial weights and sees "
        "the same batches.",
        "",
        "Validation figures are measured at the end of the last epoch, after the "
        "technique's last change to the weights: they score the model you would keep. "
        "Figures are mean ± sample standard deviation over seeds; zero weights is the "
        "fraction of kernel entries exactly 0.0; seconds is the mean wall time of one run.",
        "",
        markdown_table(summary),
        "",
        backends_sentence(),
        "",
        "## Differences from the baseline",
        "",
        "A difference counts as larger than the seed-to-seed spread when the difference "
        "of the means exceeds the larger of the two standard deviations (for accuracy, "
        f"at least one validation sample: {resolution(comparison):.4f}). This is a rule "
        "of thumb for a few seeds, not a significance test: more seeds give a firmer answer.",
        "",
    ]
    found = verdicts(summary, resolution(comparison))
    lines += [f"- {_sentence(v)}" for v in found] or ["- No technique was compared."]
    short = in_short(found)
    if short:
        lines += ["", short]
    lines += ["", "## Technique settings", ""]
    for technique in comparison.techniques:
        runs = comparison.runs_of(technique)
        if technique != BASELINE and runs:
            params = ", ".join(f"{k}={v!r}" for k, v in runs[0].settings.items())
            lines.append(f"- {technique}: {params}")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{title}]({name})" for title, name in plots.items()]
    return "\n".join(lines) + "\n"


def backends_sentence():
    """Which backend ran, and why a seed gives the same numbers on every backend."""
    return (
        f"Backend: {keras.backend.backend()}. Initial weights and batch order come from NumPy, and "
        "every technique draws counter-based bits (the layer's initializer included), so a seed "
        "gives the same numbers on TensorFlow, JAX and PyTorch up to float rounding."
    )


def in_short(found):
    """One line: which techniques differ by more than the spread, in which metrics.

    Returns "" when nothing was compared or there was a single seed.
    """
    groups = {True: {}, False: {}}
    for verdict in found:
        if verdict["larger"] is not None:
            label = "accuracy" if verdict["metric"] == "val_accuracy" else "loss"
            groups[verdict["larger"]].setdefault(verdict["technique"], []).append(label)

    def listing(group):
        return ", ".join(f"{t} ({' and '.join(m)})" for t, m in group.items()) or "none"

    if not (groups[True] or groups[False]):
        return ""
    return (
        f"In short: larger than the seed-to-seed spread: {listing(groups[True])}. "
        f"Not larger: {listing(groups[False])}."
    )


def json_number(value):
    """A float for JSON: None for a missing, NaN or infinite value."""
    # JSON has no NaN or infinity; a diverged run is recorded as null, as is a missing spread.
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def results(comparison):
    """results.json's content: every run's per-epoch curves and final figures."""
    summary = summarise(comparison)
    techniques = {}
    for technique in comparison.techniques:
        runs = comparison.runs_of(technique)
        figures = summary[technique]
        techniques[technique] = {
            "settings": runs[0].settings if runs else None,
            "summary": {
                "val_accuracy_mean": json_number(figures["val_accuracy"][0]),
                "val_accuracy_std": json_number(figures["val_accuracy"][1]),
                "val_loss_mean": json_number(figures["val_loss"][0]),
                "val_loss_std": json_number(figures["val_loss"][1]),
                "sparsity_mean": json_number(figures["sparsity"]),
                "seconds_mean": json_number(figures["seconds"]),
            },
            "runs": [
                {
                    "seed": run.seed,
                    "val_accuracy": [json_number(v) for v in run.val_accuracy],
                    "val_loss": [json_number(v) for v in run.val_loss],
                    "changed_fraction": None
                    if run.changed_fraction is None
                    else [json_number(v) for v in run.changed_fraction],
                    "final_val_accuracy": json_number(run.val_accuracy[-1]),
                    "final_val_loss": json_number(run.val_loss[-1]),
                    "sparsity": json_number(run.sparsity),
                    "seconds": json_number(run.seconds),
                }
                for run in runs
            ],
        }
    return {
        "kerastroke_version": kerastroke.__version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "dataset": comparison.dataset,
        "training": dataclasses.asdict(comparison.settings),
        "seeds": comparison.seeds,
        "techniques": techniques,
        "differences": [
            {k: (json_number(v) if k in ("baseline", "value", "difference", "spread") else v)
             for k, v in verdict.items()}
            for verdict in verdicts(summary, resolution(comparison))
        ],
    }
