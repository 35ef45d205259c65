"""Connector folders: where custom connectors live by default, and requirements.txt messages."""

from __future__ import annotations

import sys
from pathlib import Path

from agnes.extract.connectors import ConnectorInfo, check_requirements, list_connectors
from agnes.settings import BUILTIN_CONNECTORS_DIR, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_custom_connectors_default_to_connectors_custom(tmp_path: Path) -> None:
    s = Settings.load({"DATA_DIR": str(tmp_path)})  # nothing configured: no file, no env
    assert s.connectors.custom_dir is None
    assert s.custom_connectors_dir == ROOT / "connectors" / "custom" == BUILTIN_CONNECTORS_DIR / "custom"


def test_custom_connectors_dir_from_env_and_file(tmp_path: Path) -> None:
    env = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_CUSTOM_CONNECTORS_DIR": str(tmp_path / "mine")})
    assert env.custom_connectors_dir == tmp_path / "mine"
    cfg = tmp_path / "config" / "instance.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f"connectors:\n  custom_dir: {tmp_path / 'from_file'}\n", encoding="utf-8")
    assert Settings.load({"DATA_DIR": str(tmp_path)}).custom_connectors_dir == tmp_path / "from_file"


def _connector(tmp_path: Path, requirements: str) -> ConnectorInfo:
    folder = tmp_path / "needy"
    folder.mkdir()
    (folder / "extractor.py").write_text("print('hi')\n")
    (folder / "requirements.txt").write_text(requirements)
    return ConnectorInfo("needy", folder, "custom")


def test_requirements_with_only_pip_options_never_suggest_an_empty_install(tmp_path: Path) -> None:
    info = _connector(tmp_path, "--index-url https://pypi.example.com/simple\n-r other.txt\n")
    message = check_requirements(info)
    assert message is not None
    assert "--index-url https://pypi.example.com/simple (pip options are not supported" in message
    assert "-r other.txt" in message
    assert "plain requirement line" in message and str(info.requirements) in message
    assert "pip install '" not in message and not message.rstrip().endswith("pip install")
    assert "pip install  " not in message and "pip install ." not in message


def test_requirements_with_options_and_missing_packages_name_the_packages(tmp_path: Path) -> None:
    info = _connector(tmp_path, "--index-url https://pypi.example.com/simple\nsurely-not-installed-pkg==1.0\n")
    message = check_requirements(info)
    assert "RUN pip install 'surely-not-installed-pkg==1.0'" in message
    assert f"{sys.executable} -m pip install 'surely-not-installed-pkg==1.0'" in message
    assert "--index-url" in message  # the unsupported line is still named


def test_satisfied_requirements_give_no_message(tmp_path: Path) -> None:
    assert check_requirements(_connector(tmp_path, "duckdb==1.5.5\n# a comment\n\n")) is None


def test_list_connectors_handles_a_missing_custom_folder(tmp_path: Path) -> None:
    infos = list_connectors(BUILTIN_CONNECTORS_DIR, tmp_path / "does-not-exist")
    assert {i.name for i in infos} >= {"sample", "csv"} and all(i.origin == "builtin" for i in infos)
