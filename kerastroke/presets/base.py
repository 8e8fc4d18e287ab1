"""`Preset`: the base of every ready-made callback."""

from kerastroke.core import serialization
from kerastroke.engine.callback import PlasticityCallback


class Preset(PlasticityCallback):
    """A `PlasticityCallback` whose rules are built from a few parameters.

    A preset serialises the arguments its user wrote, not the rules built from
    them: `get_config` returns the parameters kept by `_keep` (pieces and
    schedules as their configs) plus `seed`, `verbose` and `name`, and
    `from_config` calls the constructor with them again.

    Example:
    >>> from kerastroke import Stroke
    >>> config = Stroke(volatility_ratio=0.1, seed=0).get_config()
    >>> config["volatility_ratio"], Stroke.from_config(config).seed
    (0.1, 0)
    """

    # Construction warnings point past the preset's own __init__.
    _warn_stacklevel = 3

    def _keep(self, **params):
        """Records the constructor's arguments (other than seed, verbose and name)."""
        self._params = params

    def get_config(self):
        config = {key: serialization._encode(value) for key, value in self._params.items()}
        config.update(seed=self.seed, verbose=self.verbose, name=self.name)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**{key: serialization._decode(value) for key, value in config.items()})
