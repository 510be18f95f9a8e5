"""Backend choice by file suffix, `Predictor.from_model`, the errors a user sees for a missing
runtime or a broken ncnn sidecar, and that OpenVINO and ncnn predictors run without torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nanodet_ghost.cli import run_tool
from nanodet_ghost.inference.backends import MissingRuntimeError, load_backend
from nanodet_ghost.inference.metadata import ModelFileError, parse_metadata
from nanodet_ghost.paths import REPO_ROOT
from test_torch_free import _BLOCK_TORCH as BLOCK_TORCH  # the same import blocker


@pytest.fixture(scope="module")
def exports(cfg320, model320, onnx320, tmp_path_factory):
    """The session's ONNX export converted to OpenVINO, and the model exported to ncnn."""
    pytest.importorskip("openvino", reason="pip install 'nanodet_ghost[openvino]'")
    pytest.importorskip("pnnx", reason="pip install 'nanodet_ghost[ncnn]'")
    from nanodet_ghost.export.ncnn import export_ncnn
    from nanodet_ghost.export.onnx import build_metadata
    from nanodet_ghost.export.openvino import export_openvino

    folder = tmp_path_factory.mktemp("backends")
    xml = export_openvino(onnx320, folder / "model.xml")
    param = export_ncnn(model320, cfg320, build_metadata(cfg320, (320, 320)), folder / "model.ncnn.param", (320, 320))
    return {"onnx": Path(onnx320), "openvino": Path(xml), "ncnn": Path(param)}


@pytest.mark.parametrize("kind, backend", [("onnx", "OnnxRuntimeBackend"), ("openvino", "OpenVinoBackend"),
                                           ("ncnn", "NcnnBackend")])
def test_backend_and_predictor_follow_the_suffix(exports, cfg320, kind, backend) -> None:
    from nanodet_ghost.inference.exported_predictor import ExportedPredictor
    from nanodet_ghost.inference.predictor import Predictor

    assert type(load_backend(exports[kind], num_threads=1)).__name__ == backend
    predictor = Predictor.from_model(exports[kind], num_threads=1)
    assert isinstance(predictor, ExportedPredictor) and type(predictor.backend).__name__ == backend
    assert predictor.class_names == list(cfg320.data.class_names)


def test_from_model_checkpoint_needs_the_config(tmp_path: Path) -> None:
    from nanodet_ghost.inference.predictor import Predictor

    with pytest.raises(ValueError, match="model.ckpt: a checkpoint needs its config"):
        Predictor.from_model(tmp_path / "model.ckpt")


def test_unknown_suffix_names_the_file_and_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"model\.tflite: unknown model format '\.tflite' \(expected \.onnx, "
                                             r"\.xml, \.param, \.mnn or a \.ckpt checkpoint\)"):
        load_backend(path)


@pytest.mark.parametrize("module, suffix, extra", [("openvino", ".xml", "openvino"), ("ncnn", ".param", "ncnn"),
                                                   ("onnxruntime", ".onnx", "onnxruntime")])
def test_missing_runtime_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path: Path, module, suffix,
                                                      extra) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"")
    if suffix == ".param":  # the ncnn backend reads the sidecar before it needs ncnn
        path.with_suffix(".bin").write_bytes(b"")
        path.with_suffix(".json").write_text(json.dumps({"metadata": _metadata(), "ncnn": {}}))
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingRuntimeError) as info:
        load_backend(path)
    assert str(info.value).endswith(f"is not installed; pip install 'nanodet_ghost[{extra}]'")
    assert run_tool("demo/demo.py", lambda: load_backend(path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"nanodet_ghost[{extra}]" in err and "Traceback" not in err


def _metadata() -> dict:
    return {"class_names": '["a", "b"]', "input_size": "[64, 64]", "strides": "[8, 16, 32]", "reg_max": "7",
            "mean": "[0, 0, 0]", "std": "[1, 1, 1]", "keep_ratio": "true"}


def test_ncnn_sidecar_problems_name_the_file(tmp_path: Path) -> None:
    param = tmp_path / "m.param"
    param.write_text("7767517\n")
    param.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"m\.param: its metadata sidecar .*m\.json is missing"):
        load_backend(param)
    param.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"m\.json: invalid json"):
        load_backend(param)
    param.with_suffix(".json").write_text(json.dumps({"metadata": {"class_names": "[]"}, "ncnn": {}}))
    with pytest.raises(ModelFileError, match=r"m\.param: not a nanodet_ghost export, metadata lacks"):
        load_backend(param)
    with pytest.raises(FileNotFoundError, match=r"ncnn weights not found: .*gone\.bin"):
        (tmp_path / "gone.param").write_text("")
        load_backend(tmp_path / "gone.param")


def test_metadata_parsing_rejects_bad_values() -> None:
    good = parse_metadata(_metadata(), "x.onnx")
    assert good.input_size == (64, 64) and good.output_channels == 2 + 32 and good.center_offset == 0.5
    with pytest.raises(ModelFileError, match=r"x\.onnx: malformed metadata"):
        parse_metadata(dict(_metadata(), reg_max="seven"), "x.onnx")
    with pytest.raises(ModelFileError, match=r"x\.onnx: metadata mean/std must have 3 values"):
        parse_metadata(dict(_metadata(), mean="[0, 0]"), "x.onnx")
    with pytest.raises(ModelFileError, match="format_version 9 is not supported"):
        parse_metadata(dict(_metadata(), format_version="9"), "x.onnx")




@pytest.mark.parametrize("kind", ["openvino", "ncnn"])
def test_exported_predictor_runs_with_torch_blocked(exports, photo_paths, kind) -> None:
    code = BLOCK_TORCH + textwrap.dedent(f"""
        from nanodet_ghost.inference import load_predictor
        predictor = load_predictor({str(exports[kind])!r}, num_threads=1)
        dets = predictor.predict({str(photo_paths[0])!r}, score_thr=0.05)
        print('DETECTIONS', len(dets))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "DETECTIONS" in proc.stdout and "DETECTIONS 0\n" not in proc.stdout
