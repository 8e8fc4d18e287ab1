"""Keeps the frameworks' start-up logging out of a command's output.

TensorFlow's C++ side honours `TF_CPP_MIN_LOG_LEVEL` only once its logging
is initialised; what it (and the XLA libraries it loads) logs before that --
"WARNING: All log messages before absl::InitializeLog() is called are written
to STDERR", then lines such as "I0000 ... cudart_stub.cc:31] Could not find
cuda drivers" -- goes straight to file descriptor 2. `filtered_stderr` drops
such lines by the same rule the variable states, and passes everything else
through unchanged and in order.
"""

import contextlib
import logging
import os
import re
import sys
import threading

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"  # TensorFlow's scale: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR either.

_BANNER = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's prefix ("E0000 00:00:1796040611.099761   4242 cuda_executor.cc:12] ..."; before
# logging is initialised the seconds count from 1970) and TensorFlow's older one
# ("2026-11-30 12:00:00.123456: E tensorflow/core/...").
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+:\d+\] ")
_TF_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) ")
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
# A line still being written that could turn out to be a log line waits for its end.
_MAYBE_LOG = re.compile(rb"^(?:[IWEF]|\d|$)")


def quiet_environment():
    """Sets `TF_CPP_MIN_LOG_LEVEL=3` unless the user set it; returns the level in force.

    Must run before TensorFlow is imported: the variable is read at import.
    """
    os.environ.setdefault(LEVEL_VARIABLE, QUIET_LEVEL)
    return min_level()


def min_level():
    """The level `TF_CPP_MIN_LOG_LEVEL` asks for, as an int (0 when unset or unreadable)."""
    try:
        return max(0, int(os.environ.get(LEVEL_VARIABLE, "0")))
    except ValueError:
        return 0


def is_noise(line, level):
    """Whether a framework log `line` (bytes, no newline) is below `level`.

    Example:
    >>> is_noise(b"I0000 00:00:1796040611.099761   12951 cudart_stub.cc:31] No GPU.", 1)
    True
    >>> is_noise(b"kerastroke compare: error: data.npz: no such file", 3)
    False
    """
    if line.rstrip(b"\r") == _BANNER:
        return level >= 1
    match = _ABSL_LINE.match(line) or _TF_LINE.match(line)
    return bool(match) and _SEVERITY[match.group(1)] < level


def quiet_python_loggers(level):
    """Applies `level` to TensorFlow's Python logger (retracing warnings and the like)."""
    if level >= 2 and "tensorflow" in sys.modules:
        python_level = logging.ERROR if level == 2 else logging.CRITICAL
        logging.getLogger("tensorflow").setLevel(python_level)


@contextlib.contextmanager
def filtered_stderr(level=None):
    """Within the block, file descriptor 2 drops framework log lines below `level`.

    Everything else written to stderr -- by Python or by C++ -- reaches the
    original stderr unchanged and in order; a partial line is passed on at
    once unless it may be the start of a log line. Without a real file
    descriptor 2 (some embedded interpreters) the block runs unfiltered.

    Args:
        level: As `TF_CPP_MIN_LOG_LEVEL`; None reads the variable.
    """
    level = min_level() if level is None else level
    try:
        original = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pump, args=(read_end, original, level), daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the pump sees the end
        pump.join()
        os.close(read_end)
        os.close(original)


def _pump(source, target, level):
    pending = b""
    while True:
        chunk = os.read(source, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if not is_noise(line, level))
        if pending and not _MAYBE_LOG.match(pending):
            out, pending = out + pending, b""
        _write_all(target, out)
    if pending and not is_noise(pending, level):
        _write_all(target, pending)


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]
