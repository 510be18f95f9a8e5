"""Typed config loading: typos, wrong types and missing fields fail at load time."""
import pytest

from nanodet_ghost.config import ConfigError, load_config
from nanodet_ghost.paths import CONFIG_DIR

DEFAULT = CONFIG_DIR / "nanodet_ghost_320.yml"


def test_default_config_loads():
    cfg = load_config(DEFAULT)
    assert cfg.model.head.num_classes == 80 == len(cfg.data.class_names)
    assert list(cfg.model.backbone.out_stages) == [4, 6, 9]


def test_misspelled_key_names_key_and_file(tmp_path):
    text = DEFAULT.read_text().replace("reg_max: 7", "reg_maks: 7")
    path = tmp_path / "typo.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "reg_maks" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_type_names_key(tmp_path):
    path = tmp_path / "type.yml"
    path.write_text(DEFAULT.read_text().replace("num_classes: 80", "num_classes: eighty"))
    with pytest.raises(ConfigError, match=r"model.head.num_classes"):
        load_config(path)


def test_missing_required_section(tmp_path):
    path = tmp_path / "nodata.yml"
    path.write_text("model:\n  head:\n    num_classes: 3\n")
    with pytest.raises(ConfigError, match="data"):
        load_config(path)


def test_override_typo_and_value():
    cfg = load_config(DEFAULT, ["model.head.num_classes=3", "train.max_epochs=5"])
    assert cfg.model.head.num_classes == 3 and cfg.train.max_epochs == 5
    with pytest.raises(ConfigError, match="nuum_classes"):
        load_config(DEFAULT, ["model.head.nuum_classes=3"])


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yml"):
        load_config(path)


@pytest.mark.parametrize("override, key", [
    ("data.augment.scale=[1.4,0.6]", "data.augment.scale"),
    ("data.augment.mosaic_scale=[0,2]", "data.augment.mosaic_scale"),
    ("data.augment.mosaic_scale=[1.2]", "data.augment.mosaic_scale"),
    ("data.augment.mosaic=1.5", "data.augment.mosaic"),
    ("data.augment.multi_scale=[1.25,0.75]", "data.augment.multi_scale"),
    ("data.augment.multi_scale=[-0.5,1.0]", "data.augment.multi_scale"),
])
def test_bad_augment_ranges_name_key_and_file(tmp_path, override, key):
    path = tmp_path / "augment.yml"
    path.write_text(DEFAULT.read_text())
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert key in str(err.value) and str(path) in str(err.value)
    load_config(path, ["data.augment.mosaic_scale=[1.2,2.8]", "data.augment.mosaic=0.5",
                       "data.augment.multi_scale=[0.75,1.25]"])
