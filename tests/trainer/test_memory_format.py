"""channels_last is a layout choice only: same loss, same gradients, same checkpoint values."""
import copy

import torch
from omegaconf import OmegaConf

from nanodet_ghost.model import build_model
from nanodet_ghost.trainer.module import DetectorModule

from trainer_helpers import tiny_config


def _module(cfg, channels_last: bool) -> DetectorModule:
    torch.manual_seed(0)
    return DetectorModule(build_model(cfg.model), {"name": "AdamW"}, {"name": "cosine"},
                          ema_decay=0.99, ema_warmup=1, channels_last=channels_last)


def test_channels_last_matches_contiguous_training_step(tiny_coco, tmp_path):
    cfg = tiny_config(tiny_coco, tmp_path / "cl")
    nhwc, nchw = _module(cfg, True), _module(cfg, False)
    conv = nhwc.model.backbone.conv_stem.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert nhwc.ema.module.backbone.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    batch = {
        "images": torch.randn(2, 3, 96, 128, generator=generator),
        "targets": [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
                    {"boxes": torch.tensor([[40.0, 8.0, 120.0, 90.0]]), "labels": torch.tensor([0])}],
        "metas": [{}, {}],
    }
    losses = []
    for module in (nhwc, nchw):
        module.train()
        loss = module.training_step(batch, 0)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)
    # oneDNN's fp32 convolutions sum in a layout-dependent order; on some CPUs (seen on an AMX
    # Xeon) the two layouts' gradients then differ by up to a few percent in the layers where
    # train-mode BatchNorm over a 3x4 map cancels most of the gradient. So each layout is held to
    # the same bar against a float64 computation instead of bit-comparing the two.
    reference = copy.deepcopy(nchw.model).double().train()
    raw = reference(batch["images"].double())
    reference.loss(raw, batch["targets"], tuple(batch["images"].shape[-2:]))["loss"].backward()
    truth = dict(reference.named_parameters())
    for module in (nhwc, nchw):
        grads = dict(module.model.named_parameters())
        flat = torch.cat([grads[n].grad.double().flatten() for n in truth])
        flat_truth = torch.cat([p.grad.flatten() for p in truth.values()])
        assert (flat - flat_truth).norm() / flat_truth.norm() < 5e-3
        for name, p in truth.items():
            if p.grad.norm() < 1e-6 * flat_truth.norm():
                continue  # gradients that are zero up to round-off
            cosine = torch.nn.functional.cosine_similarity(grads[name].grad.double().flatten(), p.grad.flatten(), dim=0)
            assert cosine > 0.999, f"{name}: gradient direction off (cosine {cosine:.5f})"

    # The saved values load into a plain (contiguous) detector and give the same outputs.
    plain = build_model(OmegaConf.to_container(cfg.model)).eval()
    plain.load_state_dict(nhwc.model.state_dict())
    nhwc.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(batch["images"]), nhwc.model(batch["images"].contiguous(
            memory_format=torch.channels_last)), rtol=1e-4, atol=1e-4)
