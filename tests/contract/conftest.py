"""Fixtures for the contract suite: valid extracts built with the public helper."""

from __future__ import annotations

from pathlib import Path

import pytest
from contract_tests.fixtures import build_valid_extract

from .helpers import BEFORE_NOW


@pytest.fixture
def extract(tmp_path: Path) -> Path:
    """A valid extract with three local tables (parquet file, parquet dir, base table)."""
    return build_valid_extract(tmp_path / "extract", extracted_at=BEFORE_NOW)


@pytest.fixture
def remote_extract(tmp_path: Path) -> Path:
    """A valid extract that also has a remote view over alias `pg`."""
    return build_valid_extract(tmp_path / "extract", remote=True, extracted_at=BEFORE_NOW)
