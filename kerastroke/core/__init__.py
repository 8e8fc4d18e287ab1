"""The engine: piece types, the one place that writes weights, and the callback."""
