"""Schedules: `schedule(step) -> amount`, how much (and whether) a rule acts at a step.

Any callable `step -> float in [0, 1]` works where a built-in does.
"""

from kerastroke.schedules.basic import Constant, Cutoff, Decay, constant, cutoff, decay
from kerastroke.schedules.research import Cosine, Every, Polynomial, cosine, every, polynomial

__all__ = [
    "Constant",
    "Cosine",
    "Cutoff",
    "Decay",
    "Every",
    "Polynomial",
    "constant",
    "cosine",
    "cutoff",
    "decay",
    "every",
    "polynomial",
]
