"""Timing with `time.perf_counter`: one warm-up call, then the minimum of several repeats."""

import dataclasses
import gc
import statistics
import time


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of each timed call (the warm-up call excluded)."""

    samples: tuple
    warmup: tuple = ()

    @property
    def best(self):
        """The minimum: the run least disturbed by the rest of the machine."""
        return min(self.samples)

    @property
    def median(self):
        return statistics.median(self.samples)

    def as_dict(self):
        return {
            "min_s": self.best,
            "median_s": self.median,
            "repeats": len(self.samples),
            "samples_s": list(self.samples),
            "warmup_s": list(self.warmup),
        }


def measure(call, *, repeats, budget_s=None, prepare=None, warmup=1, at_least=3):
    """Times `call(i)` for i = warmup, warmup + 1, ... after `warmup` untimed calls.

    `prepare()` runs before every call, untimed (to restore the weights a call
    changed). The garbage collector runs once before the timed calls (a full
    collection takes about 0.3 s with TensorFlow loaded) and is off inside
    them, as in `timeit`. Timing stops after `repeats` calls, or earlier once the timed
    calls add up to `budget_s` seconds and at least `at_least` were made.
    """
    warmups = []
    for i in range(warmup):
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        call(i)
        warmups.append(time.perf_counter() - start)
    samples = []
    gc.collect()
    for i in range(warmup, warmup + repeats):
        if prepare is not None:
            prepare()
        gc.disable()
        try:
            start = time.perf_counter()
            call(i)
            samples.append(time.perf_counter() - start)
        finally:
            gc.enable()
        if budget_s is not None and len(samples) >= min(at_least, repeats) and sum(samples) >= budget_s:
            break
    return Timing(tuple(samples), tuple(warmups))


def ratio(numerator, denominator):
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
