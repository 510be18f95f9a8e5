"""The export heads (`--head raw|boxes|nms`): decoded boxes equal the numpy decode, in-graph NMS
equals `torchvision.ops.batched_nms` on the same candidates, every predictor reads every head from
the metadata, MNN's raw output equals ONNX Runtime's, and the refusals are one clear line.

Images: the demo photos (generated stand-ins without the shared data) plus one synthetic scene.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import onnx
import pytest
import torch
from torchvision.ops import batched_nms

from inference_helpers import assert_same_detections, read_images
from nanodet_ghost.export.formats import export_model as export_format
from nanodet_ghost.inference.common import preprocess_batch
from nanodet_ghost.inference.exported_predictor import ExportedPredictor
from nanodet_ghost.inference.metadata import ModelFileError
from nanodet_ghost.inference.postprocess_np import decode_np, select_candidates

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'nanodet_ghost[openvino]')")

SIZE = (256, 192)  # (W, H)
FILES = {"onnx": "model.onnx", "openvino": "model.xml", "ncnn": "model.ncnn.param", "mnn": "model.mnn"}
HEADS_OF = {"onnx": ("raw", "boxes", "nms"), "openvino": ("raw", "boxes", "nms"), "ncnn": ("raw", "boxes"),
            "mnn": ("raw", "boxes", "nms")}


def _runtime_available(fmt: str) -> bool:
    module = {"onnx": "onnxruntime", "openvino": "openvino", "ncnn": "ncnn", "mnn": "MNN"}[fmt]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def cfg():
    from inference_helpers import make_cfg

    return make_cfg(f"data.input_size=[{SIZE[0]},{SIZE[1]}]")


@pytest.fixture(scope="module")
def images(photo_paths):
    from nanodet_ghost.data.synthetic import render_image

    scene, _ = render_image(np.random.default_rng(11))
    return read_images(photo_paths[:3]) + [scene]


@pytest.fixture(scope="module")
def exports(cfg, export_model, tmp_path_factory) -> Dict[Tuple[str, str], Path]:
    """(format, head) -> the exported file, for every runtime installed here."""
    folder = tmp_path_factory.mktemp("heads")
    out = {}
    for fmt, heads in HEADS_OF.items():
        if not _runtime_available(fmt):
            continue
        for head in heads:
            name = FILES[fmt].replace("model", f"model_{head}")
            out[fmt, head] = Path(export_format(export_model, cfg, fmt, folder / name, input_size=SIZE, head=head))
    return out


def _need(exports, fmt: str, head: str) -> Path:
    if (fmt, head) not in exports:
        pytest.skip(f"the {fmt} runtime is not installed")
    return exports[fmt, head]


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "ncnn", "mnn"])
def test_boxes_head_equals_the_numpy_decode(fmt, exports, cfg, images) -> None:
    batch, _ = preprocess_batch(images, SIZE, True, cfg.data.mean, cfg.data.std)
    raw = ExportedPredictor(_need(exports, fmt, "raw")).run(batch)["output"]
    decoded = ExportedPredictor(_need(exports, fmt, "boxes")).run(batch)
    head = cfg.model.head
    scores, boxes = decode_np(raw, head.num_classes, head.reg_max, list(head.strides), (SIZE[1], SIZE[0]))
    assert decoded["boxes"].shape == (len(images), boxes.shape[1], 4)
    assert decoded["scores"].shape == scores.shape
    assert np.abs(decoded["boxes"] - boxes).max() < 1e-3, "boxes differ from the numpy decode by 1e-3 px or more"
    assert np.abs(decoded["scores"] - scores).max() < 1e-5
    assert boxes.max() > 50, "the boxes should not be trivially small"


@pytest.mark.parametrize("fmt", ["onnx", "openvino", "mnn"])
def test_nms_head_equals_batched_nms_on_the_same_candidates(fmt, exports, cfg, images) -> None:
    post = cfg.model.postprocess
    batch, _ = preprocess_batch(images, SIZE, True, cfg.data.mean, cfg.data.std)
    decoded = ExportedPredictor(_need(exports, fmt, "boxes")).run(batch)
    nms_predictor = ExportedPredictor(_need(exports, fmt, "nms"))
    total = 0
    for i in range(len(images)):
        found = nms_predictor.run(batch[i:i + 1])
        assert found["detections"].shape == (1, post.max_detections, 6)
        count = int(found["num_detections"][0])
        points, labels, scores = select_candidates(decoded["scores"][i], post.score_thr, post.nms_pre)
        boxes = torch.from_numpy(decoded["boxes"][i][points])
        keep = batched_nms(boxes, torch.from_numpy(scores), torch.from_numpy(labels), post.nms_iou)
        keep = keep[: post.max_detections].numpy()
        assert count == len(keep), f"image {i}: {count} detections, batched_nms keeps {len(keep)}"
        rows = found["detections"][0]
        np.testing.assert_allclose(rows[:count, :4], boxes.numpy()[keep], atol=1e-3)
        np.testing.assert_array_equal(rows[:count, 5].astype(np.int64), labels[keep])
        np.testing.assert_allclose(rows[:count, 4], scores[keep], atol=1e-5)
        assert np.all(np.diff(rows[:count, 4]) <= 0), "detections are in decreasing score order"
        assert not rows[count:].any(), "rows after num_detections are zero"
        total += count
    assert total > 10, "the test model should detect something"


@pytest.mark.parametrize("fmt,head", [("onnx", "boxes"), ("onnx", "nms"), ("openvino", "nms"), ("ncnn", "boxes"),
                                      ("mnn", "nms")])
def test_predictors_read_every_head_from_the_metadata(fmt, head, exports, images) -> None:
    reference = ExportedPredictor(_need(exports, "onnx", "raw")).predict(images)
    predictor = ExportedPredictor(_need(exports, fmt, head))
    assert predictor.head == head
    for a, b in zip(reference, predictor.predict(images)):
        assert_same_detections(a, b)


def test_mnn_raw_output_equals_onnx_runtime(exports, cfg, images) -> None:
    batch, _ = preprocess_batch(images, SIZE, True, cfg.data.mean, cfg.data.std)
    mnn = ExportedPredictor(_need(exports, "mnn", "raw")).run(batch)["output"]
    ort = ExportedPredictor(exports["onnx", "raw"]).run(batch)["output"]
    assert np.abs(mnn - ort).max() < 1e-4


def test_nms_head_metadata_and_its_fixed_settings(exports, images) -> None:
    path = exports["onnx", "nms"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["head"] == "nms" and float(meta["score_thr"]) == 0.05 and int(meta["max_detections"]) == 100
    stricter = ExportedPredictor(path, postprocess={"score_thr": 0.3, "max_detections": 5}).predict(images)
    assert all(len(d) <= 5 and (d.scores > 0.3).all() for d in stricter)
    with pytest.raises(ModelFileError, match=r"model_nms\.onnx: its nms head fixed .*nms_iou 0\.5 != 0\.6"):
        ExportedPredictor(path, postprocess={"nms_iou": 0.5})
    with pytest.raises(ModelFileError, match=r"score_thr 0\.01 < 0\.05"):
        ExportedPredictor(path).predict(images[0], score_thr=0.01)


def test_a_batch_larger_than_the_static_batch_is_a_clear_error(exports, cfg, images) -> None:
    batch, _ = preprocess_batch(images[:3], SIZE, True, cfg.data.mean, cfg.data.std)
    predictor = ExportedPredictor(exports["onnx", "nms"])
    with pytest.raises(ModelFileError, match=r"model_nms\.onnx: the model takes a batch of exactly 1 \(static\), "
                                             r"got 3"):
        predictor.backend.run(batch)
    assert predictor.run(batch)["detections"].shape[0] == 3  # the predictor runs it image by image


def test_an_export_without_the_head_key_loads_as_raw(exports, tmp_path: Path) -> None:
    model = onnx.load(str(exports["onnx", "raw"]))
    kept = [p for p in model.metadata_props if p.key != "head"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    assert ExportedPredictor(old).head == "raw"


def test_heads_a_runtime_cannot_hold_are_refused_in_one_line(export_model, cfg, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^--format ncnn cannot hold --head nms: ncnn has no NonMaxSuppression "
                                         r"layer; use --head raw or boxes"):
        export_format(export_model, cfg, "ncnn", tmp_path / "m.param", input_size=SIZE, head="nms")
    with pytest.raises(ValueError, match=r"unknown head 'decoded', expected one of \['raw', 'boxes', 'nms'\]"):
        export_format(export_model, cfg, "onnx", tmp_path / "m.onnx", input_size=SIZE, head="decoded")
    with pytest.raises(ValueError, match="static batch"):
        export_format(export_model, cfg, "onnx", tmp_path / "m.onnx", input_size=SIZE, head="nms",
                      dynamic_batch=True)


@pytest.mark.parametrize("args, message", [
    (["--format", "ncnn", "--head", "nms", "--out", "m.param"],
     "tools/export.py: error: --format ncnn cannot hold --head nms: ncnn has no NonMaxSuppression layer; "
     "use --head raw or boxes (and NMS in the predictor)"),
    (["--format", "onnx", "--head", "nms", "--dynamic-batch", "--out", "m.onnx"],
     "tools/export.py: error: --head nms has a static batch: drop --dynamic-batch (or use --head raw or boxes)"),
    (["--format", "onnx", "--head", "decoded", "--out", "m.onnx"], "argument --head: invalid choice: 'decoded'"),
    (["--format", "tflite", "--out", "m.tflite"], "argument --format: invalid choice: 'tflite'"),
])
def test_export_tool_refuses_heads_and_formats_with_a_usage_error(args, message, tmp_path: Path) -> None:
    import subprocess
    import sys

    from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "export.py"),
                           str(CONFIG_DIR / "nanodet_ghost_320.yml"), str(tmp_path / "never_read.ckpt")]
                          + args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]
    if "invalid choice" in message:  # argparse names what works
        assert "choose from" in proc.stderr


def test_mnn_banners_stay_out_of_stdout(exports) -> None:
    import subprocess
    import sys

    path = _need(exports, "mnn", "raw")
    code = ("import sys; from nanodet_ghost.inference.exported_predictor import ExportedPredictor; "
            f"ExportedPredictor({str(path)!r}); print('only this')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "only this\n"
