"""tools/predict.py on generated images and a generated video, with a checkpoint and an ONNX model."""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_helpers import calibrated_model, read_images, save_lightning_checkpoint
from nanodet_ghost.config import load_config
from nanodet_ghost.data.synthetic import generate_split
from nanodet_ghost.inference.predictor import Predictor
from nanodet_ghost.paths import CONFIG_DIR, REPO_ROOT

CONFIG = CONFIG_DIR / "quickstart.yml"  # the six synthetic classes
SCORE_THR = 0.05


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # dataclasses look their module up there
    spec.loader.exec_module(tool)
    return tool


predict_tool = load_tool("predict")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """5 generated images (images/*.jpg) and their COCO json (annotations.json), ids 1..5."""
    return generate_split(tmp_path_factory.mktemp("shapes"), 5, seed=77)


@pytest.fixture(scope="module")
def models(shapes: Path, tmp_path_factory):
    """(checkpoint, onnx) of one calibrated random 6-class detector."""
    cfg = load_config(CONFIG)
    model = calibrated_model(cfg, read_images(sorted((shapes / "images").glob("*.jpg"))))
    folder = tmp_path_factory.mktemp("models")
    ckpt = save_lightning_checkpoint(model, folder / "model.ckpt")
    from nanodet_ghost.export.onnx import export_onnx

    onnx = Path(export_onnx(model, cfg, folder / "model.onnx", dynamic_batch=True))
    return ckpt, onnx


def predict(*args: str) -> int:
    return predict_tool.main([*map(str, args), "--score-thr", str(SCORE_THR), "--log-level", "WARNING"])


def read_csv(path: Path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_folder_with_checkpoint_scores_with_test_tool(shapes: Path, models, tmp_path: Path, capsys) -> None:
    ckpt, _ = models
    out = tmp_path / "out"
    gt_file = shapes / "annotations.json"
    assert predict(shapes / "images", "--model", ckpt, "--config", CONFIG, "--out", out, "--ann", gt_file) == 0
    inputs = sorted((shapes / "images").glob("*.jpg"))
    gt = json.loads(gt_file.read_text())
    id_of = {img["file_name"]: img["id"] for img in gt["images"]}
    results = json.loads((out / "predictions.json").read_text())
    rows = read_csv(out / "predictions.csv")
    assert len(results) == len(rows) > 0
    predictor = Predictor.from_checkpoint(str(CONFIG), ckpt)
    for path in inputs:
        drawn, original = cv2.imread(str(out / path.name)), cv2.imread(str(path))
        assert drawn.shape == original.shape
        dets = predictor.predict(str(path), score_thr=SCORE_THR)
        mine = [r for r in results if r["image_id"] == id_of[path.name]]
        assert len(mine) == len(dets) == sum(r["file"] == path.name for r in rows)
        if len(dets):
            assert (drawn != original).any()
            xywh = np.array([r["bbox"] for r in mine])
            np.testing.assert_allclose(np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dets.boxes, atol=1e-3)
            assert [r["category_id"] for r in mine] == (dets.labels + 1).tolist()  # names match ids 1..6
    images = json.loads((out / "images.json").read_text())
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in images] == \
           [(i["id"], i["file_name"], i["height"], i["width"]) for i in gt["images"]]

    test_tool = load_tool("test")
    assert test_tool.main(["--ann", str(gt_file), "--results", str(out / "predictions.json")]) == 0
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in capsys.readouterr().out


def test_onnx_model_needs_no_config(shapes: Path, models, tmp_path: Path) -> None:
    ckpt, onnx = models
    assert predict(shapes / "images", "--model", onnx, "--out", tmp_path / "onnx") == 0
    assert predict(shapes / "images", "--model", ckpt, "--config", CONFIG, "--out", tmp_path / "ckpt") == 0
    by_onnx = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
    by_ckpt = json.loads((tmp_path / "ckpt" / "predictions.json").read_text())
    images = json.loads((tmp_path / "onnx" / "images.json").read_text())
    assert [(i["id"], i["file_name"]) for i in images] == [(k + 1, f"{k:06d}.jpg") for k in range(5)]

    def clear(results):  # away from the threshold, where float noise could flip a detection
        return [r for r in results if r["score"] > SCORE_THR + 1e-3]

    onnx_dets, ckpt_dets = clear(by_onnx), clear(by_ckpt)
    assert len(onnx_dets) == len(ckpt_dets) > 0
    for r in onnx_dets:
        assert any(c["image_id"] == r["image_id"] and c["category_id"] == r["category_id"]
                   and abs(c["score"] - r["score"]) < 1e-3 and np.allclose(c["bbox"], r["bbox"], atol=0.05)
                   for c in ckpt_dets), r


