"""Shared by the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tiny_tensors_one_thread(one_torch_thread):
    """Every model test runs on one torch thread (tests/conftest.py says why)."""
    yield
