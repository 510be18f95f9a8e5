"""Learning-rate plan and weight EMA, without a Trainer."""
import math

import pytest
import torch

from nanodet_ghost.trainer.ema import ModelEMA
from nanodet_ghost.trainer.optim import LRSchedule, build_optimizer


def test_warmup_then_cosine_to_floor():
    factor = LRSchedule("cosine", total_steps=100, steps_per_epoch=10, warmup_steps=10, warmup_ratio=0.1,
                          min_lr_ratio=0.05)
    assert factor(0) == pytest.approx(0.1 * (0.05 + 0.95))  # warmup start, cosine still at 1
    assert factor(5) == pytest.approx((0.1 + 0.9 * 0.5) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 5 / 99))))
    assert factor(50) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    assert factor(98) > 0.05 and factor(99) == pytest.approx(0.05)  # the floor on the last step
    assert factor(500) == pytest.approx(0.05)


def test_multistep_in_epochs():
    factor = LRSchedule("multistep", total_steps=100, steps_per_epoch=10, warmup_steps=0,
                          milestones=[3, 6], gamma=0.1)
    assert factor(29) == 1.0 and factor(30) == pytest.approx(0.1) and factor(60) == pytest.approx(0.01)


def test_unknown_names_fail():
    with pytest.raises(ValueError, match="scheduler"):
        LRSchedule("linear", 10, 1)
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(torch.nn.Linear(2, 2), name="Adam")


def test_norm_and_bias_skip_weight_decay():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = build_optimizer(model, "SGD", lr=0.1, weight_decay=1e-4)
    decayed, plain = optimizer.param_groups
    assert [p.ndim for p in decayed["params"]] == [4] and decayed["weight_decay"] == 1e-4
    assert len(plain["params"]) == 3 and plain["weight_decay"] == 0.0


def test_ema_update_math_and_eval_mode():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, warmup=1)
    before = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    decay = 0.9 * (1 - math.exp(-1))
    assert torch.allclose(ema.module[0].weight, before * decay + model[0].weight * (1 - decay))
    assert int(ema.updates) == 1
    ema.train()
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())

