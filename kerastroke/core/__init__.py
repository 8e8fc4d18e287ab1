"""Foundations shared by the pieces and the engine: tensors and bit patterns,
parameter checks, seeds, counter-based draws and the registry of pieces."""
