"""Schedules: `schedule(step) -> amount`, how much (and whether) a rule acts at a step.

Any callable `step -> float in [0, 1]` works where a built-in does.
"""

from kerastroke.schedules.basic import Constant, Cutoff, Decay, constant, cutoff, decay

__all__ = ["Constant", "Cutoff", "Decay", "constant", "cutoff", "decay"]
