"""`kerastroke compare`: the baseline against the plasticity presets, over seeds.

Run it as `kerastroke compare` or `python -m kerastroke compare`; from Python,
`run_comparison(load_bundled("digits"))` returns the runs and
`report.results(...)` their JSON-ready summary;
`run_continual(load_bundled("digits"))` runs the continual scenario and
`continual_report.results(...)` summarises it.

The names below load on first use, so that the command line can parse its
arguments and print `--help` without importing Keras.

Example:
>>> from kerastroke.compare import Settings, load_bundled, run_comparison
>>> result = run_comparison(load_bundled("wine"), ["stroke"], seeds=[0],
...                         settings=Settings(epochs=2))
>>> len(result.runs)
2
"""

import importlib

_HOMES = {
    "CONTINUAL_TECHNIQUES": "kerastroke.compare.options",
    "Comparison": "kerastroke.compare.experiment",
    "ContinualComparison": "kerastroke.compare.continual",
    "ContinualSettings": "kerastroke.compare.options",
    "DataError": "kerastroke.compare.data",
    "Dataset": "kerastroke.compare.data",
    "Run": "kerastroke.compare.experiment",
    "Settings": "kerastroke.compare.options",
    "TECHNIQUES": "kerastroke.compare.options",
    "load_bundled": "kerastroke.compare.data",
    "load_npz": "kerastroke.compare.data",
    "run_comparison": "kerastroke.compare.experiment",
    "run_continual": "kerastroke.compare.continual",
}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'kerastroke.compare' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
