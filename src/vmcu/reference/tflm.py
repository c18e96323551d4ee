"""Run a model in TFLite Micro (the bit-exactness reference) and collect every tensor it computed.

TFLM runs in a subprocess: a too-small arena or a kernel that rejects a model can kill the process
(segfault, abort) instead of raising. One subprocess handles all inputs of one model. Inputs and
results travel as .npz files in a temporary directory. `python -m vmcu.reference.tflm MODEL IN OUT`
is the worker side.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from vmcu.errors import VerifyError
from vmcu.frontend.tflite import read_tflite

TIMEOUT_S = 600
ARENA_SLACK = 4 << 20


def run_tflm(path: str | Path, inputs: list[list[np.ndarray]],
             tensors: list[int] | None = None) -> list[dict[int, np.ndarray]]:
    """Run TFLM once per input set; for each, return {tensor index: value} of `tensors`
    (default: every non-constant tensor). VerifyError if TFLM cannot run the model."""
    path = Path(path)
    graph = read_tflite(path)
    if tensors is None:
        tensors = [t.index for t in graph.activation_tensors()]
    # kPreserveAllTensors gives every tensor its own buffer: the arena must hold them all.
    arena = 2 * sum(t.nbytes for t in graph.activation_tensors()) + ARENA_SLACK
    with tempfile.TemporaryDirectory(prefix="vmcu-tflm-") as tmp:
        in_file, out_file = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays = {f"in_{k}_{j}": np.asarray(x) for k, xs in enumerate(inputs) for j, x in enumerate(xs)}
        np.savez(in_file, n_sets=np.int64(len(inputs)), n_inputs=np.int64(len(graph.inputs)),
                 tensors=np.asarray(tensors, dtype=np.int64), arena=np.int64(arena), **arrays)
        cmd = [sys.executable, "-m", "vmcu.reference.tflm", str(path), str(in_file), str(out_file)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise VerifyError(f"{path.name}: TFLM did not finish within {TIMEOUT_S} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            detail = lines[-1] if lines else f"exit status {proc.returncode}"
            raise VerifyError(f"{path.name}: TFLM failed ({detail})")
        with np.load(out_file) as data:
            return [{t: data[f"out_{k}_{t}"] for t in tensors} for k in range(len(inputs))]


def _worker(model: str, in_file: str, out_file: str) -> None:
    """Subprocess side: load the model once, invoke it per input set, save the tensors."""
    from tflite_micro.python.tflite_micro import runtime

    data = np.load(in_file)
    interp = runtime.Interpreter.from_file(
        model, arena_size=int(data["arena"]),
        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    results: dict[str, np.ndarray] = {}
    for k in range(int(data["n_sets"])):
        interp.reset()
        for j in range(int(data["n_inputs"])):
            interp.set_input(data[f"in_{k}_{j}"], j)
        interp.invoke()
        for t in data["tensors"]:
            results[f"out_{k}_{int(t)}"] = np.array(interp.GetTensor(int(t), 0)["tensor_data"])
    np.savez(out_file, **results)


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
