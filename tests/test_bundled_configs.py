"""The shipped configs are package data: found by name, by the README's `config/NAME.yml`, or as a
`_base_:` of a user's file; a name that is neither a file nor a bundled config lists the bundled ones."""
from __future__ import annotations

from pathlib import Path

import pytest

from nanodet_ghost import paths
from nanodet_ghost.cli import UsageError, config_path
from nanodet_ghost.config import ConfigError, load_config
from nanodet_ghost.paths import CONFIG_DIR, bundled_config, bundled_configs, resolve_config_path


def test_every_config_file_is_bundled() -> None:
    files = sorted(p.stem for p in CONFIG_DIR.glob("*.yml"))
    assert files and bundled_configs() == files
    setup = (paths.REPO_ROOT / "setup.py").read_text()
    assert '"configs/*.yml"' in setup  # package_data of the wheel


@pytest.mark.parametrize("given", ["bccd_ghost_320", "bccd_ghost_320.yml", "config/bccd_ghost_320.yml",
                                   "configs/bccd_ghost_320.yml"])
def test_a_bundled_name_resolves_to_the_packaged_file(given: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no file of that name here
    assert config_path(given) == str(CONFIG_DIR / "bccd_ghost_320.yml")
    assert load_config(given).data.input_size == load_config(CONFIG_DIR / "bccd_ghost_320.yml").data.input_size


@pytest.mark.parametrize("given", ["other/bccd_ghost_320.yml", "/abs/config/bccd_ghost_320.yml", "bccd_ghost_320.json",
                                   "nope"])
def test_other_paths_are_not_bundled_names(given: str) -> None:
    assert bundled_config(given) is None


def test_a_file_wins_over_a_bundled_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yml").write_text("train: {max_epochs: 1}\n")
    assert resolve_config_path("quickstart.yml") == "quickstart.yml"


def test_an_unknown_name_lists_the_bundled_configs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        config_path("bccd_ghost_32")
    message = str(err.value)
    assert message.startswith("config file not found: bccd_ghost_32 ") and "\n" not in message
    assert all(name in message for name in bundled_configs())
    with pytest.raises(FileNotFoundError, match="bundled configs: "):
        load_config("bccd_ghost_32")


def test_a_users_file_starts_from_a_bundled_config(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yml"
    mine.write_text("_base_: bccd_ghost_320.yml\ntrain:\n  max_epochs: 3\n")
    cfg = load_config(mine)
    assert cfg.train.max_epochs == 3
    assert list(cfg.data.class_names) == list(load_config("bccd_ghost_320").data.class_names)
    mine.write_text("_base_: missing.yml\n")
    with pytest.raises(ConfigError, match=r"_base_ 'missing.yml' not found .*bundled configs: .*bccd_ghost_320"):
        load_config(mine)


def test_installed_the_project_folder_is_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    """From a wheel there is no checkout around the package: the data is looked for beside the
    current folder, not beside site-packages."""
    assert paths.is_checkout() and paths.project_root() == paths.REPO_ROOT
    site = tmp_path / "site-packages"
    site.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(paths, "REPO_ROOT", site)
    monkeypatch.chdir(work)
    monkeypatch.delenv(paths.DATA_ENV_VAR, raising=False)
    assert not paths.is_checkout()
    assert paths.project_root() == work
    assert paths.shared_data_root() == tmp_path / "shared" / "data"
    monkeypatch.setenv(paths.DATA_ENV_VAR, str(tmp_path / "data"))
    assert paths.shared_data_root() == tmp_path / "data"
