"""evaluate_checkpoint wiring (dataset / model stubbed: those parts are tested by their owners)."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nanodet_ghost.cli import EXIT_USAGE
from nanodet_ghost.evaluation import EvaluationInputError, collect_predictions, evaluate_checkpoint
from nanodet_ghost.evaluation import runner

from eval_helpers import CATEGORY_IDS, CLASS_NAMES, perfect_predictions, run_cli, tiny_gt


class FakeSource:
    class_names = CLASS_NAMES
    category_ids = CATEGORY_IDS

    def __len__(self) -> int:
        return 2

    def to_coco(self) -> Dict[str, Any]:
        return tiny_gt()


class FakeDataset:
    source = FakeSource()

    def __len__(self) -> int:
        return 2


def _batches() -> List[Dict[str, Any]]:
    metas = [[dict(image_id=1)], [dict(image_id=torch.tensor(2))]]
    return [dict(images=torch.zeros(1, 3, 8, 8), targets=[], metas=m) for m in metas]


def _perfect_fn(images: torch.Tensor, metas: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    preds = perfect_predictions()
    return [{k: torch.as_tensor(v) for k, v in preds[int(m["image_id"])].items()} for m in metas]


@pytest.fixture
def cfg(monkeypatch) -> Any:
    loader = types.ModuleType("nanodet_ghost.data.loader")
    loader.build_dataset = lambda data_cfg, split: FakeDataset()
    monkeypatch.setitem(sys.modules, "nanodet_ghost.data.loader", loader)
    return OmegaConf.create({"model": {}, "data": {"val": {"format": "coco"}, "test": None,
                                                   "val_batch_size": 2, "num_workers": 0}})


def test_collect_predictions_keys_by_image_id() -> None:
    preds = collect_predictions(_perfect_fn, _batches())
    assert list(preds) == [1, 2] and isinstance(preds[2]["boxes"], np.ndarray)


def test_checkpoint_evaluation_writes_results_and_stats(cfg, monkeypatch, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    monkeypatch.setattr(runner, "_torch_predict_fn", lambda c, path, device, flip_tta: _perfect_fn)
    result = evaluate_checkpoint(cfg, ckpt, "val", out=tmp_path / "r.json",
                                 stats_out=tmp_path / "s.json", device="cpu", batches=_batches())
    assert result.stats[0] == 1.0
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["category_id"] for r in results] == [3, 7, 3]
    assert json.loads((tmp_path / "s.json").read_text())["stats"][0] == 1.0


def test_onnx_path_goes_through_onnx_predictor(cfg, monkeypatch, tmp_path: Path) -> None:
    calls: List[str] = []

    class FakeOnnxPredictor:
        @classmethod
        def from_config(cls, path: str, model_cfg: Any) -> "FakeOnnxPredictor":
            calls.append(path)
            return cls()

        def predict_batch(self, images: np.ndarray, metas: List[Dict[str, Any]]) -> List[Any]:
            assert isinstance(images, np.ndarray)
            return _perfect_fn(torch.from_numpy(images), metas)

    module = types.ModuleType("nanodet_ghost.inference.onnx_predictor")
    module.OnnxPredictor = FakeOnnxPredictor
    monkeypatch.setitem(sys.modules, "nanodet_ghost.inference.onnx_predictor", module)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    result = evaluate_checkpoint(cfg, onnx, "val", device="cpu", batches=_batches())
    assert calls == [str(onnx)] and result.stats[0] == 1.0


def test_bad_checkpoint_inputs(cfg, tmp_path: Path) -> None:
    with pytest.raises(EvaluationInputError, match="checkpoint not found: .*missing.ckpt"):
        evaluate_checkpoint(cfg, tmp_path / "missing.ckpt")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(EvaluationInputError, match="no data.test section"):
        evaluate_checkpoint(cfg, ckpt, "test")


def test_cli_missing_config_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "nope.yml"), str(tmp_path / "x.ckpt"), cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "nope.yml" in proc.stderr


def test_flip_tta_reaches_the_torch_model(cfg, monkeypatch, tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    seen: List[Any] = []
    monkeypatch.setattr(runner, "_torch_predict_fn",
                        lambda c, path, device, flip_tta: seen.append(flip_tta) or _perfect_fn)
    evaluate_checkpoint(cfg, ckpt, "val", device="cpu", batches=_batches(), flip_tta=["h", "v"])
    evaluate_checkpoint(cfg, ckpt, "val", device="cpu", batches=_batches())
    assert seen == [("h", "v"), ()]


def test_flip_tta_refuses_exported_models_and_unmappable_sizes(cfg, tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(EvaluationInputError, match=r"checkpoints \(.ckpt\) only.*model.onnx"):
        evaluate_checkpoint(cfg, onnx, "val", device="cpu", batches=_batches(), flip_tta=("h",))

    from nanodet_ghost.config import load_config
    from nanodet_ghost.model import build_model
    from nanodet_ghost.paths import CONFIG_DIR

    real = load_config(CONFIG_DIR / "bccd_ghost050_d50_pan.yml", ["data.input_size=[100,60]"])
    ckpt = tmp_path / "model.ckpt"
    state = {f"ema.module.{k}": v for k, v in build_model(real.model).state_dict().items()}
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(EvaluationInputError, match=r"model.ckpt with flip TTA: .*100x60 .* multiple of \[8, 16, 32\]"):
        runner._torch_predict_fn(real, ckpt, "cpu", ("h",))


def test_cli_parses_flip_views() -> None:
    from nanodet_ghost.commands.test import parse_args

    assert parse_args(["c.yml", "m.ckpt", "--flip-tta", "h,v,hv"]).flip_tta == ("h", "v", "hv")
    assert parse_args(["c.yml", "m.ckpt"]).flip_tta == ()
    for bad in (["c.yml", "m.ckpt", "--flip-tta", "x"], ["c.yml", "m.ckpt", "--flip-tta", ","],
                ["--ann", "a.json", "--results", "r.json", "--flip-tta", "h"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(bad)
        assert exit_info.value.code == EXIT_USAGE
