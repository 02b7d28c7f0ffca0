"""Shared fixtures: the real MNIST files of ../shared/data (CI has them beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding MNIST/raw/*.gz: $SIMVP_DATA_DIR, else ../shared/data."""
    for candidate in (os.environ.get("SIMVP_DATA_DIR"), SHARED_DATA):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    pytest.skip("MNIST files not found: set SIMVP_DATA_DIR or place ../shared/data beside the checkout")
