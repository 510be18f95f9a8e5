"""demo/demo.py without a display: annotated images and videos are written, a missing camera is a
one-line error. A small input size (128) keeps the full 250-frame video fast."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from inference_helpers import CONFIG, save_lightning_checkpoint
from nanodet_ghost.paths import REPO_ROOT

SMALL = "data.input_size=[128,128]"


def _run_demo(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, str(REPO_ROOT / "demo" / "demo.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def small_models(model320, tmp_path_factory):
    """A checkpoint (run at 128 through a config override) and a 128x128 ONNX export."""
    from nanodet_ghost.export.onnx import export_onnx
    from inference_helpers import make_cfg

    folder = tmp_path_factory.mktemp("demo_models")
    ckpt = save_lightning_checkpoint(model320, folder / "model.ckpt")
    onnx_path = export_onnx(model320, make_cfg(SMALL), folder / "model128.onnx")
    return ckpt, Path(onnx_path)


def test_image_folder_headless_checkpoint(small_models, demo_root: Path, tmp_path: Path) -> None:
    ckpt, _ = small_models
    out = tmp_path / "out"
    proc = _run_demo("image", "--config", str(CONFIG), "--model", str(ckpt), "--path", str(demo_root),
                     "--out-dir", str(out), "--score-thr", "0.3", "--override", SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "no display" in proc.stderr  # it says so, and saves instead of showing
    photos = sorted(p.name for p in demo_root.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    assert sorted(p.name for p in out.iterdir()) == photos
    for name in photos:
        written, original = cv2.imread(str(out / name)), cv2.imread(str(demo_root / name))
        assert written.shape == original.shape
        assert (written != original).any(), f"{name}: nothing drawn"


def test_single_image_onnx_no_show(small_models, demo_root: Path, tmp_path: Path) -> None:
    _, onnx_path = small_models
    proc = _run_demo("image", "--model", str(onnx_path), "--path", str(demo_root / "bus.jpg"), "--no-show",
                     "--save-result", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bus.jpg").is_file()


def test_video_full_length_onnx(small_models, demo_root: Path, tmp_path: Path) -> None:
    _, onnx_path = small_models
    video = demo_root / "bikes.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    proc = _run_demo("video", "--model", str(onnx_path), "--path", str(video), "--no-show", "--save-result",
                     "--out-dir", str(tmp_path), "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(tmp_path / "bikes.mp4"))
    assert cap.isOpened()
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 250
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 272)
    cap.release()
    assert "FPS" in proc.stderr


def test_video_max_frames_checkpoint(small_models, demo_root: Path, tmp_path: Path) -> None:
    ckpt, _ = small_models
    video = demo_root / "bikes.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    proc = _run_demo("video", "--config", str(CONFIG), "--model", str(ckpt), "--path", str(video),
                     "--out-dir", str(tmp_path), "--max-frames", "5", "--override", SMALL)
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(tmp_path / "bikes.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()


def test_absent_camera_is_a_one_line_error(small_models, tmp_path: Path) -> None:
    _, onnx_path = small_models
    proc = _run_demo("webcam", "--model", str(onnx_path), "--camid", "57", "--out-dir", str(tmp_path))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0] and "camera 57" in lines[0], proc.stderr


def test_missing_inputs(small_models, tmp_path: Path) -> None:
    _, onnx_path = small_models
    proc = _run_demo("image", "--model", str(onnx_path), "--path", str(tmp_path / "nope.jpg"), "--no-show")
    assert proc.returncode == 1 and "nope.jpg" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run_demo("image", "--model", str(tmp_path / "model.ckpt"), "--path", "x.jpg")
    assert proc.returncode == 2 and "--config" in proc.stderr  # argparse usage error
