"""Loading MATLAB .mat files with one clear error for a file that is not one."""

from __future__ import annotations

from pathlib import Path

import scipy.io

from adc_dist.errors import AdcError


def loadmat(path: Path, variables: list[str]) -> dict:
    """The named variables of the .mat file at ``path``; AdcError if unreadable or one is absent."""
    try:
        m = scipy.io.loadmat(path, variable_names=variables)
    except (ValueError, TypeError, OSError, NotImplementedError) as e:
        raise AdcError(f"{path}: not a readable MATLAB v5 .mat file ({e})") from None
    missing = [v for v in variables if v not in m]
    if missing:
        raise AdcError(f"{path}: variable(s) {', '.join(missing)} not found in the .mat file")
    return m
