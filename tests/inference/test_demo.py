"""demo/demo.py without a display: annotated images and videos are written, a missing camera is a
one-line error. A small input size (128) keeps the full 250-frame video fast. The image tests run
on `photo_paths` (generated without the shared data); the video tests need the real bikes.mp4."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import cv2
import pytest

from inference_helpers import CONFIG, save_lightning_checkpoint
from nanodet_ghost.cli import EXIT_DATA, EXIT_USAGE
from nanodet_ghost.data.image_io import read_image
from nanodet_ghost.paths import REPO_ROOT

SMALL = "data.input_size=[128,128]"


def _run_demo(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, str(REPO_ROOT / "demo" / "demo.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _reported_detections(stderr: str) -> Dict[str, int]:
    """file name -> the detection count the demo logs for it ("bus.jpg: 3 detections in ...")."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(\S+): (\d+) detections in ", stderr)}


def _assert_drawn_on(written_path: Path, input_path: Path, detections: int) -> None:
    """The written image is the input as the demo reads it (BGR, same size), with boxes drawn
    when there are detections and untouched when there are none.

    The comparison is with the input encoded the same way, so JPEG re-encoding alone cannot pass
    for a drawing."""
    written, original = cv2.imread(str(written_path)), read_image(str(input_path))
    assert written is not None, f"{written_path} is not a readable image"
    assert written.shape == original.shape, f"{written_path.name}: {written.shape} vs {original.shape}"
    ok, encoded = cv2.imencode(written_path.suffix, original)
    assert ok
    changed = int((written != cv2.imdecode(encoded, cv2.IMREAD_COLOR)).any(axis=2).sum())
    if detections:
        assert changed > 100, f"{written_path.name}: {detections} detections but nothing drawn"
    else:
        assert changed == 0, f"{written_path.name}: no detections but {changed} pixels changed"


def _frames(video: Path) -> Tuple[int, Tuple[int, int]]:
    """(number of frames actually decoded, (width, height)) of a video file."""
    cap = cv2.VideoCapture(str(video))
    assert cap.isOpened(), f"cannot open {video}"
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    return frames, size


@pytest.fixture(scope="module")
def small_models(model320, tmp_path_factory):
    """A checkpoint (run at 128 through a config override) and a 128x128 ONNX export."""
    from nanodet_ghost.export.onnx import export_onnx
    from inference_helpers import make_cfg

    folder = tmp_path_factory.mktemp("demo_models")
    ckpt = save_lightning_checkpoint(model320, folder / "model.ckpt")
    onnx_path = export_onnx(model320, make_cfg(SMALL), folder / "model128.onnx")
    return ckpt, Path(onnx_path)


def test_image_folder_headless_checkpoint(small_models, photo_paths, tmp_path: Path) -> None:
    ckpt, _ = small_models
    folder, out = photo_paths[0].parent, tmp_path / "out"
    proc = _run_demo("image", "--config", str(CONFIG), "--model", str(ckpt), "--path", str(folder),
                     "--out-dir", str(out), "--score-thr", "0.3", "--override", SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "no display" in proc.stderr  # it says so, and saves instead of showing
    photos = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    assert len(photos) == len(photo_paths)
    assert sorted(p.name for p in out.iterdir()) == photos
    counts = _reported_detections(proc.stderr)
    assert sorted(counts) == photos, proc.stderr
    assert sum(n > 0 for n in counts.values()) >= 2, f"too few images with detections to check drawing: {counts}"
    for name in photos:
        _assert_drawn_on(out / name, folder / name, counts[name])


def test_single_image_onnx_no_show(small_models, photo_paths, tmp_path: Path) -> None:
    _, onnx_path = small_models
    photo = photo_paths[2]
    proc = _run_demo("image", "--model", str(onnx_path), "--path", str(photo), "--no-show",
                     "--save-result", "--out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [photo.name]
    counts = _reported_detections(proc.stderr)
    assert list(counts) == [photo.name] and counts[photo.name] > 0, proc.stderr
    _assert_drawn_on(tmp_path / photo.name, photo, counts[photo.name])


def test_video_full_length_onnx(small_models, demo_root: Path, tmp_path: Path) -> None:
    _, onnx_path = small_models
    video = demo_root / "bikes.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    proc = _run_demo("video", "--model", str(onnx_path), "--path", str(video), "--no-show", "--save-result",
                     "--out-dir", str(tmp_path), "--threads", "2")
    assert proc.returncode == 0, proc.stderr
    frames, size = _frames(video)
    assert frames > 5
    assert _frames(tmp_path / "bikes.mp4") == (frames, size)
    assert "FPS" in proc.stderr


def test_video_max_frames_checkpoint(small_models, demo_root: Path, tmp_path: Path) -> None:
    ckpt, _ = small_models
    video = demo_root / "bikes.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    proc = _run_demo("video", "--config", str(CONFIG), "--model", str(ckpt), "--path", str(video),
                     "--out-dir", str(tmp_path), "--max-frames", "5", "--override", SMALL)
    assert proc.returncode == 0, proc.stderr
    _, size = _frames(video)
    assert _frames(tmp_path / "bikes.mp4") == (5, size)


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
    assert proc.returncode == EXIT_DATA and "nope.jpg" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run_demo("image", "--model", str(tmp_path / "model.ckpt"), "--path", "x.jpg")
    assert proc.returncode == EXIT_USAGE and "--config" in proc.stderr  # argparse usage error
