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
    "SET": "kerastroke.presets.research",
    "ContinualBackprop": "kerastroke.presets.plasticity",
    "MagnitudePruning": "kerastroke.presets.research",
    "NeuroPlast": "kerastroke.presets.classic",
    "PlasticityCallback": "kerastroke.engine.callback",
    "Pruning": "kerastroke.presets.classic",
    "RigL": "kerastroke.presets.research",
    "ReDo": "kerastroke.presets.plasticity",
    "Rule": "kerastroke.engine.rule",
    "ShrinkPerturb": "kerastroke.presets.research",
    "Stroke": "kerastroke.presets.classic",
    "mutators": "kerastroke.mutators",
    "register_piece": "kerastroke.core.serialization",
    "schedules": "kerastroke.schedules",
    "selectors": "kerastroke.selectors",
    "sparsity": "kerastroke.engine.sparsity",
    "strip": "kerastroke.engine.persistence",
    "dormant_fraction": "kerastroke.engine.activity",
    "unit_activity": "kerastroke.engine.activity",
}
_MODULES = {"mutators", "schedules", "selectors"}

__all__ = [
    "SET",
    "ContinualBackprop",
    "MagnitudePruning",
    "NeuroPlast",
    "PlasticityCallback",
    "Pruning",
    "RigL",
    "ReDo",
    "Rule",
    "ShrinkPerturb",
    "Stroke",
    "mutators",
    "register_piece",
    "schedules",
    "selectors",
    "sparsity",
    "strip",
    "dormant_fraction",
    "unit_activity",
]


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'kerastroke' has no attribute {name!r}")
    # The first public name loads them all: every callback class is then
    # registered with Keras's serialization, whichever name was asked for.
    for public, home in _HOMES.items():
        module = importlib.import_module(home)
        globals()[public] = module if public in _MODULES else getattr(module, public)
    return globals()[name]


def __dir__():
    return sorted(set(globals()) | set(__all__))
