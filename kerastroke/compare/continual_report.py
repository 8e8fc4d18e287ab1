"""Summaries of a `ContinualComparison`: the stdout table, results.json and report.md.

As in the stationary report, spread is the sample standard deviation over
seeds (ddof=1). A technique *keeps plasticity beyond the seed-to-seed spread*
when its mean last-task accuracy exceeds the baseline's by more than both
spreads (the larger of the two standard deviations, and at least one scored
sample's worth of accuracy). The baseline *lost plasticity* when its
last-task mean is below its first-task mean by more than both of those
spreads. Rules of thumb for a handful of seeds, not significance tests; the
report says so.
"""

import dataclasses

import keras
import numpy as np

import kerastroke
from kerastroke.compare import report
from kerastroke.compare.options import BASELINE, RANDOM_LABELS

_number = report.json_number


def summarise(comparison):
    """Per technique: first- and last-task accuracy (mean, std), dormant fractions, seconds."""
    summary = {}
    for technique in comparison.techniques:
        runs = comparison.runs_of(technique)
        summary[technique] = {
            "first": report.mean_std([run.accuracy[0] for run in runs]),
            "last": report.mean_std([run.accuracy[-1] for run in runs]),
            "dormant_first": float(np.mean([run.dormant[0] for run in runs])),
            "dormant_last": float(np.mean([run.dormant[-1] for run in runs])),
            "seconds": float(np.mean([run.seconds for run in runs])),
        }
    return summary


def resolution(comparison):
    """The accuracy one scored sample is worth: 1 / samples each task is scored on."""
    settings, data = comparison.settings, comparison.dataset
    if comparison.task_kind == RANDOM_LABELS:
        return 1.0 / min(settings.samples, data["train_samples"])
    return 1.0 / data["val_samples"]


def _spread(stds, floor):
    if any(std is None for std in stds):
        return None
    return max(max(stds), floor)


def baseline_change(summary, floor=0.0):
    """The baseline's last-task minus first-task accuracy, against its spread.

    Returns:
        A dict with first, last, difference, spread (None with one seed) and
        lost (True when the last task is lower by more than the spread; None
        with one seed).
    """
    (first, first_std), (last, last_std) = summary[BASELINE]["first"], summary[BASELINE]["last"]
    spread = _spread([first_std, last_std], floor)
    difference = last - first
    return {
        "first": first,
        "last": last,
        "difference": difference,
        "spread": spread,
        "lost": None if spread is None else bool(-difference > spread),
    }


def verdicts(summary, floor=0.0):
    """Each technique's last-task accuracy against the baseline's, and against the spread.

    Args:
        summary: From `summarise`.
        floor: The least spread: one scored sample's accuracy (`resolution`).

    Returns:
        A list of dicts with technique, first (its first-task mean),
        baseline_first, baseline (the baseline's last-task mean), value (the
        technique's), difference, spread and outcome: "keeps" (higher by more than the spread), "worse" (lower
        by more than the spread), "within" (neither), or None with one seed.
    """
    base_mean, base_std = summary[BASELINE]["last"]
    found = []
    for technique, figures in summary.items():
        if technique == BASELINE:
            continue
        mean, std = figures["last"]
        difference = mean - base_mean
        spread = _spread([std, base_std], floor)
        if spread is None:
            outcome = None
        elif difference > spread:
            outcome = "keeps"
        elif -difference > spread:
            outcome = "worse"
        else:
            outcome = "within"
        found.append(
            {
                "technique": technique,
                "first": figures["first"][0],
                "baseline_first": summary[BASELINE]["first"][0],
                "baseline": base_mean,
                "value": mean,
                "difference": difference,
                "spread": spread,
                "outcome": outcome,
            }
        )
    return found


def table_rows(summary):
    """Header and rows of the results table, as strings."""
    header = [
        "technique",
        "first-task accuracy",
        "last-task accuracy",
        "last vs. baseline",
        "dormant units (first -> last task)",
        "seconds",
    ]
    base_last = summary[BASELINE]["last"][0]
    rows = []
    for technique, figures in summary.items():
        difference = figures["last"][0] - base_last
        rows.append(
            [
                technique,
                report.mean_std_text(*figures["first"]),
                report.mean_std_text(*figures["last"]),
                "" if technique == BASELINE else f"{difference:+.4f}",
                f"{figures['dormant_first']:.1%} -> {figures['dormant_last']:.1%}",
                f"{figures['seconds']:.1f}",
            ]
        )
    return header, rows


