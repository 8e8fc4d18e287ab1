"""Ready-made callbacks: each is a `PlasticityCallback` with a fixed rule list.

`classic` holds kerastroke 2.x's Stroke, Pruning and NeuroPlast; `research`
the methods from the literature (magnitude pruning, SET, shrink-and-perturb).
All of them derive from `base.Preset`.
"""
