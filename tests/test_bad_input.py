"""Bad input gets one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vmcu.cli import main
from vmcu.errors import VmcuError
from vmcu.frontend.tflite import decode_tflite
from vmcu.reference.executor import random_inputs, run_reference
from vmcu.support import check_supported

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
HELLO = MODELS / "tflm__hello_world_int8.tflite"
KWS = MODELS / "mlperftiny__kws_ref_model.tflite"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vmcu: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("command", ["inspect", "plan"])
@pytest.mark.parametrize("length", [0, 7, 100, 1000, 2000])
def test_truncated_model(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, length: int) -> None:
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(HELLO.read_bytes()[:length])
    code, _, err = run_cli(capsys, command, str(bad))
    assert_one_line_error(code, err, "truncated")


def test_random_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "noise.tflite"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    code, _, err = run_cli(capsys, "plan", str(bad))
    assert_one_line_error(code, err, "not a TFLite model")


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "inspect", "/nonexistent/model.tflite")
    assert_one_line_error(code, err, "cannot read model file")


@pytest.mark.parametrize("model", [HELLO, KWS, MODELS / "tflm__micro_speech_quantized.tflite"],
                         ids=lambda p: p.stem)
def test_flipped_bytes_never_crash(model: Path) -> None:
    """Flip single bytes all over a valid model: each result is refused with VmcuError or runs."""
    data = bytearray(model.read_bytes())
    rng = np.random.default_rng(7)
    outcomes = {"ran": 0, "refused": 0}
    for pos in rng.integers(8, len(data), 300):
        flipped = bytearray(data)
        flipped[pos] ^= int(rng.integers(1, 256))
        try:
            graph = decode_tflite(bytes(flipped), name="flipped")
            check_supported(graph)
            run_reference(graph, random_inputs(graph, 1, 0)[0])
            outcomes["ran"] += 1
        except VmcuError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["ran"] > 0, outcomes


@pytest.mark.parametrize("model, ops", [
    ("tflm__mnist_lstm_int8", ["op 0 UNIDIRECTIONAL_SEQUENCE_LSTM"]),
    ("tflm__dtln_noise_suppression", ["op 0 UNIDIRECTIONAL_SEQUENCE_LSTM", "op 1 UNIDIRECTIONAL_SEQUENCE_LSTM"]),
    ("tflm__keyword_scrambled_8bit", ["op 1 SVDF", "op 11 SVDF", "op 0 QUANTIZE"]),
])
def test_unsupported_ops_named(capsys: pytest.CaptureFixture[str], model: str, ops: list[str]) -> None:
    code, _, err = run_cli(capsys, "plan", str(MODELS / f"{model}.tflite"))
    assert_one_line_error(code, err, "unsupported op", *ops)


def test_inspect_still_lists_unsupported_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "inspect", str(MODELS / "tflm__mnist_lstm_int8.tflite"))
    assert code == 0
    assert "NOT supported" in out and "operator type is not supported" in out


def test_float_model_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.resources import files

    sine = files("tflite_micro.python.tflite_micro").joinpath("sine_float.tflite")
    model = tmp_path / "sine_float.tflite"
    model.write_bytes(sine.read_bytes())
    code, _, err = run_cli(capsys, "plan", str(model))
    assert_one_line_error(code, err, "float model")
