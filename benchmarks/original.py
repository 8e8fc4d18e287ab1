"""(a): each preset against kerastroke 2.1.1, installed from the package registry at run time.

2.1.1 is installed with `pip install --no-deps --target` into the cache
directory (never vendored or committed). Its top-level package is also
called `kerastroke`, so it is never put on `sys.path`: its three modules are
loaded from their files under private names. Each imports only `random`,
`numpy` and `tensorflow.keras.callbacks.Callback` (Keras 3 in TensorFlow 2.16
and later). It reads `model.get_weights()[0]` and `[1]` and writes
`set_weights`, so it is given a one-layer Dense model with a bias, and its
`on_epoch_end` is called directly after `set_model`.
"""

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import keras

from benchmarks.models import LEGACY_PRESETS, applied, changed_fraction, dense_model, kernel_of
from benchmarks.timing import measure, ratio

VERSION = "2.1.1"
MODULES = {"Stroke": "stroke", "Pruning": "pruning", "NeuroPlast": "neuroplast"}


def install(cache_dir):
    """The directory kerastroke==2.1.1 is installed in; installs it on first use."""
    target = Path(cache_dir) / f"kerastroke-{VERSION}"
    if all((target / "kerastroke" / f"{module}.py").is_file() for module in MODULES.values()):
        return target, None
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="kerastroke-install-", dir=cache_dir))
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
               "--disable-pip-version-check", "--target", str(staging), f"kerastroke=={VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{(result.stdout + result.stderr)[-2000:]}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target, " ".join(command)


def load(target):
    """The 2.1.1 callback classes, by preset name, loaded from `target` under private module names."""
    classes = {}
    for name, module in MODULES.items():
        path = Path(target) / "kerastroke" / f"{module}.py"
        spec = importlib.util.spec_from_file_location(f"_kerastroke_{VERSION.replace('.', '_')}_{module}", path)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        classes[name] = getattr(loaded, name)
    return classes


def run(cache_dir, *, side, repeats, original_repeats, budget_s, original_budget_s, log=print):
    target, command = install(cache_dir)
    log(f"  kerastroke {VERSION} in {target}" + (f" (installed: {command})" if command else " (cached)"))
    originals = load(target)
    model = dense_model(side)
    kernel = kernel_of(model)
    initial = [w.copy() for w in model.get_weights()]
    weights = initial[0]
    result = {
        "version": VERSION,
        "installed_to": str(target),
        "installed_files": sorted(str(p.relative_to(target)) for p in target.rglob("*.py")),
        "side": side,
        "weights": int(weights.size),
        "presets": {},
    }
    for name, preset in LEGACY_PRESETS.items():
        callback = applied(preset, model)
        ours = measure(lambda step, cb=callback: cb.apply(step), repeats=repeats, budget_s=budget_s,
                       prepare=lambda: kernel.assign(weights))
        ours_changed = changed_fraction(weights, keras.ops.convert_to_numpy(kernel))

        old = originals[name]()
        old.set_model(model)
        try:
            theirs = measure(lambda epoch, cb=old: cb.on_epoch_end(epoch), repeats=original_repeats,
                             budget_s=original_budget_s, prepare=lambda: model.set_weights(initial), at_least=2)
        except Exception as error:  # noqa: BLE001 - the old package's failure is a result to report
            result["presets"][name] = {"kerastroke": ours.as_dict(), "error": f"{type(error).__name__}: {error}"}
            log(f"    {name}: kerastroke {VERSION} failed: {type(error).__name__}: {error}")
            model.set_weights(initial)
            continue
        after = model.get_weights()
        result["presets"][name] = {
            "kerastroke": ours.as_dict(),
            "kerastroke_changed_fraction": ours_changed,
            "original": theirs.as_dict(),
            "original_changed_fraction": changed_fraction(weights, after[0]),
            "original_kernel_dtype_after": str(after[0].dtype),
            "speedup": ratio(theirs.best, ours.best),
        }
        model.set_weights(initial)
        log(f"    {name}: {VERSION} {theirs.best * 1e3:.0f} ms, now {ours.best * 1e3:.1f} ms, "
            f"{result['presets'][name]['speedup']:.0f}x")
    del model
    keras.backend.clear_session()
    return result
