"""tf.distribute.MultiWorkerMirroredStrategy with two workers on localhost.

Run with no argument: starts two worker processes (this file with a worker
index) on free loopback ports, waits for both, and prints one JSON line:
each worker's exit status and the last line of its output. A worker that
trains prints `{"stroke_changed": [...], "disagreements": N}`; one that fails
prints the exception's type and message.

With Keras 3.15.1 and TensorFlow 2.21, `fit` under this strategy fails in
Keras's own train step before any callback runs, with or without kerastroke
callbacks: pass `--plain` to run the same model with no callback at all.
"""

import json
import os
import socket
import subprocess
import sys


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker(index, ports, plain):
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
        "task": {"type": "worker", "index": index},
    })
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import toy

    from kerastroke import Stroke

    x, y = toy.data()
    with strategy.scope():
        model = toy.compiled_mlp()
    callbacks = [] if plain else [Stroke(volatility_ratio=0.2, seed=1)]
    try:
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=callbacks)
    except Exception as exc:  # the reproduction reports what Keras raised
        print(json.dumps({"error": type(exc).__name__, "message": str(exc).splitlines()[0][:120]}))
        return 1
    print(json.dumps({"stroke_changed": history.history.get("stroke_changed")}))
    return 0


def main(plain):
    ports = _free_ports(2)
    args = ["--plain"] if plain else []
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(index), ",".join(map(str, ports)), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for index in range(2)
    ]
    results = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        lines = output.strip().splitlines()
        results.append({"returncode": process.returncode, "last_line": lines[-1] if lines else ""})
    print(json.dumps(results))


if __name__ == "__main__":
    plain = "--plain" in sys.argv
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")], plain))
    main(plain)
