"""`kerastroke compare`: the baseline against Stroke, Pruning and NeuroPlast, over seeds.

Run it as `kerastroke compare` or `python -m kerastroke compare`; from Python,
`run_comparison(load_bundled("digits"))` returns the runs and
`report.results(...)` their JSON-ready summary.

Example:
>>> from kerastroke.compare import Settings, load_bundled, run_comparison
>>> result = run_comparison(load_bundled("wine"), ["stroke"], seeds=[0],
...                         settings=Settings(epochs=2))
>>> len(result.runs)
2
"""

from kerastroke.compare.data import DataError, Dataset, load_bundled, load_npz
from kerastroke.compare.experiment import Comparison, Run, Settings, run_comparison

__all__ = [
    "Comparison",
    "DataError",
    "Dataset",
    "Run",
    "Settings",
    "load_bundled",
    "load_npz",
    "run_comparison",
]
