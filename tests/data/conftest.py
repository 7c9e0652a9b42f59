"""Fixtures of the data-layer tests: the real data (read-only) and small generated files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adc_dist.data import load_task
from adc_dist.data.task_data import TaskData

# CI sets ADC_DATA_ROOT to ../shared/data; without it, the shared folder beside the repo.
SHARED = Path(os.environ.get("ADC_DATA_ROOT") or Path(__file__).resolve().parents[3] / "shared" / "data")


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real datasets, laid out like ../shared/data (never written to)."""
    if not (SHARED / "amazon4_cdtf" / "demo_amazon.mat").is_file():
        pytest.fail(f"the real data is missing at {SHARED}: set ADC_DATA_ROOT to ../shared/data")
    return SHARED


@pytest.fixture(scope="session")
def book_music_cache(tmp_path_factory, shared) -> Path:
    """A cache dir in which amazon-book-music (seed 0) is prepared once for the session."""
    cache = tmp_path_factory.mktemp("book_music_cache")
    load_task("amazon-book-music", data_root=shared, cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def book_music(book_music_cache, shared) -> TaskData:
    return load_task("amazon-book-music", data_root=shared, cache_dir=book_music_cache)
