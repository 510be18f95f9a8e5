"""Two gloo processes: every collective runs on every rank, whatever the batch holds.

Each rank's losses must equal the single-process computation with the normalisers (positive count,
quality-weight sum) averaged over the two ranks, and every rank must finish within a bounded time.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nanodet_ghost.model.loss.gfl_loss as gfl_loss
from nanodet_ghost.config import load_config
from nanodet_ghost.data.synthetic import generate_split
from nanodet_ghost.model import build_model
from nanodet_ghost.model.loss.gfl_loss import GFLLoss

import ddp_worker
from ddp_worker import run_two_ranks
from trainer_helpers import write_config


def expected_per_rank(loss_fn: GFLLoss, per_rank_inputs, monkeypatch) -> list:
    """Single-process losses (and raw gradients) of each rank's (raw, targets, input_hw), with the
    normalisers replaced by their mean over the ranks."""
    local = []
    monkeypatch.setattr(gfl_loss, "reduce_normalisers", lambda v: local.append(v.clone()) or v)
    for raw, targets, input_hw in per_rank_inputs:
        loss_fn(raw, targets, input_hw)
    mean = torch.stack(local).mean(dim=0)
    monkeypatch.setattr(gfl_loss, "reduce_normalisers", lambda v: mean)
    expected = []
    for raw, targets, input_hw in per_rank_inputs:
        raw = raw.clone().requires_grad_(True)
        losses = loss_fn(raw, targets, input_hw)
        losses["loss"].backward()
        expected.append(({k: v.detach() for k, v in losses.items()}, raw.grad))
    return expected


@pytest.mark.parametrize("case", ["one_empty", "both_empty"])
def test_loss_with_a_rank_without_boxes(case, tmp_path, monkeypatch):
    run_two_ranks("loss", "gfl", case, str(tmp_path), cwd=tmp_path)
    saved = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [s["sentinel"] for s in saved] == [3.0, 3.0]
    loss_fn = GFLLoss(ddp_worker.NUM_CLASSES, reg_max=ddp_worker.REG_MAX)
    for step in range(2):
        inputs = [(raw, targets, ddp_worker.INPUT_HW)
                  for raw, _, targets in (ddp_worker.loss_inputs("gfl", case, r, step) for r in range(2))]
        num_pos = [saved[r]["steps"][step]["losses"]["num_pos"].item() for r in range(2)]
        if case == "one_empty":
            assert num_pos[step] > 0 and num_pos[1 - step] == 0  # the rank with boxes alternates
        else:
            assert num_pos == [0, 0]
        assert [saved[r]["steps"][step]["all_reduces"] for r in range(2)] == [1, 1]
        for r, (losses, grad) in enumerate(expected_per_rank(loss_fn, inputs, monkeypatch)):
            got = saved[r]["steps"][step]
            for key, value in losses.items():
                torch.testing.assert_close(got["losses"][key], value, rtol=1e-6, atol=1e-6,
                                           msg=f"rank {r} step {step} {key}")
            torch.testing.assert_close(got["grad"], grad, rtol=1e-6, atol=1e-6)


def short_val_split(root: Path, last: str) -> Path:
    """5 val images; the last one has no boxes (`background`) or cannot be decoded (`unreadable`)."""
    val = generate_split(root, 5, seed=31)
    ann_path = val / "annotations.json"
    ann = json.loads(ann_path.read_text())
    image = ann["images"][4]
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] != image["id"]]
    ann_path.write_text(json.dumps(ann))
    if last == "unreadable":
        (val / "images" / image["file_name"]).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return ann_path


@pytest.mark.slow
@pytest.mark.parametrize("last", ["background", "unreadable"])
def test_validation_with_a_short_last_batch_without_boxes(last, tiny_coco, tmp_path, monkeypatch):
    # 5 val images, batch 2, 2 ranks: rank 0 gets images 0, 2, 4 and rank 1 gets 1, 3 and a padded
    # repeat of 0, so each rank's last batch holds one image; image 4 has no boxes, or is
    # unreadable so that rank 0's last batch holds no image at all.
    ann_path = short_val_split(tmp_path / "val5", last)
    config = write_config(tiny_coco, tmp_path / "run", {
        "data.val.root": str(ann_path.parent / "images"), "data.val.ann_file": str(ann_path),
        "data.val_batch_size": 2, "train.ema_decay": None,
    })
    run_two_ranks("validate", str(config), str(tmp_path), cwd=tmp_path)
    saved = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    for r in range(2):
        assert saved[r]["metrics"]["val/num_images"] == (5.0 if last == "background" else 4.0)
        assert "val/mAP" in saved[r]["metrics"] and "val/loss" in saved[r]["metrics"]
    steps = [s["records"] for s in saved]
    assert [len(s) for s in steps] == [2, 2]
    assert [len(s[-1]["targets"]) for s in steps] == ([1, 1] if last == "background" else [0, 1])
    if last == "background":
        assert len(steps[0][-1]["targets"][0]["boxes"]) == 0  # rank 0's last batch is all background
    assert steps[1][-1]["losses"]["num_pos"].item() > 0  # while rank 1's has positives

    loss_fn = build_model(load_config(config).model).loss_fn
    for k in range(2):
        inputs = [(steps[r][k]["raw"], steps[r][k]["targets"], steps[r][k]["input_hw"]) for r in range(2)]
        for r, (losses, _) in enumerate(expected_per_rank(loss_fn, inputs, monkeypatch)):
            for key, value in losses.items():
                torch.testing.assert_close(steps[r][k]["losses"][key], value, rtol=1e-5, atol=1e-6,
                                           msg=f"rank {r} step {k} {key}")


@pytest.mark.slow
def test_validation_error_on_rank_zero_ends_every_rank(tiny_coco, tmp_path):
    # COCOeval runs on rank 0 only; its error (an unreadable image under evaluation.strict) must
    # reach rank 1 too, which would otherwise wait for rank 0's result until the timeout.
    ann_path = short_val_split(tmp_path / "val5", "unreadable")
    config = write_config(tiny_coco, tmp_path / "run", {
        "data.val.root": str(ann_path.parent / "images"), "data.val.ann_file": str(ann_path),
        "data.val_batch_size": 2, "evaluation.strict": True,
    })
    rank0, rank1 = run_two_ranks("validate", str(config), str(tmp_path), cwd=tmp_path, check=False)
    assert rank0.returncode != 0 and "EvaluationInputError" in rank0.stderr, rank0.stderr[-3000:]
    assert rank1.returncode != 0 and "failed on rank 0: EvaluationInputError" in rank1.stderr, rank1.stderr[-3000:]