def text_table(summary):
    """The table for a terminal."""
    return report.aligned(*table_rows(summary))


def in_short(found, change):
    """Plain words: did the baseline lose plasticity, and which techniques keep it.

    Returns "" with a single seed (there is no spread to judge by).
    """
    if change["lost"] is None:
        return ""
    groups = {"keeps": [], "worse": [], "within": []}
    for verdict in found:
        groups[verdict["outcome"]].append(verdict["technique"])
    if change["lost"]:
        said = (
            f"In short: the baseline lost plasticity (last-task accuracy {change['last']:.4f} "
            f"vs. {change['first']:.4f} on the first task). "
        )
    else:
        said = (
            "In short: the baseline did not lose plasticity beyond the seed-to-seed spread "
            f"(last-task accuracy {change['last']:.4f} vs. {change['first']:.4f} on the first "
            "task), so this run cannot show a technique keeping it. "
        )
    if not found:
        return said + "No technique was compared."
    keeps = ", ".join(groups["keeps"]) or "none"
    does_not = [f"{t} (within the spread of the baseline)" for t in groups["within"]]
    does_not += [f"{t} (below the baseline)" for t in groups["worse"]]
    return (
        f"{said}Keeps plasticity beyond the seed-to-seed spread: {keeps}. "
        f"Does not: {', '.join(does_not) or 'none'}."
    )


def _sentence(verdict):
    # The first tasks are given too: a technique that scores higher on every task, the first
    # included, may owe its last-task lead to that rather than to kept plasticity.
    said = (
        f"**{verdict['technique']}**: last-task accuracy {verdict['value']:.4f} (first task "
        f"{verdict['first']:.4f}) vs. the baseline's {verdict['baseline']:.4f} (first task "
        f"{verdict['baseline_first']:.4f}); difference {verdict['difference']:+.4f}"
    )
    if verdict["outcome"] is None:
        return f"{said}: one seed only, so there is no spread to compare it with."
    spread = f"the seed-to-seed spread ({verdict['spread']:.4f})"
    if verdict["outcome"] == "keeps":
        return f"{said}: **keeps plasticity** beyond {spread}."
    if verdict["outcome"] == "worse":
        return f"{said}: does **not** keep plasticity; lower than the baseline by more than {spread}."
    return f"{said}: does **not** keep plasticity beyond {spread}."


def _baseline_sentence(change):
    said = (
        f"The baseline's last-task accuracy is {change['last']:.4f}, its first-task accuracy "
        f"{change['first']:.4f} (difference {change['difference']:+.4f})"
    )
    if change["lost"] is None:
        return f"{said}; one seed only, so there is no spread to judge it by."
    spread = f"the seed-to-seed spread ({change['spread']:.4f})"
    if change["lost"]:
        return f"{said}: it **lost plasticity**, by more than {spread}."
    return (
        f"{said}: it did **not** lose plasticity beyond {spread}, so this run cannot show a "
        "technique keeping it."
    )


def _tasks_sentence(comparison):
    settings, data = comparison.settings, comparison.dataset
    if comparison.task_kind == RANDOM_LABELS:
        samples = min(settings.samples, data["train_samples"])
        return (
            f"Tasks: **random labels**. {settings.tasks} tasks on one fixed subset of {samples} "
            f"training images; each task gives every image a new uniformly random label "
            f"(of {data['classes']}). A task is scored by the accuracy on those images with its "
            "labels: memorising them is the task."
        )
    samples = min(settings.samples, data["train_samples"])
    return (
        f"Tasks: **permuted inputs**. {settings.tasks} tasks on one fixed subset of {samples} "
        f"training samples with their labels, each task with the {data['features']} features "
        "in a new fixed random order; a task is scored by the accuracy on the "
        f"{data['val_samples']} held-out samples in the same order."
    )


