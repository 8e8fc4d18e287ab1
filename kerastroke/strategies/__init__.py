"""Strategies: the built-in selectors and mutators, and the presets built from them."""