def test_glob_and_single_image(shapes: Path, models, tmp_path: Path) -> None:
    _, onnx = models
    assert predict(str(shapes / "images" / "00000[02].jpg"), "--model", onnx, "--out", tmp_path / "g") == 0
    assert sorted(p.name for p in (tmp_path / "g").glob("*.jpg")) == ["000000.jpg", "000002.jpg"]
    for sub in ("a", "b"):  # one name in two folders: outputs keep the folders apart
        (tmp_path / "two" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "two" / sub / "same.png"), cv2.imread(str(shapes / "images" / "000001.jpg")))
    assert predict(str(tmp_path / "two" / "*" / "same.png"), "--model", onnx, "--out", tmp_path / "g2") == 0
    names = [i["file_name"] for i in json.loads((tmp_path / "g2" / "images.json").read_text())]
    assert names == ["a/same.png", "b/same.png"]
    assert (tmp_path / "g2" / "a" / "same.png").is_file() and (tmp_path / "g2" / "b" / "same.png").is_file()
    single = tmp_path / "two" / "a" / "same.png"
    assert predict(single, "--model", onnx, "--out", tmp_path / "one") == 0
    assert cv2.imread(str(tmp_path / "one" / "same.png")).shape == cv2.imread(str(single)).shape


def test_video(shapes: Path, models, tmp_path: Path) -> None:
    _, onnx = models
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (192, 160))
    for path in sorted((shapes / "images").glob("*.jpg")):
        writer.write(cv2.resize(cv2.imread(str(path)), (192, 160)))
    writer.release()
    assert predict(video, "--model", onnx, "--out", tmp_path / "v", "--max-frames", "4") == 0
    cap = cv2.VideoCapture(str(tmp_path / "v" / "clip.mp4"))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    assert frames == 4 and size == (192, 160)
    images = json.loads((tmp_path / "v" / "images.json").read_text())
    assert [(i["id"], i["file_name"]) for i in images] == [(k + 1, f"clip.mp4:{k}") for k in range(4)]
    assert {r["file"] for r in read_csv(tmp_path / "v" / "predictions.csv")} <= {f"clip.mp4:{k}" for k in range(4)}


def test_bad_inputs(shapes: Path, models, tmp_path: Path, capsys) -> None:
    ckpt, onnx = models

    def error(*args: str) -> tuple:
        code = predict(*args)
        return code, capsys.readouterr().err.strip()

    assert error(tmp_path / "nothing.jpg", "--model", onnx) == (
        3, f"tools/predict.py: error: source not found: {tmp_path / 'nothing.jpg'} (expected an image, a folder, "
           "a glob, a video file or a camera id)")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = error(empty, "--model", onnx)
    assert code == 3 and err.startswith(f"tools/predict.py: error: no images (.jpg, .jpeg") and str(empty) in err
    assert error(shapes / "images", "--model", ckpt) == (
        2, f"tools/predict.py: error: {ckpt} is a checkpoint: give its config with --config")
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"x")
    code, err = error(shapes / "images", "--model", weights)
    assert code == 4 and err.startswith(f"tools/predict.py: error: {weights}: unknown model format '.bin'")
    assert error(shapes / "images", "--model", tmp_path / "gone.onnx") == (
        3, f"tools/predict.py: error: model not found: {tmp_path / 'gone.onnx'}")
    other_gt = tmp_path / "other.json"
    other_gt.write_text(json.dumps(dict(images=[], annotations=[], categories=[dict(id=1, name="cat")])))
    code, err = error(shapes / "images", "--model", onnx, "--ann", other_gt)
    assert code == 2 and "no category named ['circle', 'triangle', 'rectangle', 'star', 'ring', 'cross']" in err
    code, err = error(shapes / "images", "--model", onnx, "--out", shapes / "images")
    assert code == 3 and "would overwrite the input" in err


def test_unreadable_image_is_skipped(shapes: Path, models, tmp_path: Path, caplog) -> None:
    _, onnx = models
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((shapes / "images" / "000000.jpg").read_bytes())
    (folder / "b.jpg").write_bytes(b"not an image at all")
    assert predict_tool.main([str(folder), "--model", str(onnx), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "a.jpg").is_file() and not (tmp_path / "o" / "b.jpg").exists()
    assert "1 unreadable images skipped: b.jpg" in caplog.text
    assert [i["file_name"] for i in json.loads((tmp_path / "o" / "images.json").read_text())] == ["a.jpg"]
