"""kerastroke: training-time plasticity for Keras 3.

Selectors choose entries, mutators give them new values, schedules say how
much at each step; a `Rule` joins one of each and a `PlasticityCallback`
applies rules to a model's weights during `fit`. `Stroke`, `Pruning` and
`NeuroPlast` are ready-made rule sets with the parameters of kerastroke 2.x.

The public names load on first use (PEP 562), so that `import kerastroke`
alone, and the `kerastroke` command's `--help`, do not import Keras and its
backend.
"""

import importlib

__version__ = "3.0.0.dev0"

# Where each public name lives; a module path alone means the name is that module.
_HOMES = {
    "SET": "kerastroke.strategies.research",
    "MagnitudePruning": "kerastroke.strategies.research",
    "NeuroPlast": "kerastroke.strategies.presets",
    "PlasticityCallback": "kerastroke.core.callback",
    "Pruning": "kerastroke.strategies.presets",
    "Rule": "kerastroke.core.types",
    "ShrinkPerturb": "kerastroke.strategies.research",
    "Stroke": "kerastroke.strategies.presets",
    "mutators": "kerastroke.strategies.mutators",
    "schedules": "kerastroke.schedules",
    "selectors": "kerastroke.strategies.selectors",
    "sparsity": "kerastroke.core.sparsity",
    "strip": "kerastroke.core.persistence",
}
_MODULES = {"mutators", "schedules", "selectors"}

__all__ = [
    "SET",
    "MagnitudePruning",
    "NeuroPlast",
    "PlasticityCallback",
    "Pruning",
    "Rule",
    "ShrinkPerturb",
    "Stroke",
    "mutators",
    "schedules",
    "selectors",
    "sparsity",
    "strip",
]


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'kerastroke' has no attribute {name!r}")
    module = importlib.import_module(_HOMES[name])
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
