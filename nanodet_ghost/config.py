"""Typed configuration: dataclass schemas merged with a YAML file through OmegaConf.

Every section maps 1:1 onto constructor arguments (see `nanodet_ghost.model.build_model`,
`nanodet_ghost.data.loader.build_dataset`, `nanodet_ghost.trainer`). A misspelled key, a value of
the wrong type or a missing required field fails at load time with a `ConfigError` that names the
key and the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import omegaconf
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nanodet_ghost.data.config import DataConfig
from nanodet_ghost.paths import bundled_config, bundled_configs, resolve_config_path, shared_data_root

# `${shared_data:}` in a YAML file is the real-data folder ($NANODET_GHOST_DATA, else ../shared/data
# beside the repository), wherever the command is run from.
# OmegaConf 2.4 renamed register_new_resolver to register_resolver (which meant something else before).
_OMEGACONF_2_4 = tuple(int(p) for p in omegaconf.__version__.split(".")[:2]) >= (2, 4)
_register_resolver = OmegaConf.register_resolver if _OMEGACONF_2_4 else OmegaConf.register_new_resolver
_register_resolver("shared_data", lambda: str(shared_data_root()), replace=True)


BASE_KEY = "_base_"


class ConfigError(ValueError):
    """A configuration file (or override) does not match the schema."""


@dataclass
class BackboneConfig:
    """Arguments of `GhostNet`."""

    width: float = 1.0  # channel multiplier, > 0
    depth: float = 1.0  # fraction of GhostBottlenecks kept per stage, in (0, 1]
    out_stages: List[int] = field(default_factory=lambda: [4, 6, 9])
    activation: str = "ReLU"
    dynamic_experts: int = 0  # K expert kernels in GhostModule's primary conv; 0 = plain conv
    pretrained: Optional[str] = None


@dataclass
class NeckConfig:
    """`type` picks the class (`nanodet_ghost.model.NECKS`); the other keys are its arguments.

    Its input channels come from the backbone's `feature_info`. `PAN` takes only `out_channels`;
    setting a key the chosen type does not take is an error.
    """

    type: str = "pan"  # "pan" (NanoDet) or "ghost_pan" (NanoDet-Plus)
    out_channels: int = 96
    kernel_size: int = 5  # ghost_pan: depthwise kernel of the blocks and downsampling convs
    expand: float = 1.0  # ghost_pan: expansion of the Ghost blocks
    num_blocks: int = 1  # ghost_pan: Ghost blocks per fusion
    use_res: bool = False  # ghost_pan: 1x1 residual around each fusion
    num_extra_level: int = 0  # ghost_pan: extra stride-2 outputs (1 adds stride 64)
    activation: str = "LeakyReLU"  # ghost_pan


@dataclass
class HeadConfig:
    """Arguments of `GFLHead` (its input channels come from the neck)."""

    num_classes: int = 80
    feat_channels: int = 96
    stacked_convs: int = 2
    strides: List[int] = field(default_factory=lambda: [8, 16, 32])
    reg_max: int = 7
    kernel_size: int = 3  # depthwise kernel of the tower (NanoDet-Plus: 5)
    # Cell (col, row) of a level predicts from the point ((col + offset) * s, (row + offset) * s):
    # 0.5 = cell centres (GFL/ATSS), 0.0 = NanoDet-Plus's priors. The loss, the post-processor and
    # every export read it from here.
    center_offset: float = 0.5


@dataclass
class LossConfig:
    """QFL + DFL + GIoU. `assigner` picks the objective (`nanodet_ghost.model.LOSSES`): "atss" is
    `GFLLoss` (NanoDet), "dsl" is `NanoDetPlusLoss` (dynamic soft-label assignment, NanoDet-Plus).
    The `atss_*`/`octave_*` keys belong to the first, the `dsl_*` keys to the second.
    """

    assigner: str = "atss"
    qfl_weight: float = 1.0
    qfl_beta: float = 2.0
    dfl_weight: float = 0.25
    giou_weight: float = 2.0
    atss_topk: int = 9
    octave_base_scale: float = 5.0
    dsl_topk: int = 13
    dsl_iou_factor: float = 3.0


@dataclass
class AuxHeadConfig:
    """NanoDet-Plus's assign guidance module (AGM): a copy of the neck and `AuxiliaryHead`, used in
    training only. Needs `loss.assigner: dsl`."""

    feat_channels: int = 192
    stacked_convs: int = 4
    num_groups: int = 32  # GroupNorm groups
    detach_epoch: int = 10  # from this epoch on the AGM no longer trains the backbone and neck


@dataclass
class PostprocessConfig:
    """Arguments of `PostProcessor` (decode + NMS)."""

    score_thr: float = 0.05
    nms_iou: float = 0.6
    nms_pre: int = 1000
    max_detections: int = 100


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    aux_head: Optional[AuxHeadConfig] = None  # training-only; never exported


@dataclass
class OptimizerConfig:
    name: str = "AdamW"  # "AdamW" or "SGD"
    lr: float = 0.001
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD only
    no_decay_norm_bias: bool = True


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # "cosine" or "multistep"
    warmup_steps: int = 300
    warmup_ratio: float = 0.1
    min_lr_ratio: float = 0.05  # cosine floor, as a fraction of lr
    milestones: List[int] = field(default_factory=list)  # multistep, in epochs
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """Arguments of the Lightning module and Trainer."""

    save_dir: str = "work_dirs/run"
    seed: int = 42
    max_epochs: int = 100
    max_time: Optional[str] = None  # "DD:HH:MM:SS", Lightning's max_time
    # "DD:HH:MM:SS": size the run from the clock (trainer/time_budget.py). The epochs, the LR schedule and
    # the validations are planned from the measured pace; max_epochs is only the first guess and
    # max_epochs / val_interval the number of validations.
    time_budget: Optional[str] = None
    max_steps: int = -1
    val_interval: int = 1  # epochs between validations
    log_every_n_steps: int = 10
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    ema_decay: Optional[float] = 0.9998  # None disables weight EMA
    ema_warmup: int = 2000  # steps over which the EMA decay ramps up
    grad_clip: Optional[float] = 35.0
    precision: str = "32"  # "32", "16-mixed", "bf16-mixed"
    channels_last: bool = True  # NHWC weights and images: faster convolutions on CPU and GPU
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    sync_batchnorm: bool = False
    deterministic: bool = False
    load_from: Optional[str] = None  # fine-tune from a checkpoint's weights
    nonfinite_patience: int = 10  # consecutive non-finite losses before aborting
    plots: bool = True  # save_dir/plots/ (results, PR/F1 curves, confusion matrix, ...) and TensorBoard images


@dataclass
class EvaluationConfig:
    metric: str = "val/mAP"
    classwise: bool = True
    strict: bool = False  # an unreadable val/test image is an error, not dropped with its GT
    # COCOeval implementation: "pycocotools" (the reference) or "faster_coco_eval" (the same numbers
    # from C++; pip install 'nanodet_ghost[fast-eval]'). nanodet_ghost.evaluation.backends
    backend: str = "pycocotools"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def _describe(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    msg = getattr(exc, "msg", None) or str(exc).splitlines()[0]
    return f"key '{key}': {msg}" if key else msg


def _config_layers(path: str) -> List[str]:
    """`path` and the files it names with `_base_:` (relative to itself), base first."""
    layers: List[str] = []
    while path is not None:
        if path in layers:
            raise ConfigError(f"{path}: '{BASE_KEY}' chain loops back to itself ({' <- '.join(layers)})")
        layers.append(path)
        try:
            base = (OmegaConf.load(path) or {}).get(BASE_KEY)
        except Exception as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if base is None:
            break
        base_path = os.path.join(os.path.dirname(path), str(base))
        if not os.path.isfile(base_path):
            bundled = bundled_config(str(base))  # a user's file may start from a shipped config
            if bundled is None:
                raise ConfigError(f"{path}: {BASE_KEY} '{base}' not found (looked for {base_path}; "
                                  f"bundled configs: {', '.join(bundled_configs())})")
            base_path = str(bundled)
        path = base_path
    return layers[::-1]


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> DictConfig:
    """Load a YAML config, validate it against `Config` and apply `key=value` overrides.

    `path` is a file or the name of a shipped config (`paths.resolve_config_path`). A file may start
    from another with `_base_: other.yml` (a path relative to the file, else a shipped config's
    name): the base is loaded first and the file's keys are merged over it, as in mmdetection.

    Raises:
        FileNotFoundError: neither a file nor a shipped config.
        ConfigError: unknown key, wrong type or missing required value, a model section that
            cannot be built (`check_model_config`), an unknown `evaluation.backend` or a
            `data.max_missing_fraction` outside [0, 1]; the message names the key and the file
            (or the override).
    """
    path = resolve_config_path(path)
    cfg = OmegaConf.structured(Config)
    for layer in _config_layers(path):
        try:
            user = OmegaConf.load(layer)
        except Exception as exc:  # yaml.YAMLError carries line/column in its message
            raise ConfigError(f"{layer}: not valid YAML: {exc}") from None
        user.pop(BASE_KEY, None)
        try:
            cfg = OmegaConf.merge(cfg, user)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{layer}: {_describe(exc)}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        try:
            cfg.merge_with_dotlist([item])
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override '{item}' (config {path}): {_describe(exc)}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{path}: required key(s) missing: {', '.join(missing)}")
    # Imported here, not at the top: the model pulls in torch, the evaluation pycocotools, which a
    # config alone does not need.
    from nanodet_ghost.data.config import check_augment_config
    from nanodet_ghost.data.image_io import check_max_missing_fraction
    from nanodet_ghost.evaluation.backends import check_backend_name
    from nanodet_ghost.model.build import check_model_config

    try:
        check_model_config(cfg.model)
        check_backend_name(cfg.evaluation.backend)
        check_max_missing_fraction(cfg.data.max_missing_fraction)
        check_augment_config(cfg.data.augment)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    OmegaConf.set_readonly(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML text (saved next to checkpoints)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
