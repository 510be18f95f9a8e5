"""Every figure file is a valid PNG / JPEG of the size its module promises."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from analysis_helpers import CLASSES, make_gt, make_results
from nanodet_ghost.analysis import drawing, figures, make_eval_plots, make_file_plots
from nanodet_ghost.analysis.run_plots import NUM_PREDICTION_IMAGES, PAIRS_PER_ROW
from nanodet_ghost.analysis.training_log import read_training_log
from nanodet_ghost.data.coco import CocoSource
from nanodet_ghost.data.synthetic import SYNTHETIC_CLASSES, generate_split

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
CURVES = ("pr_curve", "f1_curve", "p_curve", "r_curve")


def read_picture(path: Path) -> np.ndarray:
    head = path.read_bytes()[:8]
    assert head.startswith(PNG_MAGIC if path.suffix == ".png" else JPEG_MAGIC), path
    img = cv2.imread(str(path))
    assert img is not None, f"{path} does not decode"
    return img


def assert_size(path: Path, size) -> None:
    img = read_picture(path)
    assert (img.shape[1], img.shape[0]) == tuple(size), path.name


def expected_sizes(num_classes: int):
    sizes = {f"{n}.png": figures.figure_size("pr_curve" if n == "pr_curve" else "confidence_curve")
             for n in CURVES}
    sizes["confusion_matrix.png"] = figures.figure_size("confusion_matrix")
    sizes["per_class_ap.png"] = figures.figure_size("per_class_ap", num_classes)
    sizes["ap_by_size.png"] = figures.figure_size("ap_by_size", num_classes)
    return sizes


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory) -> CocoSource:
    root = generate_split(tmp_path_factory.mktemp("synthetic"), 10, seed=5)
    return CocoSource(str(root / "images"), str(root / "annotations.json"), list(SYNTHETIC_CLASSES))


def test_eval_plots_with_images(synthetic_source: CocoSource, tmp_path: Path) -> None:
    gt = synthetic_source.to_coco()
    files = make_eval_plots(gt, make_results(gt), tmp_path, category_ids=synthetic_source.category_ids,
                            class_names=synthetic_source.class_names, source=synthetic_source)
    sizes = expected_sizes(len(SYNTHETIC_CLASSES))
    assert sorted(p.name for p in files) == sorted([*sizes, "val_predictions.jpg"])
    for name, size in sizes.items():
        assert_size(tmp_path / name, size)
    pairs = min(NUM_PREDICTION_IMAGES, len(synthetic_source))
    assert_size(tmp_path / "val_predictions.jpg", drawing.grid_size(2 * pairs, 2 * PAIRS_PER_ROW))


def test_eval_plots_from_files_without_images(tmp_path: Path) -> None:
    import json

    gt = make_gt(num_images=5)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(make_results(gt)))
    files = make_file_plots(tmp_path / "gt.json", tmp_path / "r.json", tmp_path / "plots")
    sizes = expected_sizes(len(CLASSES))
    assert sorted(p.name for p in files) == sorted(sizes)
    for name, size in sizes.items():
        assert_size(tmp_path / "plots" / name, size)


def test_no_detections_gives_figures_that_say_why(tmp_path: Path) -> None:
    files = make_eval_plots(make_gt(num_images=3), [], tmp_path)
    assert_size(tmp_path / "pr_curve.png", figures.figure_size("message"))
    assert_size(tmp_path / "confusion_matrix.png", figures.figure_size("confusion_matrix"))
    assert len(files) == len(expected_sizes(len(CLASSES)))


def test_results_figure_from_a_log(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "version_0" / "metrics.csv"
    log_file.parent.mkdir(parents=True)
    rows = ["epoch,lr-SGD,step,train/loss,train/loss_dfl,val/mAP,val/AP50"]
    rows += [f"{e},,{e},{1 / (e + 1)},{0.5 / (e + 1)},{e / 10},{e / 5}" for e in range(5)]
    rows += [f",{0.01 * (5 - e)},{e}," + ",,," for e in range(5)]
    log_file.write_text("\n".join(rows) + "\n")
    path = figures.save_figure(figures.results_figure(read_training_log(tmp_path)), tmp_path / "results.png")
    assert_size(path, figures.figure_size("results"))
    empty = figures.save_figure(figures.results_figure(read_training_log(tmp_path / "none")), tmp_path / "e.png")
    assert_size(empty, figures.figure_size("message"))


def test_per_class_figures_grow_with_the_class_count() -> None:
    assert figures.figure_size("per_class_ap", 80)[1] > figures.figure_size("per_class_ap", 3)[1]
    with pytest.raises(ValueError, match="unknown figure 'nope'"):
        figures.figure_size("nope")


def test_tile_images_and_grid_size() -> None:
    cells = [np.full((30, 40, 3), i * 20, np.uint8) for i in range(5)]
    grid = drawing.tile_images(cells, cols=2, gap=3)
    assert grid.shape == (3 * 33 + 3, 2 * 43 + 3, 3)
    assert (grid[3:33, 46:86] == 20).all() and (grid[69:99, 46:86] == drawing.GRID_BACKGROUND).all()
    assert drawing.grid_size(5, 2, cell=(40, 30), captioned=False, gap=3) == (grid.shape[1], grid.shape[0])
    with pytest.raises(ValueError, match="images of one size"):
        drawing.tile_images([cells[0], np.zeros((10, 10, 3), np.uint8)], cols=2)


def test_gt_beside_predictions_keeps_boxes_in_place() -> None:
    """A box drawn on a 200x100 image lands where the cell's scaling puts it."""
    img = np.full((100, 200, 3), 255, np.uint8)
    gt_cell, pred_cell = drawing.gt_and_predictions(
        img, np.array([[50.0, 20.0, 150.0, 80.0]]), np.array([0]), np.array([[50.0, 20.0, 150.0, 80.0]]),
        np.array([0.2]), np.array([0]), ["thing"], score_thr=0.5)
    cell = drawing.CELL
    assert gt_cell.shape == pred_cell.shape == (cell[1] + drawing.CAPTION_HEIGHT, cell[0], 3)
    scale = min(cell[0] / 200, cell[1] / 100)
    top = drawing.CAPTION_HEIGHT + (cell[1] - round(100 * scale)) // 2
    x1, y2 = round(50 * scale), top + round(80 * scale) - 1
    colour = drawing.make_palette(1)[0]
    assert np.abs(gt_cell[y2 - 2:y2 + 2, x1 + 10].astype(int) - colour).sum(axis=1).min() < 60
    # the prediction scored under the threshold is not drawn
    assert (pred_cell[drawing.CAPTION_HEIGHT:] == drawing.fit_to_cell(img)[0]).all()


def test_batch_picture_draws_the_boxes() -> None:
    mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    images = np.full((3, 3, 64, 96), 100.0, np.float32)
    boxes = [np.array([[10.0, 10.0, 50.0, 40.0]]), np.zeros((0, 4)), np.array([[0.0, 0.0, 96.0, 64.0]])]
    labels = [np.array([0]), np.zeros(0, np.int64), np.array([1])]
    picture = drawing.batch_picture(images, boxes, labels, ["a", "b"], mean, std)
    cols = math.ceil(math.sqrt(3))
    assert picture.shape == drawing.grid_size(3, cols, cell=(96, 64), captioned=False)[::-1] + (3,)
    first, second = picture[4:68, 4:100], picture[4:68, 104:200]
    assert (second == 100).all()  # no boxes: the de-normalised image as it is
    assert (first != 100).any(axis=2).sum() > 100
