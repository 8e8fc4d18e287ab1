"""The `kerastroke` command starts light and quiet; the quickstart example runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kerastroke.compare import logs

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("keras", "tensorflow", "jax", "torch", "sklearn", "matplotlib")


def _env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# Runs the command's entry as `python -m kerastroke ARGS` would, then lists heavy modules loaded.
_HELP_PROBE = """
import runpy, sys
sys.argv = ["kerastroke", *sys.argv[1:]]
try:
    runpy.run_module("kerastroke", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    assert stop.code == 0, stop.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(%r))
print("HEAVY:" + ",".join(heavy))
""" % (HEAVY,)


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"]])
def test_help_imports_no_framework(argv):
    done = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, *argv],
        capture_output=True, text=True, env=_env(), timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: kerastroke" in done.stdout
    assert done.stdout.splitlines()[-1] == "HEAVY:", done.stdout.splitlines()[-1]
    assert done.stderr == ""


def test_environment_is_quieted_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(logs.LEVEL_VARIABLE, raising=False)
    assert logs.quiet_environment() == 3 and os.environ[logs.LEVEL_VARIABLE] == "3"
    monkeypatch.setenv(logs.LEVEL_VARIABLE, "1")
    assert logs.quiet_environment() == 1 and os.environ[logs.LEVEL_VARIABLE] == "1"


NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796039496.786594    3735 cudart_stub.cc:31] Could not find cuda drivers "
    b"on your machine, GPU will not be used.",
    b"E0000 00:00:1796039497.100000    3735 cuda_executor.cc:1228] failed call to cuInit: "
    b"INTERNAL: CUDA error",
    b"2026-11-30 12:00:00.123456: E tensorflow/core/framework/node_def_util.cc:680] NodeDef "
    b"mentions attribute use_unbounded_threadpool which is not in the op definition",
]


def test_filter_drops_log_lines_below_the_level_and_keeps_the_rest(capfd):
    kept = b"[1/4] baseline, seed 0  (0:01 elapsed)\n"
    with logs.filtered_stderr(level=3):
        os.write(2, b"\n".join(NOISE[:2]) + b"\n" + kept)
        os.write(2, NOISE[2][:20])  # a log line arriving in two writes
        os.write(2, NOISE[2][20:] + b"\n")
        os.write(2, NOISE[3] + b"\nkerastroke compare: error: bad\n")
        os.write(2, b"\r[2/4] stroke: epoch 3/20")  # a terminal's line, no newline yet
    err = capfd.readouterr().err
    assert err == kept.decode() + "kerastroke compare: error: bad\n\r[2/4] stroke: epoch 3/20"


def test_filter_keeps_what_the_user_asked_to_see(capfd):
    with logs.filtered_stderr(level=2):
        os.write(2, b"\n".join(NOISE) + b"\n")
    err = capfd.readouterr().err
    assert err.splitlines() == [NOISE[2].decode(), NOISE[3].decode()]


def test_quickstart_runs_on_this_backend_as_its_docstring_says():
    example = ROOT / "examples" / "quickstart.py"
    assert "python examples/quickstart.py" in example.read_text().split('"""')[1]
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=_env(), cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "entries rewired per epoch:" in done.stdout
