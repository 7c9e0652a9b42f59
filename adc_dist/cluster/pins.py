"""The versions a cluster must run: the ones this checkout is tested with.

A cluster file is checked against the *installed* ray, torch and adc_dist, so a file that
passes here runs the same stack as the tests did.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import metadata


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - the package is installed in CI
        return ""


@lru_cache(maxsize=None)
def ray_version() -> str:
    return _version("ray")


@lru_cache(maxsize=None)
def torch_version() -> str:
    """Without a local build suffix: ``2.13.0+cpu`` -> ``2.13.0``."""
    return _version("torch").split("+")[0]


@lru_cache(maxsize=None)
def adc_version() -> str:
    return _version("adc_dist")


def minor(version: str) -> str:
    """``2.60.1`` -> ``2.60``."""
    return ".".join(version.split(".")[:2])


# A pip requirement or URL that installs adc_dist, and the version it pins (if any).
_ADC_PATTERNS = [
    re.compile(r"adc[_-]dist\s*==\s*(?P<v>[0-9][\w.+-]*)"),
    re.compile(r"adc[_-]dist\S*/archive/(?:refs/tags/)?v?(?P<v>[0-9][\w.+-]*?)\.(?:tar\.gz|zip)"),
    re.compile(r"git\+\S*adc[_-]dist(?:\.git)?@v?(?P<v>[0-9][\w.+-]*)"),
    re.compile(r"adc[_-]dist-(?P<v>[0-9][\w.+]*)-py3"),  # a wheel file name
]


def adc_pin(text: str) -> str | None:
    """The version of adc_dist that ``text`` (a command or requirement) pins, else None."""
    for pat in _ADC_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group("v")
    return None


def installs_adc(text: str) -> bool:
    return bool(re.search(r"\badc[_-]dist\b", text)) and ("install" in text or "@" in text)


_TORCH_PIN = re.compile(r"\btorch\s*==\s*(?P<v>[0-9][\w.]*)(?:\+(?P<local>\w+))?")


def torch_pin(text: str) -> tuple[str, str | None] | None:
    """(version, local tag such as "cu128") that ``text`` pins torch to, else None."""
    m = _TORCH_PIN.search(text)
    return (m.group("v"), m.group("local")) if m else None


def torch_index(text: str) -> str | None:
    """The CUDA tag of a download.pytorch.org index in ``text`` ("cu128", "cpu"), else None."""
    m = re.search(r"download\.pytorch\.org/whl/(\w+)", text)
    return m.group(1) if m else None
