"""`python -m benchmarks [--quick] [--backends ...] [--models ...] [--presets ...]`: measure, print, write results.

Each backend runs in its own process (`benchmarks.worker`, KERAS_BACKEND set,
JAX_ENABLE_X64 unset); tfmot runs in its own virtual environment. This
process imports no backend: it starts them, then merges their results into
one markdown table and one JSON file.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BACKENDS = ("tensorflow", "jax", "torch")
PRESETS = ("Stroke", "Pruning", "NeuroPlast", "MagnitudePruning", "SET", "ShrinkPerturb")
SECTIONS = ("apply", "fit", "original", "memory")
DEFAULT_SECTIONS = ("apply", "fit")

# A full run takes about 20 minutes on 2 cores (plus a few minutes, once, to
# create the tfmot environment); --quick is a smoke run of a minute or two per backend.
PLANS = {
    "full": {
        "models": {
            "dense4": {"kind": "dense", "sizes": {"layers": 4, "width": 1024}},
            "dense64": {"kind": "dense", "sizes": {"layers": 64, "width": 256}},
            "dense512": {"kind": "dense", "sizes": {"layers": 512, "width": 64}},
            "transformer": {"kind": "transformer",
                            "sizes": {"blocks": 8, "d_model": 256, "heads": 4, "mlp": 1024, "sequence": 64}},
            "conv": {"kind": "conv", "sizes": {"side": 32, "channels": [32, 64, 128]}},
        },
        # The minimum of a few repeats (at least 2) after the first application, which is
        # reported apart; a slow preset stops after `budget_s` seconds of timed calls.
        "apply": {"repeats": 5, "budget_s": 2.0, "next_step": True, "step_repeats": 2},
        # 16 x Dense(256): 17 kernels, about 1M weights; 400 steps per epoch, an application
        # every 100 steps.
        "fit": {"samples": 25_600, "features": 256, "hidden": [256] * 16, "classes": 10, "batch_size": 64,
                "epochs": 5, "warmup_epochs": 1, "frequency": 100, "final_sparsity": 0.8},
        "original": {"side": 2048, "repeats": 7, "budget_s": 5.0, "original_repeats": 3,
                     "original_budget_s": 8.0},
        "memory": {"side": 4096},
    },
    "quick": {
        "models": {
            "dense4": {"kind": "dense", "sizes": {"layers": 4, "width": 128}},
            "dense64": {"kind": "dense", "sizes": {"layers": 16, "width": 32}},
            "dense512": {"kind": "dense", "sizes": {"layers": 48, "width": 8}},
            "transformer": {"kind": "transformer",
                            "sizes": {"blocks": 2, "d_model": 32, "heads": 2, "mlp": 64, "sequence": 8}},
            "conv": {"kind": "conv", "sizes": {"side": 16, "channels": [8, 16]}},
        },
        "apply": {"repeats": 2, "budget_s": 0.5, "next_step": True, "step_repeats": 2},
        "fit": {"samples": 1280, "features": 32, "hidden": [32] * 4, "classes": 10, "batch_size": 64,
                "epochs": 2, "warmup_epochs": 1, "frequency": 5, "final_sparsity": 0.8},
        "original": {"side": 256, "repeats": 3, "budget_s": 1.0, "original_repeats": 2,
                     "original_budget_s": 2.0},
        "memory": {"side": 512},
    },
}


def log(message):
    print(message, flush=True)


def _names(text, allowed, what):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown or text!r}; choose from {', '.join(allowed)}")
    return names


def _parse(argv):
    models = tuple(PLANS["full"]["models"])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats, a smoke run; writes quick.{json,md}")
    parser.add_argument("--backends", type=lambda text: _names(text, BACKENDS, "backend"), default=list(BACKENDS),
                        help=f"comma-separated, default {','.join(BACKENDS)}")
    parser.add_argument("--models", type=lambda text: _names(text, models, "model"), default=list(models),
                        help=f"comma-separated, default {','.join(models)}")
    parser.add_argument("--presets", type=lambda text: _names(text, PRESETS, "preset"), default=list(PRESETS),
                        help=f"comma-separated, default {','.join(PRESETS)}")
    parser.add_argument("--sections", type=lambda text: _names(text, SECTIONS, "section"),
                        default=list(DEFAULT_SECTIONS),
                        help=f"comma-separated, default {','.join(DEFAULT_SECTIONS)}; also: original "
                             "(against kerastroke 2.1.1, installed at run time), memory (peak RSS)")
    parser.add_argument("--skip-next-step", action="store_true",
                        help="do not time the train step after each application (apply section)")
    parser.add_argument("--skip-tfmot", action="store_true",
                        help="do not create the tfmot environment or time tfmot (with the fit section)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="directory for the results")
    parser.add_argument("--stem", default=None,
                        help="file name of the results without suffix (default latest, or quick with --quick)")
    parser.add_argument("--cache", type=Path, default=HERE.parent / ".venv" / "kerastroke-benchmarks",
                        help="where kerastroke 2.1.1 and the tfmot environment are installed "
                             "(default: inside the project's .venv, which holds everything installed)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per backend process")
    return parser.parse_args(argv)


def _worker_env(backend):
    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    # The worker imports this checkout's kerastroke and benchmarks.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_backend(backend, spec, timeout):
    """Runs benchmarks.worker under `backend`; its result, or {"error": ...}."""
    with tempfile.TemporaryDirectory(prefix="kerastroke-bench-") as scratch:
        spec_path, out_path = Path(scratch) / "spec.json", Path(scratch) / "out.json"
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, "-m", "benchmarks.worker", str(spec_path), str(out_path)]
        start = time.perf_counter()
        try:
            completed = subprocess.run(command, cwd=ROOT, env=_worker_env(backend), timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"the {backend} worker did not finish in {timeout:.0f} s"}
        if not out_path.is_file():
            return {"error": f"the {backend} worker exited {completed.returncode} without results "
                             "(its traceback is in the log above)"}
        result = json.loads(out_path.read_text())
        result["process_s"] = time.perf_counter() - start
        result["returncode"] = completed.returncode
        return result


def _tfmot(plan, args):
    from benchmarks import tfmot
    from benchmarks.data import make_data

    x, y = make_data(plan["samples"], plan["features"], plan["classes"])
    steps = -(-plan["samples"] // plan["batch_size"])
    spec = {key: plan[key] for key in ("hidden", "classes", "batch_size", "epochs", "warmup_epochs", "frequency")}
    spec["schedule"] = {"initial": 0.0, "final": plan["final_sparsity"], "begin": 0,
                        "end": steps * (plan["warmup_epochs"] + plan["epochs"]), "power": 3.0}
    tf_version = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, importlib.metadata as m; print(json.dumps(m.version('tensorflow')))"],
        capture_output=True, text=True, check=True).stdout)
    try:
        result = tfmot.run(args.cache, x, y, spec, tf_version, log=log)
    except tfmot.Unavailable as error:
        log(f"  tfmot not measured: {error}")
        return {"error": str(error)}
    for name, row in result["configs"].items():
        log(f"    tfmot {name} epochs: {', '.join(f'{t:.2f} s' for t in row['epoch_s'])}")
    return result


def main(argv=None):
    args = _parse(argv)
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    sys.path.insert(0, str(ROOT))
    from benchmarks import machine, report

    started = time.perf_counter()
    results = {
        "mode": mode,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)],
        "plan": plan,
        "selected": {"backends": args.backends, "models": args.models, "presets": args.presets,
                     "sections": args.sections, "tfmot": "fit" in args.sections and not args.skip_tfmot},
        "load_start": machine.load_average(),
        "machine": machine.describe(),
        "statistic": "minimum of the timed repeats after the first call; first call, medians and samples kept",
        "backends": {},
    }
    log(f"kerastroke benchmark ({mode}) on {results['machine']['cpu']}, {results['machine']['usable_cores']} "
        f"cores; load {' '.join(map(str, results['load_start'] or []))}")
    spec = {
        "sections": args.sections,
        "models": {name: plan["models"][name] for name in args.models},
        "presets": args.presets,
        "apply": {**plan["apply"], "next_step": plan["apply"]["next_step"] and not args.skip_next_step},
        "fit": plan["fit"],
        "original": plan["original"],
        "memory": plan["memory"],
        "cache": str(args.cache),
    }
    for backend in args.backends:
        log(f"== {backend} ==")
        results["backends"][backend] = run_backend(backend, spec, args.timeout)
    if results["selected"]["tfmot"]:
        log(f"== tfmot (tf_keras, its own environment), load {' '.join(map(str, machine.load_average() or []))} ==")
        start = time.perf_counter()
        results["tfmot"] = _tfmot(plan["fit"], args)
        results["tfmot"]["section_s"] = time.perf_counter() - start
    results["load_end"] = machine.load_average()
    results["duration_s"] = time.perf_counter() - started
    results["targets"] = report.targets(results)
    paths = report.write(results, args.out, args.stem or ("quick" if args.quick else "latest"))
    print()
    print(report.markdown(results))
    log("Wrote " + ", ".join(str(path) for path in paths))
    failed = [name for name, result in results["backends"].items()
              if "error" in result or result.get("failed_sections")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
