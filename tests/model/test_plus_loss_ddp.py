"""NanoDetPlusLoss under 2-process gloo DDP: one all-reduce per forward on every rank, also on a
rank whose images have no boxes, and each rank's losses equal the single-process ones with the
normalisers `[num_pos, main weight sum, aux weight sum]` averaged over the ranks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

import nanodet_ghost.model.loss.plus_loss as plus_loss
from nanodet_ghost.model.loss.plus_loss import NanoDetPlusLoss

import plus_ddp_worker as worker

WORKER = Path(worker.__file__)
RANK_TIMEOUT_S = 240  # generous for 2 busy cores; a desynchronised run hangs far longer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(case: str, out_dir: Path) -> List[dict]:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), case, str(out_dir)], cwd=out_dir, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    try:
        for r, proc in enumerate(procs):
            _, err = proc.communicate(timeout=RANK_TIMEOUT_S)
            assert proc.returncode == 0, f"rank {r} failed:\n{err[-3000:]}"
    except subprocess.TimeoutExpired:
        pytest.fail(f"a rank did not finish within {RANK_TIMEOUT_S} s (collectives out of step?)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]


def expected_per_rank(per_rank_inputs, monkeypatch) -> list:
    """Single-process losses and gradients of each rank's inputs, normalisers averaged over ranks."""
    loss_fn = NanoDetPlusLoss(worker.NUM_CLASSES, worker.STRIDES, worker.REG_MAX)
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
    saved = run_two_ranks(case, tmp_path)
    assert [s["sentinel"] for s in saved] == [3.0, 3.0]
    for step in range(2):
        assert [saved[r]["steps"][step]["all_reduces"] for r in range(2)] == [1, 1]
        num_pos = [saved[r]["steps"][step]["losses"]["num_pos"].item() for r in range(2)]
        if case == "one_empty":
            assert num_pos[step] > 0 and num_pos[1 - step] == 0  # the rank with boxes alternates
        else:
            assert num_pos == [0, 0]
        inputs = [worker.loss_inputs(case, r, step) for r in range(2)]
        for r, (losses, grad, aux_grad) in enumerate(expected_per_rank(inputs, monkeypatch)):
            got = saved[r]["steps"][step]
            assert set(got["losses"]) == set(losses)
            for key, value in losses.items():
                torch.testing.assert_close(got["losses"][key], value, rtol=1e-6, atol=1e-6,
                                           msg=f"rank {r} step {step} {key}")
            torch.testing.assert_close(got["grad"], grad, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(got["aux_grad"], aux_grad, rtol=1e-6, atol=1e-6)
