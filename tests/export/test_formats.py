"""Every deployment format: fp32 parity with PyTorch (raw output and detections), the metadata each
format carries, INT8 graphs, and the errors of `export_model` / tools/export.py.

fp32 parity runs on the demo photos (generated stand-ins without the shared data) plus one
generated synthetic scene, so real and generated images are both covered whenever the data is there.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import onnx
import pytest

from inference_helpers import assert_same_detections, read_images
from nanodet_ghost.export.formats import export_model as export_format
from nanodet_ghost.export.parity import output_difference
from nanodet_ghost.inference.common import preprocess_batch
from nanodet_ghost.inference.exported_predictor import ExportedPredictor
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'nanodet_ghost[openvino]')")
pytest.importorskip("ncnn", reason="the ncnn extra is not installed (pip install 'nanodet_ghost[ncnn]')")

FP32_FILES = {"onnx": "model.onnx", "openvino": "model.xml", "ncnn": "model.ncnn.param"}
SIZE = (256, 192)  # (W, H): not square, so a swapped width and height would show
# The COCO default and one family member per code path (width, depth, GhostPAN with the four-level
# Plus head, NanoDet-Plus with its training-only auxiliary head and corner priors).
MEMBERS = [CONFIG_DIR / f"{name}.yml" for name in (
    "nanodet_ghost_320", "bccd_ghost050_pan", "bccd_ghost100_d50_pan", "bccd_ghost_ghostpan_atss",
    "bccd_nanodet_plus_ghost")]


@pytest.fixture(scope="module")
def size_cfg(export_cfg):
    from inference_helpers import make_cfg

    return make_cfg(f"data.input_size=[{SIZE[0]},{SIZE[1]}]")


@pytest.fixture(scope="module")
def fp32_exports(size_cfg, export_model, tmp_path_factory) -> Dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    return {fmt: Path(export_format(export_model, size_cfg, fmt, folder / name, input_size=SIZE))
            for fmt, name in FP32_FILES.items()}


@pytest.fixture(scope="module")
def parity_images(photo_paths):
    """The photos plus one generated synthetic scene (uint8 BGR)."""
    from nanodet_ghost.data.synthetic import render_image

    scene, _ = render_image(np.random.default_rng(7))
    return read_images(photo_paths[:3]) + [scene]


@pytest.fixture(scope="module", params=MEMBERS, ids=lambda p: p.stem)
def member(request, photo_paths, tmp_path_factory):
    """(config at SIZE, calibrated random model, its fp32 exports) of one family member."""
    from inference_helpers import calibrated_model
    from nanodet_ghost.config import load_config

    cfg = load_config(request.param, [f"data.input_size=[{SIZE[0]},{SIZE[1]}]"])
    model = calibrated_model(cfg, read_images(photo_paths))
    folder = tmp_path_factory.mktemp(f"formats_{request.param.stem}")
    exports = {fmt: Path(export_format(model, cfg, fmt, folder / name, input_size=SIZE))
               for fmt, name in FP32_FILES.items()}
    return cfg, model, exports


@pytest.mark.parametrize("fmt", list(FP32_FILES))
def test_fp32_raw_output_matches_pytorch(fmt, member, parity_images) -> None:
    cfg, model, exports = member
    batch, _ = preprocess_batch(parity_images, SIZE, True, cfg.data.mean, cfg.data.std)
    diff, scale = output_difference(model, exports[fmt], batch, num_threads=2)
    assert scale > 1.0, "the outputs should not be trivially small"
    assert diff < 1e-4, f"{fmt}: max abs difference {diff:.3g} (outputs up to {scale:.3g})"


@pytest.mark.parametrize("fmt", list(FP32_FILES))
def test_fp32_detections_equal_pytorch(fmt, member, parity_images) -> None:
    cfg, model, exports = member
    torch_dets = Predictor.from_config(cfg, model).predict(parity_images, score_thr=0.05)
    exported = ExportedPredictor(exports[fmt], num_threads=2).predict(parity_images, score_thr=0.05)
    assert ExportedPredictor(exports[fmt]).strides == list(cfg.model.head.strides)
    assert sum(len(d) for d in torch_dets) > 10, "the test model should detect something"
    for a, b in zip(torch_dets, exported):
        assert_same_detections(a, b)


def onnx_metadata(path: Path) -> Dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_every_format_carries_the_onnx_metadata(size_cfg, fp32_exports) -> None:
    import openvino as ov

    from nanodet_ghost.inference.backends.openvino import read_rt_metadata

    reference = onnx_metadata(fp32_exports["onnx"])
    for key in ("class_names", "input_size", "mean", "std", "keep_ratio", "strides", "reg_max", "center_offset"):
        assert key in reference
    assert json.loads(reference["input_size"]) == list(SIZE)
    assert read_rt_metadata(ov.Core().read_model(str(fp32_exports["openvino"]))) == reference
    sidecar = json.loads(fp32_exports["ncnn"].with_suffix(".json").read_text())  # model.ncnn.json
    assert sidecar["metadata"] == reference
    assert sidecar["ncnn"]["input_shape"] == [1, 3, SIZE[1], SIZE[0]]
    predictors = [ExportedPredictor(p) for p in fp32_exports.values()]
    for predictor in predictors:
        assert predictor.class_names == list(size_cfg.data.class_names)
        assert predictor.input_size == SIZE and predictor.strides == [8, 16, 32] and predictor.reg_max == 7
        assert predictor.mean == list(size_cfg.data.mean) and predictor.keep_ratio is True


def test_int8_formats_quantize_the_body_and_keep_the_head_outputs_float(size_cfg, export_model, parity_images,
                                                                        tmp_path: Path) -> None:
    """The INT8 graphs are quantized, keep the metadata, and leave the head's output convolutions in
    float (float weights, float output)."""
    import openvino as ov

    from nanodet_ghost.export.onnx_int8 import head_output_nodes
    from nanodet_ghost.inference.backends.openvino import read_rt_metadata

    images, _ = preprocess_batch(parity_images, SIZE, True, size_cfg.data.mean, size_cfg.data.std)
    onnx_path = export_format(export_model, size_cfg, "onnx-int8", tmp_path / "int8.onnx", input_size=SIZE,
                             images=images)
    model = onnx.load(onnx_path)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "int8" and "4 given images" in meta["quantization"]
    assert json.loads(meta["class_names"]) == list(size_cfg.data.class_names)
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [n for n in convs if producers.get(n.input[1]) is not None
                 and producers[n.input[1]].op_type == "DequantizeLinear"]
    assert len(quantized) > 0.9 * len(convs)
    head = [n for n in convs if n.name in set(head_output_nodes(model))]
    assert len(head) == 3  # one per level
    consumers = {i: n for n in model.graph.node for i in n.input}
    for conv in head:  # float weights, and a float output (not re-quantized)
        assert producers.get(conv.input[1]) is None, f"{conv.name}: quantized weights"
        assert all(consumers.get(o) is None or consumers[o].op_type != "QuantizeLinear" for o in conv.output)
    xml = export_format(export_model, size_cfg, "openvino-int8", tmp_path / "int8.xml", input_size=SIZE,
                       images=images)
    ir = ov.Core().read_model(xml)
    assert sum(op.get_type_name() == "FakeQuantize" for op in ir.get_ops()) > 50
    assert read_rt_metadata(ir)["precision"] == "int8"
    for path in (onnx_path, xml):
        dets = ExportedPredictor(path).predict(parity_images[0])
        assert dets.boxes.shape[1] == 4 and dets.image_hw == parity_images[0].shape[:2]


def test_export_model_rejects_bad_requests(export_cfg, export_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        export_format(export_model, export_cfg, "tflite", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match=r"--format openvino writes a \.xml file, got --out .*m\.onnx"):
        export_format(export_model, export_cfg, "openvino", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="--dynamic-batch is for --format onnx only"):
        export_format(export_model, export_cfg, "ncnn", tmp_path / "m.param", dynamic_batch=True)
    (tmp_path / "m.xml").write_text("<net/>")  # an OpenVINO IR whose weights are m.bin
    with pytest.raises(ValueError, match=r"would overwrite .*m\.bin, the weights of the OpenVINO model .*m\.xml; "
                                         r"choose another name \(e\.g\. m\.ncnn\.param\)"):
        export_format(export_model, export_cfg, "ncnn", tmp_path / "m.param")


def test_export_tool_wrong_suffix_is_one_usage_line(tmp_path: Path) -> None:
    ckpt = tmp_path / "never_read.ckpt"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "export.py"),
                           str(CONFIG_DIR / "nanodet_ghost_320.yml"), str(ckpt), "--format", "ncnn",
                           "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"tools/export.py: error: --format ncnn writes a .param file, got --out {tmp_path / 'm.onnx'}"


def test_export_tool_writes_a_checked_openvino_model(export_model, tmp_path: Path) -> None:
    from inference_helpers import save_lightning_checkpoint

    ckpt = save_lightning_checkpoint(export_model, tmp_path / "model.ckpt")
    out = tmp_path / "model.xml"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "export.py"),
                           str(CONFIG_DIR / "nanodet_ghost_320.yml"), str(ckpt), "--format", "openvino",
                           "--out", str(out), "--input-size", "160", "128"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}"
    assert f"{out} vs PyTorch on a random input: max abs diff" in proc.stderr
    assert ExportedPredictor(out).input_size == (160, 128) and out.with_suffix(".bin").is_file()
