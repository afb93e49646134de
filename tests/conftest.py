"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public real CT DICOM in ../shared/data; tests using it skip when it is absent."""
    if not (SHARED_DATA / "exams").is_dir():
        pytest.skip(f"real CT data not found at {SHARED_DATA} (it is not part of the repository)")
    return SHARED_DATA
