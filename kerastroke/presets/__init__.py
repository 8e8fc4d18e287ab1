"""Ready-made callbacks: each is a `PlasticityCallback` with a fixed rule list.

`classic` holds kerastroke 2.x's Stroke, Pruning and NeuroPlast; `research`
the methods from the literature (magnitude pruning, SET, shrink-and-perturb);
`plasticity` the unit-recycling methods (ReDo, continual backprop).
All of them derive from `base.Preset`.
"""
