"""kerastroke's speed benchmark: `python -m benchmarks` (or `make bench`).

Every figure is a ratio of two times measured in the same run, on each of
TensorFlow, JAX and PyTorch (one process per backend, `benchmarks.worker`):

apply: each of the six presets applied once (`callback.apply(step)`, then a
    read-back of every targeted variable) to five models with many
    variables, against one `np.copyto` of as many entries; the first
    application apart; and the extra cost of the training step after it.
fit: `model.fit` of a 16 x Dense(256) MLP with persistent MagnitudePruning
    (polynomial ramp) and with Stroke every 100 steps, against plain fit;
    tfmot's `prune_low_magnitude` under tf_keras side by side, in a virtual
    environment the benchmark creates.
original, memory (opt-in, `--sections`): the 2.x presets against
    kerastroke 2.1.1, and peak extra memory of one application.

Only kerastroke's public API is used. Results go to
`benchmarks/results/latest.{md,json}` (`quick.*` with `--quick`).
"""
