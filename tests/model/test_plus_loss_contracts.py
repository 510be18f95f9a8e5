"""NanoDetPlusLoss, the auxiliary guidance and Detector.forward_train: contracts.

Empty batches, images without boxes, a GT with no candidate, ignore regions, the assignment coming
from the auxiliary head, detaching from `detach_epoch` on, `drop_training_parts`, and the training
step. Equality with NanoDet is in test_plus_loss.py.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from nanodet_ghost.model.head.aux_head import AuxiliaryHead
from nanodet_ghost.model.head.decode import grid_points
from nanodet_ghost.model.loss.gfl_loss import GFLLoss
from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss
from nanodet_ghost.trainer.module import DetectorModule

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
from plus_cases import (  # noqa: E402
    DETACH_EPOCH, MODEL_HW, build_ours, model_images_lowres, model_targets, randomize_model_, record_assignments,
    upsample_images)

NUM_CLASSES, REG_MAX, STRIDES, HW = 3, 7, (8, 16, 32, 64), (32, 64)
NUM_POINTS = grid_points(HW, STRIDES)[0].shape[0]
BOXES = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 28.0], [40.0, 8.0, 62.0, 30.0]]), "labels": torch.tensor([0, 2])}


def empty():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def head_output(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, NUM_POINTS, NUM_CLASSES + 4 * (REG_MAX + 1), generator=g).requires_grad_(True)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()  # tiny tensors: threads only wait on each other
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    m = build_ours()
    randomize_model_(m, torch.Generator().manual_seed(5))
    return m


@pytest.fixture(scope="module")
def images():
    return upsample_images(model_images_lowres(torch.Generator().manual_seed(6)))


@pytest.mark.parametrize("with_aux", [False, True])
def test_empty_batch(with_aux):
    raw = head_output(0, 0)
    aux = head_output(0, 1) if with_aux else None
    losses = NanoDetPlusLoss(NUM_CLASSES)(raw, [], HW, aux_raw=aux)
    assert all(torch.isfinite(v) and v.item() == 0.0 for v in losses.values())
    assert ("aux_loss_qfl" in losses) == with_aux
    losses["loss"].backward()
    assert raw.grad is not None and raw.grad.shape == raw.shape


def test_images_without_boxes_train_only_classification():
    raw, aux = head_output(2, 0), head_output(2, 1)
    losses = NanoDetPlusLoss(NUM_CLASSES)(raw, [empty(), empty()], HW, aux_raw=aux)
    assert losses["num_pos"].item() == 0
    for key in ("loss_giou", "loss_dfl", "aux_loss_giou", "aux_loss_dfl"):
        assert losses[key].item() == 0.0
    assert losses["loss_qfl"].item() > 0 and losses["aux_loss_qfl"].item() > 0
    losses["loss"].backward()
    for out in (raw, aux):
        assert torch.isfinite(out.grad).all()
        assert out.grad[..., :NUM_CLASSES].abs().sum() > 0 and out.grad[..., NUM_CLASSES:].abs().sum() == 0


def test_gt_without_candidate_gives_no_positive():
    lonely = {"boxes": torch.tensor([[1.0, 1.0, 7.0, 7.0]]), "labels": torch.tensor([1])}  # no point inside
    losses = NanoDetPlusLoss(NUM_CLASSES)(head_output(1, 0), [lonely], HW, aux_raw=head_output(1, 1))
    assert losses["num_pos"].item() == 0 and losses["loss_giou"].item() == 0.0
    assert torch.isfinite(losses["loss"])


def test_aux_assigns_and_both_heads_learn_from_it():
    loss_fn = NanoDetPlusLoss(NUM_CLASSES)
    calls = record_assignments(loss_fn)
    aux = head_output(2, 1)
    raws = [head_output(2, 0), head_output(2, 7)]
    results = [loss_fn(raw, [BOXES, empty()], HW, aux_raw=aux) for raw in raws]
    assert torch.equal(calls[0], calls[2]) and torch.equal(calls[1], calls[3])  # the main head does not matter
    losses = results[0]
    assert losses["num_pos"].item() > 0
    assert all(torch.isfinite(v) for v in losses.values())
    total = sum(v for k, v in losses.items() if k.startswith(("loss_", "aux_loss_")))
    torch.testing.assert_close(losses["loss"], total)
    losses["loss"].backward()
    for out in (raws[0], aux):
        assert out.grad[..., :NUM_CLASSES].abs().sum() > 0 and out.grad[..., NUM_CLASSES:].abs().sum() > 0


def test_aux_equal_to_main_gives_the_self_assigned_losses_twice():
    raw = head_output(2, 0)
    loss_fn = NanoDetPlusLoss(NUM_CLASSES)
    alone = loss_fn(raw, [BOXES, empty()], HW)
    assert set(alone) == {"loss", "loss_qfl", "loss_dfl", "loss_giou", "num_pos"}
    twice = loss_fn(raw, [BOXES, empty()], HW, aux_raw=raw)
    for key in ("loss_qfl", "loss_dfl", "loss_giou"):
        assert twice[key].item() == alone[key].item() == twice[f"aux_{key}"].item()


def test_ignore_region_mutes_negatives_only():
    raw = head_output(1, 0)
    loss_fn = NanoDetPlusLoss(NUM_CLASSES)
    everywhere = torch.tensor([[-1.0, -1.0, 65.0, 33.0]])  # every point strictly inside (some lie on x = 0)
    assert loss_fn(raw, [{**empty(), "ignore": everywhere}], HW)["loss"].item() == 0.0
    plain = loss_fn(raw, [BOXES], HW)
    muted = loss_fn(raw, [{**BOXES, "ignore": everywhere}], HW)
    assert muted["num_pos"] == plain["num_pos"] and muted["loss_giou"] == plain["loss_giou"]
    assert 0 < muted["loss_qfl"].item() < plain["loss_qfl"].item()  # the positives' QFL stays


def test_shape_errors_and_gfl_loss_refusing_an_aux_head():
    loss_fn = NanoDetPlusLoss(NUM_CLASSES)
    with pytest.raises(ValueError, match="auxiliary head output"):
        loss_fn(head_output(1, 0), [BOXES], HW, aux_raw=head_output(2, 1))
    with pytest.raises(ValueError, match="points"):
        loss_fn(head_output(1, 0), [BOXES], (64, 64))
    with pytest.raises(ValueError, match="an auxiliary head needs the dsl assigner"):
        GFLLoss(NUM_CLASSES, STRIDES)(head_output(1, 0), [BOXES], HW, aux_raw=head_output(1, 1))


def test_center_offsets():
    assert NanoDetPlusLoss(NUM_CLASSES).center_offset == 0.0
    assert GFLLoss(NUM_CLASSES).center_offset == 0.5
    centres, _ = grid_points(HW, STRIDES)
    corners, _ = grid_points(HW, STRIDES, offset=0.0)
    assert centres[0].tolist() == [4.0, 4.0] and corners[0].tolist() == [0.0, 0.0]


def test_losses_are_fp32_under_bf16():
    raw, aux = head_output(1, 0).bfloat16(), head_output(1, 1).bfloat16()
    losses = NanoDetPlusLoss(NUM_CLASSES)(raw, [BOXES], HW, aux_raw=aux)
    assert all(v.dtype == torch.float32 for v in losses.values())


def test_aux_head_layout_and_groups():
    head = AuxiliaryHead(NUM_CLASSES, in_channels=16, feat_channels=8, stacked_convs=2, num_groups=4)
    feats = [torch.randn(2, 16, s, 2 * s) for s in (4, 2, 1, 1)]
    assert head(feats).shape == (2, 32 + 8 + 2 + 2, NUM_CLASSES + 32)
    with pytest.raises(ValueError, match="multiple of num_groups"):
        AuxiliaryHead(NUM_CLASSES, in_channels=16, feat_channels=12, num_groups=8)


def test_forward_train_output_is_forward_and_drop_leaves_forward_identical(model, images):
    m = copy.deepcopy(model).eval()
    raw, losses = m.forward_train(images, model_targets())
    assert "aux_loss_qfl" in losses
    before = m(images)
    assert torch.equal(raw, before)
    assert any(k.startswith(m.TRAINING_ONLY_PREFIX) for k in m.state_dict())
    m.drop_training_parts()
    assert m.aux is None and not any(k.startswith(m.TRAINING_ONLY_PREFIX) for k in m.state_dict())
    assert torch.equal(m(images), before)
    raw, losses = m.forward_train(images, model_targets())  # now the head assigns from itself
    torch.testing.assert_close(losses["loss"], m.loss(before, model_targets(), MODEL_HW)["loss"], rtol=0, atol=0)


@pytest.mark.parametrize("epoch", [0, DETACH_EPOCH])
def test_aux_branch_detaches_from_detach_epoch(model, images, epoch):
    m = copy.deepcopy(model).train()
    _, losses = m.forward_train(images, model_targets(), epoch=epoch)
    (losses["aux_loss_qfl"] + losses["aux_loss_giou"] + losses["aux_loss_dfl"]).backward()
    reached = {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
               for name, part in (("backbone", m.backbone), ("neck", m.neck), ("head", m.head),
                                  ("aux", m.aux))}
    assert reached == {"backbone": epoch < DETACH_EPOCH, "neck": epoch < DETACH_EPOCH, "head": False, "aux": True}


def test_main_losses_do_not_train_the_aux_branch(model, images):
    m = copy.deepcopy(model).train()
    _, losses = m.forward_train(images, model_targets(), epoch=0)
    (losses["loss_qfl"] + losses["loss_giou"] + losses["loss_dfl"]).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in m.aux.parameters())


@pytest.mark.filterwarnings("ignore:You are trying to")
def test_training_step_trains_the_aux_branch(model, images):
    module = DetectorModule(copy.deepcopy(model), {"name": "AdamW"}, {"name": "cosine"}, ema_decay=None,
                            channels_last=False)
    loss = module.training_step({"images": images, "targets": model_targets(), "metas": [{}] * 3}, 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in module.model.aux.parameters())
