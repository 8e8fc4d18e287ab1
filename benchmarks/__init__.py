"""kerastroke's speed benchmark: `python -m benchmarks` (or `make bench`).

Every figure is a ratio of two times (or sizes) measured in the same run:

a. each preset once on a 2048x2048 Dense kernel, against kerastroke 2.1.1
   installed from the package registry into `benchmarks/.cache` at run time;
b. each preset on a 4096x4096 kernel, against one `np.copyto` of its weights;
c. the same at 1M, 4M and 16M weights: time per weight and its growth;
d. `model.fit` of an MLP with the presets at epoch frequency, against the
   same fit without them;
e. peak extra memory (process RSS high-water mark) of one application, in a
   fresh process per preset, against the size of the targeted kernel;
f. persistent `MagnitudePruning` fit overhead on a 256-512-512-10 MLP, with
   tfmot's `prune_low_magnitude` under tf_keras run side by side in a virtual
   environment the benchmark creates.

Results go to `benchmarks/results/latest.{md,json}` (`quick.*` with `--quick`).
"""
