"""kerastroke: training-time plasticity for Keras 3.

Selectors choose entries, mutators give them new values, schedules say how
much at each step; a `Rule` joins one of each and a `PlasticityCallback`
applies rules to a model's weights during `fit`. `Stroke`, `Pruning` and
`NeuroPlast` are ready-made rule sets with the parameters of kerastroke 2.x.
"""

import keras

from kerastroke import schedules
from kerastroke.core.callback import PlasticityCallback
from kerastroke.core.persistence import strip
from kerastroke.core.serialization import register_piece
from kerastroke.core.sparsity import sparsity
from kerastroke.core.types import Rule
from kerastroke.strategies import mutators, selectors
from kerastroke.strategies.presets import NeuroPlast, Pruning, Stroke
from kerastroke.strategies.research import SET, MagnitudePruning, ShrinkPerturb

__version__ = "3.0.0.dev0"

# `keras.saving.deserialize_keras_object` finds the callbacks by these names
# ("kerastroke>Stroke", ...); the presets register where they are defined.
keras.saving.register_keras_serializable(package="kerastroke")(PlasticityCallback)

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
    "register_piece",
    "schedules",
    "selectors",
    "sparsity",
    "strip",
]
