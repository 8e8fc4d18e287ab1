"""One backend's measurements: `python -m benchmarks.worker SPEC.json OUT.json`.

`python -m benchmarks` starts one of these per backend, with KERAS_BACKEND
set (and JAX_ENABLE_X64 unset), and merges what they write.
"""

import json
import sys
import time
import traceback
from pathlib import Path


def log(message):
    print(message, flush=True)


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


def main(spec):
    from benchmarks import apply, fit, machine, memory, models, original

    started = time.perf_counter()
    results = {"backend": machine.backend(), "load_start": machine.load_average()}
    backend = results["backend"]["keras_backend"]
    sections = spec["sections"]
    if "apply" in sections:
        plan = spec["apply"]
        presets = {name: models.PRESETS[name] for name in spec["presets"]}
        _section(results, "apply", f"[{backend}] one application per preset and model, against one memcpy",
                 lambda: apply.run(spec["models"], presets, log=log, **plan))
    if "fit" in sections:
        plan = spec["fit"]
        _section(results, "fit", f"[{backend}] model.fit with callbacks every {plan['frequency']} steps",
                 lambda: fit.run(**plan, log=log))
    if "original" in sections:
        plan = spec["original"]
        _section(results, "original", f"[{backend}] presets against kerastroke {original.VERSION}",
                 lambda: original.run(spec["cache"], log=log, **plan))
    if "memory" in sections:
        _section(results, "memory", f"[{backend}] peak extra memory, one process per preset",
                 lambda: memory.run(list(models.LEGACY_PRESETS), spec["memory"]["side"], log=log))
    results["load_end"] = machine.load_average()
    results["duration_s"] = time.perf_counter() - started
    return results


if __name__ == "__main__":
    spec_path, out_path = sys.argv[1:3]
    result = main(json.loads(Path(spec_path).read_text()))
    Path(out_path).write_text(json.dumps(result, indent=1) + "\n")
    sys.exit(1 if result.get("failed_sections") else 0)
