"""`python -m benchmarks [--quick] [--skip-original] [--skip-tfmot]`: measure, print, write results."""

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = Path(__file__).resolve().parent

# Sizes and repeats. A full run takes 7 to 10 minutes on 2 cores (plus about a
# minute, once, to create the tfmot environment); --quick is a smoke run.
PLANS = {
    "full": {
        "floor": {"sides": (1024, 2048, 4096), "repeats": 7, "budget_s": 10.0},
        "original": {"side": 2048, "repeats": 7, "budget_s": 5.0, "original_repeats": 3,
                     "original_budget_s": 8.0},
        "fit": {"samples": 40_000, "features": 784, "hidden": (512, 512), "classes": 10, "batch_size": 128,
                "epochs": 6, "warmup_epochs": 1},
        "memory": {"side": 4096},
        # Keras's default batch size, where a per-step mask costs the most relative to a step.
        "persistent": {"samples": 12_000, "features": 256, "hidden": (512, 512), "classes": 10,
                       "batch_size": 32, "epochs": 10, "sparsity": 0.5, "pruning_frequency": 100,
                       # The first application attaches the mask and the next epoch retraces
                       # the train step: both belong to the warm-up, not the timed epochs.
                       "warmup_epochs": 2},
    },
    "quick": {
        "floor": {"sides": (256, 512, 1024), "repeats": 3, "budget_s": 2.0},
        "original": {"side": 512, "repeats": 3, "budget_s": 1.0, "original_repeats": 2,
                     "original_budget_s": 2.0},
        "fit": {"samples": 4096, "features": 784, "hidden": (128, 128), "classes": 10, "batch_size": 128,
                "epochs": 2, "warmup_epochs": 1},
        "memory": {"side": 1024},
        "persistent": {"samples": 2048, "features": 256, "hidden": (512, 512), "classes": 10,
                       "batch_size": 32, "epochs": 2, "sparsity": 0.5, "pruning_frequency": 10,
                       "warmup_epochs": 2},
    },
}


def log(message):
    print(message, flush=True)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats, a smoke run; writes quick.{json,md}")
    parser.add_argument("--skip-original", action="store_true",
                        help="do not install or time kerastroke 2.1.1 (section a)")
    parser.add_argument("--skip-tfmot", action="store_true",
                        help="do not create the tfmot environment or time tfmot (section f)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="directory for the results")
    parser.add_argument("--cache", type=Path, default=HERE / ".cache",
                        help="where kerastroke 2.1.1 and the tfmot environment are installed")
    return parser.parse_args(argv)


def _section(results, key, title, body):
    from benchmarks.machine import load_average

    load = load_average()
    log(f"{title} (load {' '.join(map(str, load or []))})")
    start = time.perf_counter()
    try:
        results[key] = body()
    except Exception as error:  # noqa: BLE001 - one broken section must not lose the others
        traceback.print_exc()
        results[key] = {"error": f"{type(error).__name__}: {error}"}
        results.setdefault("failed_sections", []).append(key)
    results[key]["section_s"] = time.perf_counter() - start
    results[key]["load_at_start"] = load


def _persistent(plan, args, tf_version):
    from benchmarks import fit, tfmot

    x, y = fit.make_data(plan["samples"], plan["features"], plan["classes"])
    section = {"kerastroke": fit.run_persistent(
        x, y, hidden=plan["hidden"], classes=plan["classes"], batch_size=plan["batch_size"],
        epochs=plan["epochs"], warmup_epochs=plan["warmup_epochs"], sparsity=plan["sparsity"], log=log)}
    if args.skip_tfmot:
        return section
    spec = {key: plan[key] for key in ("hidden", "classes", "batch_size", "epochs", "warmup_epochs",
                                       "sparsity", "pruning_frequency")}
    try:
        section["tfmot"] = tfmot.run(args.cache, x, y, spec, tf_version, log=log)
    except tfmot.Unavailable as error:
        log(f"  tfmot not measured: {error}")
        section["tfmot"] = {"error": str(error)}
    else:
        for name, row in section["tfmot"]["configs"].items():
            log(f"    tfmot {name} epochs: {', '.join(f'{t:.2f} s' for t in row['epoch_s'])}")
    return section


def main(argv=None):
    args = _parse(argv)
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]

    import tensorflow as tf

    from benchmarks import fit, floor, machine, memory, original, report
    from benchmarks.models import PRESETS

    started = time.perf_counter()
    results = {
        "mode": mode,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "plan": plan,
        "load_start": machine.load_average(),
        "machine": machine.describe(),
        "statistic": "minimum of the timed repeats after one warm-up call; medians and samples kept",
    }
    log(f"kerastroke benchmark ({mode}) on {results['machine']['cpu']}, {results['machine']['usable_cores']} cores")

    _section(results, "floor", "b/c. presets against np.copyto, by size",
             lambda: floor.run(plan["floor"]["sides"], repeats=plan["floor"]["repeats"],
                               budget_s=plan["floor"]["budget_s"], log=log))
    if not args.skip_original:
        p = plan["original"]
        _section(results, "original", f"a. presets against kerastroke {original.VERSION}",
                 lambda: original.run(args.cache, side=p["side"], repeats=p["repeats"], budget_s=p["budget_s"],
                                      original_repeats=p["original_repeats"],
                                      original_budget_s=p["original_budget_s"], log=log))
    p = plan["fit"]
    _section(results, "fit", "d. model.fit overhead of the presets",
             lambda: fit.run_presets(samples=p["samples"], features=p["features"], hidden=p["hidden"],
                                     classes=p["classes"], batch_size=p["batch_size"], epochs=p["epochs"],
                                     warmup_epochs=p["warmup_epochs"], log=log))
    _section(results, "memory", "e. peak extra memory, one process per preset",
             lambda: memory.run(list(PRESETS), plan["memory"]["side"], log=log))
    _section(results, "persistent", "f. persistent pruning: kerastroke MagnitudePruning and tfmot",
             lambda: _persistent(plan["persistent"], args, tf.__version__))

    results["load_end"] = machine.load_average()
    results["duration_s"] = time.perf_counter() - started
    results["targets"] = report.targets(results)
    paths = report.write(results, args.out, "quick" if args.quick else "latest")
    print()
    print(report.markdown(results))
    log("Wrote " + ", ".join(str(path) for path in paths))
    return 1 if results.get("failed_sections") else 0


if __name__ == "__main__":
    sys.exit(main())
