"""NanoDetPlusLoss with the auxiliary guidance: the same losses, assignments and gradients as NanoDet.

- against plus_oracle.npz (NanoDet's figures, written by reference/make_plus_oracle.py);
- live against $NANODET_SRC on fresh weights and outputs (skipped without it);
Contracts (empty batch, images without boxes, no candidate, ignore regions, AGM detaching,
`drop_training_parts`) are in test_plus_loss_contracts.py.

Losses: |ours - NanoDet| / |NanoDet| <= 1e-5 per term; assignments identical. Gradients, per
parameter tensor (`plus_cases.grad_differences`): `max |ours - NanoDet| / max |NanoDet|` and
`max |ours - NanoDet| / (largest NanoDet gradient of the part)`.

- Live (both sides in this process, same kernels): both <= 1e-5 (measured: mostly bit for bit,
  at most 3.2e-6 per tensor).
- Against the npz (NanoDet ran on another machine, maybe with other CPU kernels): part-relative
  <= 1e-5 and per-tensor <= 1e-4. Kernel rounding alone moves some gradients by ~1e-5 of
  themselves: BN biases whose gradient nearly cancels in the next batch-statistics BN (2.5e-5
  measured with channels_last convs against the contiguous oracle, 1e-5 with two threads).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
from nanodet_plus_run import nanodet_or_skip, run_loss_case, run_model_case  # noqa: E402
from plus_cases import (  # noqa: E402
    LOSS_CASES, LOSS_HW, MODEL_EPOCHS, build_ours, grad_differences, loss_inputs, model_images_lowres,
    model_targets, parts, randomize_model_, run_ours_loss, run_ours_model, unpack, upsample_images)

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")  # NanoDet's priors, live tests

ORACLE = Path(__file__).resolve().parent / "reference" / "plus_oracle.npz"
LOSS_RTOL = 1e-5
GRAD_RTOL = 1e-5  # part-relative, and per tensor in the live tests
GRAD_RTOL_PER_TENSOR_ORACLE = 1e-4


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors: on a busy machine, two OpenMP threads wait on each other for seconds per step.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def oracle() -> Dict[str, object]:
    with np.load(ORACLE) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["meta"] = json.loads(str(arrays["meta"]))
    return arrays


def oracle_model(oracle):
    model = build_ours()
    weights = unpack(oracle["model.weights"], oracle["meta"]["layout"]["weights"])
    for part, module in parts(model).items():
        module.load_state_dict({k[len(part) + 1:]: v for k, v in weights.items() if k.startswith(part + ".")})
    return model


def assert_same(ours: Dict[str, object], ref_losses: Dict[str, float], ref_assignments: torch.Tensor,
                ref_grads: Dict[str, torch.Tensor], per_tensor_rtol: float = GRAD_RTOL) -> None:
    assert torch.equal(ours["assignments"], ref_assignments.long())
    assert set(ours["losses"]) == set(ref_losses)
    for key, value in ref_losses.items():
        assert abs(ours["losses"][key] - value) <= LOSS_RTOL * abs(value), (key, ours["losses"][key], value)
    assert set(ours["grads"]) == set(ref_grads)
    worst = {k: v for k, v in grad_differences(ours["grads"], ref_grads).items()
             if v[0] > per_tensor_rtol or v[1] > GRAD_RTOL}
    assert not worst, worst


@pytest.mark.parametrize("case", list(MODEL_EPOCHS))
def test_model_matches_nanodet_oracle(oracle, case):
    images = upsample_images(torch.from_numpy(oracle["model.images_lowres"]).float())
    ours = run_ours_model(oracle_model(oracle), images, model_targets(), MODEL_EPOCHS[case])
    grads = unpack(oracle[f"{case}.grads"], oracle["meta"]["layout"][f"{case}.grads"])
    assert_same(ours, oracle["meta"]["losses"][case], torch.from_numpy(oracle[f"{case}.assignments"]), grads,
                GRAD_RTOL_PER_TENSOR_ORACLE)


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_matches_nanodet_oracle(oracle, case):
    raw = torch.from_numpy(oracle[f"{case}.raw"]).float()
    aux_raw = torch.from_numpy(oracle[f"{case}.aux_raw"]).float() if f"{case}.aux_raw" in oracle else None
    assert (aux_raw is not None) == (case == "loss_aux")
    _, _, targets = loss_inputs(case, torch.Generator().manual_seed(0))  # only the fixed targets
    ours = run_ours_loss(raw, aux_raw, targets)
    grads = unpack(oracle[f"{case}.grads"], oracle["meta"]["layout"][f"{case}.grads"])
    assert_same(ours, oracle["meta"]["losses"][case], torch.from_numpy(oracle[f"{case}.assignments"]), grads)


def test_oracle_detach_epoch_changes_gradients_not_losses(oracle):
    # Detaching changes where the auxiliary loss sends gradients, not the forward pass.
    before, after = (oracle["meta"]["losses"][c] for c in MODEL_EPOCHS)
    assert before == after
    grads = [unpack(oracle[f"{c}.grads"], oracle["meta"]["layout"][f"{c}.grads"]) for c in MODEL_EPOCHS]
    assert not torch.equal(grads[0]["backbone.stem.0.0.weight"], grads[1]["backbone.stem.0.0.weight"])
    assert torch.equal(grads[0]["aux_head.gfl_cls.weight"], grads[1]["aux_head.gfl_cls.weight"])


@pytest.mark.parametrize("seed", [1, 2])
def test_model_matches_nanodet_live(seed):
    nd = nanodet_or_skip()
    gen = torch.Generator().manual_seed(seed)
    model = build_ours()
    randomize_model_(model, gen)
    images, targets = upsample_images(model_images_lowres(gen)), model_targets()
    for case, epoch in MODEL_EPOCHS.items():
        ref = run_model_case(nd, model, images, targets, epoch)
        assert_same(run_ours_model(model, images, targets, epoch), ref["losses"], ref["assignments"], ref["grads"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_loss_matches_nanodet_live(seed):
    nd = nanodet_or_skip()
    gen = torch.Generator().manual_seed(seed)
    for case in LOSS_CASES:
        raw, aux_raw, targets = loss_inputs(case, gen)
        ref = run_loss_case(nd, raw, aux_raw, targets, LOSS_HW)
        assert_same(run_ours_loss(raw, aux_raw, targets), ref["losses"], ref["assignments"], ref["grads"])
