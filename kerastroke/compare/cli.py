"""The `kerastroke` command line; `kerastroke compare` is its one command so far.

Exit status: 0 on success; 2 for bad input (a usage error, or a dataset file
that is missing, malformed or mismatched), reported as one line on stderr
with no traceback, before any training starts.
"""

import argparse
import json
import os
import sys

import keras

from kerastroke.compare import data, experiment, plots, report
from kerastroke.compare.progress import Progress

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_OUT = "kerastroke-compare"

_EPILOG = """\
examples:
  kerastroke compare
  kerastroke compare --techniques pruning neuroplast --epochs 30 --seeds 0 1 2 3 4
  kerastroke compare --dataset wine --out wine-results
  kerastroke compare --data mine.npz   # arrays x_train, y_train, x_val, y_val

The table goes to stdout, progress to stderr; DIR receives results.json,
report.md, val_accuracy.png and weight_distribution.png.
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
    seeds = []
    for part in filter(None, text.split(",")):
        try:
            seed = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are integers >= 0, got {part!r}") from None
        if not 0 <= seed < 2**31 - 1:
            raise argparse.ArgumentTypeError(f"seeds are integers in [0, 2**31 - 1), got {part!r}")
        seeds.append(seed)
    return seeds


def _techniques(text):
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    for name in names:
        if name != experiment.BASELINE and name not in experiment.TECHNIQUES:
            raise argparse.ArgumentTypeError(
                f"unknown technique {name!r}; choose from {', '.join(experiment.TECHNIQUES)}"
            )
    return names


def build_parser():
    """The argument parser of the `kerastroke` command."""
    parser = _Parser(prog="kerastroke", description="kerastroke: training-time plasticity for Keras 3.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    compare = commands.add_parser(
        "compare",
        help="train a small model without and with Stroke, Pruning and NeuroPlast, over seeds",
        description=(
            "Trains the same small model (one hidden layer of 64 ReLU units), from the same "
            "initial weights per seed, once without any callback (the baseline) and once with "
            "each technique at its default settings, for every seed. Reports final validation "
            "accuracy and loss (mean ± std over seeds), the fraction of exactly-zero weights "
            "and the time per run, and says which differences from the baseline are larger "
            "than the seed-to-seed spread."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--techniques", nargs="+", type=_techniques, metavar="NAME",
        help=f"techniques to compare with the baseline (default: all: {' '.join(experiment.TECHNIQUES)})",
    )
    compare.add_argument(
        "--epochs", type=_positive_int, default=experiment.Settings.epochs,
        help="epochs per run (default: %(default)s)",
    )
    compare.add_argument(
        "--seeds", nargs="+", type=_seeds, metavar="SEED",
        help="seeds, one run per technique each (default: 0 1 2 3 4); same seeds, same numbers",
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


def _unique(items):
    return list(dict.fromkeys(items))


def _prepare_out(path):
    """Creates the output directory; returns an error message or None."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"--out {path} exists and is not a directory"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        return f"cannot create --out directory {path}: {error.strerror or error}"
    if not os.access(path, os.W_OK):
        return f"--out directory {path} is not writable"
    return None


def _deterministic_ops():
    # CPU kernels are already deterministic here; on a GPU some TensorFlow kernels
    # are not unless asked. Process-wide, which is why only the command does it.
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def run_compare(args):
    """Runs `kerastroke compare` for parsed `args`; returns the exit status."""
    seeds = [seed for group in args.seeds for seed in group] if args.seeds else list(DEFAULT_SEEDS)
    if len(set(seeds)) != len(seeds):
        return _fail(f"--seeds lists a seed twice: {' '.join(map(str, seeds))}")
    if args.techniques:
        techniques = _unique(t for group in args.techniques for t in group if t != experiment.BASELINE)
    else:
        techniques = list(experiment.TECHNIQUES)
    try:
        dataset = data.load_npz(args.data) if args.data else data.load_bundled(args.dataset)
    except data.DataError as error:
        return _fail(str(error))
    problem = _prepare_out(args.out)
    if problem:
        return _fail(problem)

    _deterministic_ops()
    comparison = experiment.run_comparison(
        dataset,
        techniques,
        seeds,
        experiment.Settings(epochs=args.epochs),
        progress=Progress(),
    )
    written = {
        "results": os.path.join(args.out, "results.json"),
        "report": os.path.join(args.out, "report.md"),
    }
    with open(written["results"], "w", encoding="utf-8") as file:
        json.dump(report.results(comparison), file, indent=2, allow_nan=False)
        file.write("\n")
    drawn = plots.write_plots(comparison, args.out)
    with open(written["report"], "w", encoding="utf-8") as file:
        file.write(report.markdown_report(comparison, drawn))

    summary = report.summarise(comparison)
    print(report.text_table(summary))
    short = report.in_short(report.verdicts(summary, report.resolution(comparison)))
    if short:
        print("\n" + short)
    sys.stdout.flush()
    pngs = ", ".join(os.path.join(args.out, name) for name in drawn.values())
    print(f"report: {written['report']}\nresults: {written['results']}\nplots: {pngs}", file=sys.stderr)
    return 0


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
    return args.run(args)
