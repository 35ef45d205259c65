"""Fixtures shared by the API tests of sources (custom connectors on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.source_helpers import write_connector


@pytest.fixture
def custom_dir(tmp_path: Path) -> Path:
    """A custom-connectors folder holding the test connector (`AGNES_CUSTOM_CONNECTORS_DIR`)."""
    folder = tmp_path / "custom-connectors"
    write_connector(folder)
    return folder
