"""Helpers of the data-layer tests (a module with a unique name: test modules import it)."""

from __future__ import annotations

from pathlib import Path


def leftovers(cache: Path) -> list[Path]:
    """Files in a cache dir: after a failed prepare there must be none (no partial cache)."""
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
