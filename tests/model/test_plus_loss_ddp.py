"""NanoDetPlusLoss under 2-process gloo DDP: one all-reduce per forward on every rank, also on a
rank whose images have no boxes, and each rank's losses equal the single-process ones with the
normalisers `[num_pos, main weight sum, aux weight sum]` averaged over the ranks."""
from __future__ import annotations

import pytest
import torch

import nanodet_ghost.model.loss.plus_loss as plus_loss
from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss

import ddp_worker as worker
from ddp_worker import run_two_ranks

STRIDES = worker.STRIDES["plus"]


def expected_per_rank(per_rank_inputs, monkeypatch) -> list:
    """Single-process losses and gradients of each rank's inputs, normalisers averaged over ranks."""
    loss_fn = NanoDetPlusLoss(worker.NUM_CLASSES, STRIDES, worker.REG_MAX)
    local = []
    monkeypatch.setattr(plus_loss, "reduce_normalisers", lambda v: local.append(v.clone()) or v)
    for raw, aux_raw, targets in per_rank_inputs:
        loss_fn(raw, targets, worker.INPUT_HW, aux_raw=aux_raw)
    mean = torch.stack(local).mean(dim=0)
    monkeypatch.setattr(plus_loss, "reduce_normalisers", lambda v: mean)
    expected = []
    for raw, aux_raw, targets in per_rank_inputs:
        raw, aux_raw = raw.clone().requires_grad_(True), aux_raw.clone().requires_grad_(True)
        losses = loss_fn(raw, targets, worker.INPUT_HW, aux_raw=aux_raw)
        losses["loss"].backward()
        expected.append(({k: v.detach() for k, v in losses.items()}, raw.grad, aux_raw.grad))
    return expected


@pytest.mark.parametrize("case", ["one_empty", "both_empty"])
def test_plus_loss_with_a_rank_without_boxes(case, tmp_path, monkeypatch):
    run_two_ranks("loss", "plus", case, str(tmp_path), cwd=tmp_path)
    saved = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [s["sentinel"] for s in saved] == [3.0, 3.0]
    for step in range(2):
        assert [saved[r]["steps"][step]["all_reduces"] for r in range(2)] == [1, 1]
        num_pos = [saved[r]["steps"][step]["losses"]["num_pos"].item() for r in range(2)]
        if case == "one_empty":
            assert num_pos[step] > 0 and num_pos[1 - step] == 0  # the rank with boxes alternates
        else:
            assert num_pos == [0, 0]
        inputs = [worker.loss_inputs("plus", case, r, step) for r in range(2)]
        for r, (losses, grad, aux_grad) in enumerate(expected_per_rank(inputs, monkeypatch)):
            got = saved[r]["steps"][step]
            assert set(got["losses"]) == set(losses)
            for key, value in losses.items():
                torch.testing.assert_close(got["losses"][key], value, rtol=1e-6, atol=1e-6,
                                           msg=f"rank {r} step {step} {key}")
            torch.testing.assert_close(got["grad"], grad, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(got["aux_grad"], aux_grad, rtol=1e-6, atol=1e-6)
