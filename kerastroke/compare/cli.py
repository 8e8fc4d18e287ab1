"""The `kerastroke` command line; `kerastroke compare` is its one command so far.

Exit status: 0 on success; 2 for bad input (a usage error, or a dataset file
that is missing, malformed or mismatched), reported as one line on stderr
with no traceback, before any training starts and before anything is written.

Parsing, `--help` and the checks of the input import neither Keras nor a
backend: those load only once a command runs, after the environment that
quiets TensorFlow's start-up logging is set.
"""

import argparse
import json
import os
import sys

from kerastroke.compare import data, logs, options
from kerastroke.compare.progress import Progress

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
# The continual scenario trains every technique through all its tasks: three seeds keep the
# default run within minutes.
DEFAULT_CONTINUAL_SEEDS = (0, 1, 2)
DEFAULT_OUT = "kerastroke-compare"


def _techniques_help(table):
    width = max(map(len, table))
    lines = []
    for name, technique in table.items():
        lines.append(f"  {name:<{width}}  {technique.call}")
        lines.append(f"  {'':<{width}}  {technique.about}")
    return "\n".join(lines)


_EPILOG = f"""\
techniques (NAME, the preset as built with the run's seed, what it does):
{_techniques_help(options.TECHNIQUES)}

techniques of --scenario continual (all run by default):
{_techniques_help(options.CONTINUAL_TECHNIQUES)}

examples:
  kerastroke compare
  kerastroke compare --techniques all
  kerastroke compare --techniques pruning set --epochs 30 --seeds 0 1 2 3 4
  kerastroke compare --dataset wine --out wine-results
  kerastroke compare --data mine.npz   # arrays x_train, y_train, x_val, y_val
  kerastroke compare --scenario continual
  kerastroke compare --scenario continual --tasks permuted --task-count 20

The table goes to stdout, progress to stderr; DIR receives results.json,
report.md, val_accuracy.png and weight_distribution.png (continual:
task_accuracy.png and dormant_units.png). The backend is Keras's: set
KERAS_BACKEND to tensorflow, jax or torch.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse's own usage block would make the error more than one line.
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seeds(text):
    # "0 1 2" and "0,1,2" both work: each token may hold a comma-separated list.
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected seeds (integers >= 0), got {text!r}")
    seeds = []
    for part in parts:
        try:
            seed = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are integers >= 0, got {part!r}") from None
        if not 0 <= seed < 2**31 - 1:
            raise argparse.ArgumentTypeError(f"seeds are integers in [0, 2**31 - 1), got {part!r}")
        seeds.append(seed)
    return seeds


def _techniques(text):
    # Which names exist depends on --scenario: `chosen_techniques` checks them against its table.
    if not any(part.strip() for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"expected technique names, got {text!r}")
    return text


def chosen_techniques(args):
    """The techniques `args` asks for, checked against the table of `args.scenario`.

    Raises:
        ValueError: A name that the scenario does not offer, in one line.

    Example:
    >>> chosen_techniques(build_parser().parse_args(["compare", "--techniques", "stroke,set"]))
    ['stroke', 'set']
    """
    table = options.SCENARIO_TECHNIQUES[args.scenario]
    if not args.techniques:
        return list(options.SCENARIO_DEFAULTS[args.scenario])
    names = []
    for text in args.techniques:
        try:
            names += options.technique_names(text, table)
        except ValueError as error:
            if args.scenario == options.STATIONARY:
                raise
            raise ValueError(f"{error} (for --scenario {args.scenario})") from None
    return list(dict.fromkeys(names))


def build_parser():
    """The argument parser of the `kerastroke` command; builds without importing Keras."""
    parser = _Parser(prog="kerastroke", description="kerastroke: training-time plasticity for Keras 3.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    compare = commands.add_parser(
        "compare",
        help="train a small model without and with plasticity presets, over seeds",
        description=(
            "Trains the same small model (one hidden layer of 64 ReLU units), from the same "
            "initial weights and batch order per seed, once without any callback (the "
            "baseline) and once with each technique, for every seed. Reports final validation "
            "accuracy and loss (mean ± std over seeds), the fraction of exactly-zero weights "
            "and the time per run, and says which differences from the baseline are larger "
            "than the seed-to-seed spread. With --scenario continual the model instead "
            "trains on, never reset, through a sequence of tasks (new random labels, or a "
            "new input permutation, at each task): the report gives the first and last "
            "task's accuracy, the fraction of dormant units per task, and which techniques "
            "keep the ability to learn (plasticity) beyond the seed-to-seed spread."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--scenario", choices=options.SCENARIOS, default=options.STATIONARY,
        help="stationary: one task, trained once; continual: a sequence of tasks, trained on "
        "without reset (default: %(default)s)",
    )
    compare.add_argument(
        "--techniques", nargs="+", type=_techniques, metavar="NAME",
        help="techniques to compare with the baseline, or 'all' "
        f"(default: {' '.join(options.DEFAULT_TECHNIQUES)}; all: {' '.join(options.TECHNIQUES)}; "
        f"continual: {' '.join(options.CONTINUAL_TECHNIQUES)}, all by default)",
    )
    compare.add_argument(
        "--epochs", type=_positive_int,
        help=f"epochs per run (default: {options.Settings.epochs}); continual: epochs per "
        f"task (default: {options.ContinualSettings.epochs})",
    )
    compare.add_argument(
        "--seeds", nargs="+", type=_seeds, metavar="SEED",
        help="seeds, one run per technique each (default: 0 1 2 3 4; continual: 0 1 2); "
        "same seeds, same numbers",
    )
    compare.add_argument(
        "--tasks", choices=options.TASK_KINDS,
        help="continual only: random-labels (one fixed set of images, new random labels at "
        "each task; scored on those images) or permuted (a new input permutation at each "
        f"task; scored on held-out samples) (default: {options.RANDOM_LABELS})",
    )
    compare.add_argument(
        "--task-count", type=_positive_int, metavar="N",
        help=f"continual only: tasks in the sequence (default: {options.ContinualSettings.tasks})",
    )
    compare.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR",
        help="directory for results.json, report.md and the plots (default: %(default)s)",
    )
    source = compare.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset", choices=data.BUNDLED, default="digits",
        help="a dataset bundled with scikit-learn, never downloaded (default: %(default)s)",
    )
    source.add_argument(
        "--data", metavar="FILE.npz",
        help="your own arrays instead: an .npz with x_train, y_train, x_val, y_val "
        "(x 2-D samples x features, y 1-D integer labels; used as given, not scaled)",
    )
    compare.set_defaults(run=run_compare)
    return parser


def _fail(message):
    print(f"kerastroke compare: error: {message}", file=sys.stderr)
    return 2


def _check_out(path):
    """Checks that the output directory can be made, without making it; an error or None."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"--out {path} exists and is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"--out directory {path} is not writable"
        return None
    # The nearest existing ancestor must let us create the missing levels.
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"cannot create --out directory {path}: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create --out directory {path}: {parent} is not writable"
    return None