def markdown_report(comparison, plots):
    """report.md: the scenario, the table, what the baseline and each technique did, the plots.

    Args:
        comparison: A `ContinualComparison`.
        plots: `{title: file name}` of the PNGs written next to the report.
    """
    summary = summarise(comparison)
    floor = resolution(comparison)
    data, settings = comparison.dataset, comparison.settings
    seeds = ", ".join(str(s) for s in comparison.seeds)
    change = baseline_change(summary, floor)
    found = verdicts(summary, floor)
    lines = [
        "# kerastroke compare: continual learning",
        "",
        f"Dataset: **{data['name']}** ({data['source']}).",
        "",
        _tasks_sentence(comparison),
        "",
        f"Model: {data['features']} -> Dense({settings.hidden_units}, relu) -> "
        f"Dense({data['classes']}) logits; Adam (learning rate {settings.learning_rate:g}), "
        f"batch size {settings.batch_size}, {settings.epochs} epochs per task; seeds {seeds}. "
        "One model, one optimizer and one technique callback train through every task in "
        "turn, never reset: that is where plasticity can be lost. Within a seed every "
        "technique starts from the same initial weights, sees the same tasks and the same "
        "batches.",
        "",
        "Accuracy is measured at the end of each task, after the technique's last change to "
        "the weights. Figures are mean ± sample standard deviation over seeds. A hidden unit "
        "is dormant when its mean |activation| over a probe batch (up to "
        f"{settings.probe_samples} of the task's training inputs), divided by the mean over "
        f"its layer, is <= {settings.dormant_threshold:g} (ReDo's definition); the table gives "
        "the mean fraction over seeds at the end of the first and the last task. Seconds is "
        "the mean wall time of one run through all tasks.",
        "",
        report.markdown(*table_rows(summary)),
        "",
        report.backends_sentence()
        + " Over a training this long, though, the backends' different float rounding grows: "
        "a seed's runs agree between backends on the first tasks, then drift apart (measured "
        "on the default run: TensorFlow and PyTorch agree on seed 0's first two tasks). "
        "Compare backends by the figures over seeds, not run by run.",
        "",
        "## Who keeps plasticity",
        "",
        "A technique keeps plasticity beyond the seed-to-seed spread when its mean last-task "
        "accuracy exceeds the baseline's by more than the larger of the two standard "
        f"deviations (and at least one scored sample: {floor:.4f}). The baseline lost "
        "plasticity when its last-task mean is below its first-task mean by more than the "
        "same kind of spread. These are rules of thumb for a few seeds, not significance "
        "tests: more seeds give a firmer answer.",
        "",
        f"- {_baseline_sentence(change)}",
    ]
    lines += [f"- {_sentence(v)}" for v in found] or ["- No technique was compared."]
    short = in_short(found, change)
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


def results(comparison):
    """results.json's content: every run's per-task figures and the summaries."""
    summary = summarise(comparison)
    floor = resolution(comparison)
    techniques = {}
    for technique in comparison.techniques:
        runs = comparison.runs_of(technique)
        figures = summary[technique]
        techniques[technique] = {
            "settings": runs[0].settings if runs else None,
            "summary": {
                "first_task_accuracy_mean": _number(figures["first"][0]),
                "first_task_accuracy_std": _number(figures["first"][1]),
                "last_task_accuracy_mean": _number(figures["last"][0]),
                "last_task_accuracy_std": _number(figures["last"][1]),
                "dormant_first_task_mean": _number(figures["dormant_first"]),
                "dormant_last_task_mean": _number(figures["dormant_last"]),
                "seconds_mean": _number(figures["seconds"]),
            },
            "runs": [
                {
                    "seed": run.seed,
                    "accuracy": [_number(v) for v in run.accuracy],
                    "loss": [_number(v) for v in run.loss],
                    "dormant": [_number(v) for v in run.dormant],
                    "changed_fraction": None
                    if run.changed_fraction is None
                    else [_number(v) for v in run.changed_fraction],
                    "seconds": _number(run.seconds),
                }
                for run in runs
            ],
        }
    change = baseline_change(summary, floor)
    return {
        "kerastroke_version": kerastroke.__version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "scenario": comparison.scenario,
        "tasks": comparison.task_kind,
        "dataset": comparison.dataset,
        "training": dataclasses.asdict(comparison.settings),
        "seeds": comparison.seeds,
        "techniques": techniques,
        "baseline_change": {k: (_number(v) if k != "lost" else v) for k, v in change.items()},
        "verdicts": [
            {k: (v if k in ("technique", "outcome") else _number(v)) for k, v in verdict.items()}
            for verdict in verdicts(summary, floor)
        ],
    }
