"""Progress of a running comparison, on stderr so that stdout keeps only the table."""

import sys
import time


class Progress:
    """Shows runs done of total, the current technique and seed, and the epoch or task.

    On a terminal one line is rewritten in place; elsewhere (a log file, CI)
    each run gets a line of its own, so the log stays readable.

    Args:
        stream: Where to write; stderr by default.
    """

    def __init__(self, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = time.monotonic()
        self._label = ""
        self._width = 0

    def _elapsed(self):
        seconds = int(time.monotonic() - self._start)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _show(self, text):
        if self.live:
            # Pad over the previous, possibly longer, line instead of relying on ANSI codes.
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def run_started(self, index, total, technique, seed):
        self._label = f"[{index + 1:>{len(str(total))}}/{total}] {technique}, seed {seed}"
        self._show(f"{self._label}  ({self._elapsed()} elapsed)")

    def epoch_ended(self, epoch, epochs):
        if self.live:
            self._show(f"{self._label}: epoch {epoch + 1}/{epochs}  ({self._elapsed()} elapsed)")

    def task_ended(self, task, tasks):
        if self.live:
            self._show(f"{self._label}: task {task + 1}/{tasks}  ({self._elapsed()} elapsed)")

    def finished(self):
        self._show(f"done in {self._elapsed()}")
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