def _writers(comparison):
    """The scenario's `(results, write_plots, plot file names, markdown_report)`."""
    from kerastroke.compare import continual_report, plots, report

    if getattr(comparison, "scenario", options.STATIONARY) == options.CONTINUAL:
        names = (plots.TASK_ACCURACY_PNG, plots.DORMANT_PNG)
        return continual_report.results, plots.write_continual_plots, names, continual_report.markdown_report
    names = (plots.ACCURACY_PNG, plots.WEIGHTS_PNG)
    return report.results, plots.write_plots, names, report.markdown_report


def _write_outputs(comparison, out):
    """Writes results.json, the plots and report.md into `out`; returns the plots' names.

    If any write fails, the files written so far (and the folders this call
    created) are removed before the error propagates: a failed run leaves no
    half-written folder.
    """
    results_of, write_plots, plot_names, markdown_report = _writers(comparison)
    created = []  # the folders makedirs will create, deepest first
    level = os.path.abspath(out)
    while not os.path.exists(level):
        created.append(level)
        level = os.path.dirname(level)
    written = []
    try:
        os.makedirs(out, exist_ok=True)
        results = os.path.join(out, "results.json")
        written.append(results)
        with open(results, "w", encoding="utf-8") as file:
            json.dump(results_of(comparison), file, indent=2, allow_nan=False)
            file.write("\n")
        written += [os.path.join(out, name) for name in plot_names]
        drawn = write_plots(comparison, out)
        written.append(os.path.join(out, "report.md"))
        with open(written[-1], "w", encoding="utf-8") as file:
            file.write(markdown_report(comparison, drawn))
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        for folder in created:
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    return drawn


