"""Files an attacker could plant in shared run storage, built at test time (none is committed).

Each holds a pickle whose unpickling runs ``touch <canary>``: a test asserts the canary
never appears.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch


class Canary:
    """Unpickling this runs ``touch <path>``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def code_running_pickle(canary: Path) -> bytes:
    return pickle.dumps(Canary(canary))


def write_malicious_checkpoint(path: Path, canary: Path) -> None:
    """A state.pt that would run code under torch.load(weights_only=False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Canary(canary), "epoch": 1}, path)
    assert not canary.exists()
