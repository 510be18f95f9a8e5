"""The model family as configs: every shipped config builds; bad combinations fail when the config is
loaded, naming the key and the file; the training-only auxiliary head never reaches what is deployed."""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch

from nanodet_ghost.config import AuxHeadConfig, ConfigError, LossConfig, NeckConfig, load_config
from nanodet_ghost.model import LOSSES, NECKS, build_model, count_parameters, load_detector
from nanodet_ghost.model.weights import CheckpointMismatchError
from nanodet_ghost.paths import CONFIG_DIR

CONFIGS = sorted((CONFIG_DIR).glob("*.yml"))
BASE = CONFIG_DIR / "bccd_ghost_320.yml"
PLUS = CONFIG_DIR / "bccd_nanodet_plus_ghost.yml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_builds(path: Path) -> None:
    cfg = load_config(path)
    model = build_model(cfg.model)
    assert count_parameters(model) > 0
    levels = len(cfg.model.backbone.out_stages) + int(cfg.model.neck.num_extra_level)
    assert len(model.head.strides) == levels


BAD_OVERRIDES = [
    (["model.backbone.width=0"], r"model\.backbone: width must be > 0"),
    (["model.backbone.width=-0.5"], r"model\.backbone: width must be > 0"),
    (["model.backbone.depth=0"], r"model\.backbone: depth must lie in \(0, 1\]"),
    (["model.backbone.depth=1.2"], r"model\.backbone: depth must lie in \(0, 1\]"),
    (["model.backbone.out_stages=[4,5,6]"], r"model\.backbone\.out_stages \[4, 5, 6\] give strides \[8, 16, 16\]"),
    (["model.backbone.out_stages=[4,9]", "model.head.strides=[8,32]"], r"model\.backbone\.out_stages \[4, 9\] give strides"),
    (["model.head.strides=[8,16,32,64]"], r"model\.head\.strides \[8, 16, 32, 64\] do not match the neck's levels"),
    (["model.neck.type=ghost_pan", "model.neck.num_extra_level=1"], r"model\.head\.strides \[8, 16, 32\] do not match"),
    (["model.neck.type=fpn"], r"model\.neck\.type: unknown 'fpn', expected one of pan, ghost_pan"),
    (["model.neck.kernel_size=3"], r"model\.neck\.kernel_size is not an argument of PAN"),
    (["model.loss.assigner=ota"], r"model\.loss\.assigner: unknown 'ota', expected one of atss, dsl"),
    (["model.loss.dsl_topk=10"], r"model\.loss\.dsl_topk is not an argument of GFLLoss"),
    (["model.backbone.dynamic_experts=-1"], r"model\.backbone: dynamic_experts"),
]


@pytest.mark.parametrize("overrides, message", BAD_OVERRIDES, ids=lambda v: str(v))
def test_bad_model_overrides_fail_at_load_time(overrides, message) -> None:
    with pytest.raises(ConfigError, match=r"bccd_ghost_320\.yml: " + message):
        load_config(BASE, overrides)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_aux_head_without_dsl_fails_at_load_time_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "aux_atss.yml", f"_base_: {BASE}\nmodel:\n  aux_head:\n    detach_epoch: 5\n")
    with pytest.raises(ConfigError, match=r"aux_atss\.yml: model\.aux_head needs model\.loss\.assigner: dsl"):
        load_config(path)


def test_misspelled_family_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "typo.yml", f"_base_: {PLUS}\nmodel:\n  aux_head:\n    detach_epochs: 5\n")
    with pytest.raises(ConfigError, match=r"typo\.yml: key 'model\.aux_head\.detach_epochs'"):
        load_config(path)


def test_base_chain_merges_in_order_and_reports_missing_and_looping_bases(tmp_path: Path) -> None:
    _write(tmp_path, "middle.yml", f"_base_: {BASE}\nmodel:\n  backbone:\n    width: 0.5\n")
    top = _write(tmp_path, "top.yml", "_base_: middle.yml\ntrain:\n  seed: 7\n")
    cfg = load_config(top)
    assert cfg.model.backbone.width == 0.5 and cfg.train.seed == 7 and cfg.model.head.num_classes == 3
    assert "_base_" not in cfg
    missing = _write(tmp_path, "missing.yml", "_base_: nowhere.yml\n")
    with pytest.raises(ConfigError, match=r"missing\.yml: _base_ 'nowhere\.yml' not found"):
        load_config(missing)
    _write(tmp_path, "a.yml", "_base_: b.yml\n")
    _write(tmp_path, "b.yml", "_base_: a.yml\n")
    with pytest.raises(ConfigError, match=r"chain loops back"):
        load_config(tmp_path / "a.yml")


@pytest.mark.parametrize("schema, registry", [(NeckConfig, NECKS), (LossConfig, LOSSES)])
def test_schema_defaults_equal_the_constructor_defaults(schema, registry) -> None:
    """A key meant for another class is accepted only at its default: the two must agree."""
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    for cls in registry.values():
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name in defaults and param.default is not inspect.Parameter.empty:
                assert defaults[name] == param.default, f"{cls.__name__}.{name}"


def test_aux_head_is_training_only(tmp_path: Path) -> None:
    cfg = load_config(PLUS)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    assert model.aux is not None and isinstance(model.aux.head.num_classes, int)
    without = load_config(PLUS, ["model.aux_head=null"])
    assert count_parameters(model) == count_parameters(build_model(without.model))
    assert count_parameters(model) < sum(p.numel() for p in model.parameters())
    assert AuxHeadConfig().detach_epoch == cfg.model.aux_head.detach_epoch

    ckpt = tmp_path / "plus.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    deployed = load_detector(cfg, ckpt)
    assert deployed.aux is None
    assert not any(k.startswith("aux.") for k in deployed.state_dict())
    x = torch.randn(1, 3, 96, 128)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=0, atol=0)
    # A deploy-only checkpoint (no aux weights) loads into the AGM config for inference as well.
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in deployed.state_dict().items()}}, plain)
    assert load_detector(cfg, plain).aux is None


def test_checkpoint_of_one_member_in_another_gets_the_mismatch_message(tmp_path: Path) -> None:
    small = load_config(CONFIG_DIR / "bccd_ghost050_pan.yml")
    ckpt = tmp_path / "small.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in build_model(small.model).state_dict().items()}}, ckpt)
    with pytest.raises(CheckpointMismatchError, match=r"small\.ckpt: checkpoint does not match the model built "
                                                      r"from the config\n  shape mismatches"):
        load_detector(load_config(BASE), ckpt)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys"):
        load_detector(load_config(PLUS), ckpt)
