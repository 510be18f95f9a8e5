"""channels_last is a layout choice only: same loss, same gradients, same checkpoint values."""
import torch
from omegaconf import OmegaConf

from nanodet_ghost.model import build_model
from nanodet_ghost.trainer.module import DetectorModule

from trainer_helpers import tiny_config


def _module(cfg, channels_last: bool) -> DetectorModule:
    torch.manual_seed(0)
    return DetectorModule(OmegaConf.to_container(cfg.model), {"name": "AdamW"}, {"name": "cosine"},
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
    for (name, a), (_, b) in zip(nhwc.model.named_parameters(), nchw.model.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)

    # The saved values load into a plain (contiguous) detector and give the same outputs.
    plain = build_model(OmegaConf.to_container(cfg.model)).eval()
    plain.load_state_dict(nhwc.model.state_dict())
    nhwc.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(batch["images"]), nhwc.model(batch["images"].contiguous(
            memory_format=torch.channels_last)), rtol=1e-4, atol=1e-4)
