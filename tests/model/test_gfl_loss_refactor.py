"""`GFLLoss` gives the same losses and gradients as before its split (frozen copy beside this file)."""
from __future__ import annotations

import pytest
import torch

from nanodet_ghost.model.loss.gfl_loss import GFLLoss

from gfl_loss_reference import reference_gfl_loss

NUM_CLASSES, REG_MAX = 4, 7


def random_targets(generator: torch.Generator, batch: int, input_hw, max_boxes: int = 6):
    """Per image 0..max_boxes random boxes inside the input, sometimes an ignore region."""
    h, w = input_hw
    targets = []
    for _ in range(batch):
        n = int(torch.randint(0, max_boxes + 1, (1,), generator=generator))
        xy = torch.rand(n, 2, generator=generator) * torch.tensor([w * 0.8, h * 0.8])
        wh = 4 + torch.rand(n, 2, generator=generator) * torch.tensor([w * 0.5, h * 0.5])
        boxes = torch.cat((xy, (xy + wh).minimum(torch.tensor([float(w), float(h)]))), dim=1)
        target = {"boxes": boxes, "labels": torch.randint(0, NUM_CLASSES, (n,), generator=generator)}
        if torch.rand(1, generator=generator) < 0.3:
            target["ignore"] = torch.tensor([[0.0, 0.0, w / 3, h / 3]])
        targets.append(target)
    return targets


def point_count(input_hw) -> int:
    h, w = input_hw
    return sum(-(-h // s) * -(-w // s) for s in (8, 16, 32))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("input_hw", [(64, 64), (96, 160)])
def test_loss_and_gradient_equal_pre_split_version(seed, input_hw):
    generator = torch.Generator().manual_seed(seed)
    batch = 3
    targets = random_targets(generator, batch, input_hw)
    if seed == 0:  # one batch entirely without boxes
        targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * batch
    loss_fn = GFLLoss(NUM_CLASSES, reg_max=REG_MAX, qfl_weight=1.3, dfl_weight=0.3, giou_weight=1.7)
    raw = torch.randn(batch, point_count(input_hw), NUM_CLASSES + 4 * (REG_MAX + 1), generator=generator)
    raw_new = raw.clone().requires_grad_(True)
    raw_old = raw.clone().requires_grad_(True)

    new = loss_fn(raw_new, targets, input_hw)
    old = reference_gfl_loss(loss_fn, raw_old, targets, input_hw)
    if seed != 0:
        assert old["num_pos"].item() > 0, "the random targets should give positives"
    assert set(new) == set(old)
    for key in old:
        torch.testing.assert_close(new[key], old[key], rtol=1e-6, atol=1e-6, msg=key)
    new["loss"].backward()
    old["loss"].backward()
    torch.testing.assert_close(raw_new.grad, raw_old.grad, rtol=1e-6, atol=1e-6)
