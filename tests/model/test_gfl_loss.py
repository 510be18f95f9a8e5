"""The GFL objective as a whole: contracts for empty images, ignore regions and gradients."""
import torch

from nanodet_ghost.model.loss.gfl_loss import GFLLoss

NUM_CLASSES, REG_MAX, INPUT_HW = 3, 7, (64, 64)
NUM_POINTS = 8 * 8 + 4 * 4 + 2 * 2


def raw_output(seed: int = 0, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, NUM_POINTS, NUM_CLASSES + 4 * (REG_MAX + 1), requires_grad=True)


def empty_target():
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}


def test_image_without_gt_gives_only_negative_qfl():
    raw = raw_output()
    losses = GFLLoss(NUM_CLASSES)(raw, [empty_target()], INPUT_HW)
    assert losses["loss_dfl"].item() == 0.0 and losses["loss_giou"].item() == 0.0
    assert losses["num_pos"].item() == 0
    # All anchors negative, normalised by max(num_pos, 1) = 1: sum of sigmoid^2-weighted BCE(., 0).
    logits = raw[0, :, :NUM_CLASSES].detach()
    expected = (torch.nn.functional.softplus(logits) * logits.sigmoid() ** 2).sum()
    assert torch.allclose(losses["loss_qfl"], expected, rtol=1e-5)
    losses["loss"].backward()
    assert torch.isfinite(raw.grad).all()
    assert raw.grad[0, :, NUM_CLASSES:].abs().sum() == 0  # no box gradient without GT


def test_positive_image_has_all_terms_and_finite_grads():
    raw = raw_output(batch=2)
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([2])},
        empty_target(),
    ]
    losses = GFLLoss(NUM_CLASSES)(raw, targets, INPUT_HW)
    assert losses["num_pos"].item() > 0
    for key in ("loss_qfl", "loss_dfl", "loss_giou"):
        assert losses[key].item() > 0 and torch.isfinite(losses[key])
    losses["loss"].backward()
    assert torch.isfinite(raw.grad).all()


def test_crowd_region_mutes_negatives_inside_it():
    raw = raw_output()
    crowd = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "ignore": torch.tensor([[0.0, 0.0, 64.0, 64.0]])}
    loss_fn = GFLLoss(NUM_CLASSES)
    muted = loss_fn(raw, [crowd], INPUT_HW)
    assert muted["loss_qfl"].item() == 0.0  # every centre lies in the crowd box
    assert muted["loss"].item() == 0.0


def test_loss_weights_scale_terms():
    raw = raw_output()
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 48.0]]), "labels": torch.tensor([1])}]
    base = GFLLoss(NUM_CLASSES)(raw, targets, INPUT_HW)
    doubled = GFLLoss(NUM_CLASSES, giou_weight=4.0, dfl_weight=0.5, qfl_weight=2.0)(raw, targets, INPUT_HW)
    for key in ("loss_qfl", "loss_dfl", "loss_giou"):
        assert torch.allclose(doubled[key], 2 * base[key])
