"""The engine: the `Rule`, the one writer of weights, the callback that applies
rules during `fit`, and what it keeps on the model (holds, optimizer state);
`units` and `activity` find a model's units, measure them and recycle them.

It depends on the piece protocols of `rule` only, never on the built-in pieces.
"""