def _deterministic_ops():
    # CPU kernels are already deterministic here; on a GPU some TensorFlow kernels
    # are not unless asked. Process-wide, which is why only the command does it.
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def run_compare(args):
    """Runs `kerastroke compare` for parsed `args`; returns the exit status."""
    continual = args.scenario == options.CONTINUAL
    if not continual:
        for flag, value in (("--tasks", args.tasks), ("--task-count", args.task_count)):
            if value is not None:
                return _fail(f"{flag} applies to --scenario continual only")
    default_seeds = DEFAULT_CONTINUAL_SEEDS if continual else DEFAULT_SEEDS
    seeds = [seed for group in args.seeds for seed in group] if args.seeds else list(default_seeds)
    if len(set(seeds)) != len(seeds):
        return _fail(f"--seeds lists a seed twice: {' '.join(map(str, seeds))}")
    try:
        techniques = chosen_techniques(args)
    except ValueError as error:
        return _fail(str(error))
    try:
        dataset = data.load_npz(args.data) if args.data else data.load_bundled(args.dataset)
    except data.DataError as error:
        return _fail(str(error))
    problem = _check_out(args.out)
    if problem:
        return _fail(problem)

    progress = Progress()  # before the filter, which puts a pipe behind stderr
    with logs.filtered_stderr():
        # Everything the user gave is checked: only now load the framework.
        logs.quiet_python_loggers(logs.min_level())
        _deterministic_ops()
        comparison = (_run_continual if continual else _run_stationary)(
            args, dataset, techniques, seeds, progress
        )
        drawn = _write_outputs(comparison, args.out)

    table, short = _stdout(comparison)
    print(table)
    if short:
        print("\n" + short)
    sys.stdout.flush()
    pngs = ", ".join(os.path.join(args.out, name) for name in drawn.values())
    report_path, results_path = (os.path.join(args.out, n) for n in ("report.md", "results.json"))
    print(f"report: {report_path}\nresults: {results_path}\nplots: {pngs}", file=sys.stderr)
    return 0


def _run_stationary(args, dataset, techniques, seeds, progress):
    from kerastroke.compare import experiment

    settings = experiment.Settings(**({} if args.epochs is None else {"epochs": args.epochs}))
    return experiment.run_comparison(dataset, techniques, seeds, settings, progress=progress)


def _run_continual(args, dataset, techniques, seeds, progress):
    from kerastroke.compare import continual

    given = {"epochs": args.epochs, "tasks": args.task_count}
    settings = options.ContinualSettings(**{k: v for k, v in given.items() if v is not None})
    kind = args.tasks or options.RANDOM_LABELS
    return continual.run_continual(dataset, techniques, seeds, settings, kind, progress=progress)


def _stdout(comparison):
    """The table and the in-short line (possibly "") that stdout shows."""
    if getattr(comparison, "scenario", options.STATIONARY) == options.CONTINUAL:
        from kerastroke.compare import continual_report as report

        summary = report.summarise(comparison)
        floor = report.resolution(comparison)
        found = report.verdicts(summary, floor)
        return report.text_table(summary), report.in_short(found, report.baseline_change(summary, floor))
    from kerastroke.compare import report

    summary = report.summarise(comparison)
    return report.text_table(summary), report.in_short(report.verdicts(summary, report.resolution(comparison)))


def main(argv=None):
    """Entry point of the `kerastroke` console script and `python -m kerastroke`.

    Args:
        argv: Arguments without the program name; None reads `sys.argv`.

    Returns:
        The exit status (usage errors exit with status 2 through argparse).

    Example:
        `main(["compare", "--epochs", "5", "--seeds", "0", "1"])` runs the
        comparison as the shell command `kerastroke compare --epochs 5 --seeds 0 1`.
    """
    args = build_parser().parse_args(argv)
    logs.quiet_environment()  # before any command imports TensorFlow
    return args.run(args)
