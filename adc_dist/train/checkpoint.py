"""Checkpoint files that cannot run code when they are loaded.

One file, ``state.pt``, holds ``{"format", "tensors", "state_json"}``:

    tensors      the model, optimizer and balancer state dicts and the best model so far
    state_json   everything else as a JSON string: epoch, history rows, best metric and
                 epoch, the config

It is read with ``torch.load(weights_only=True)``, whose unpickler accepts only tensors
and plain containers: a crafted file (run storage is often shared, on NFS or S3) is
refused with one line instead of running its code. The plain state is JSON text, so no
Python object of ours needs the unpickler at all. One file (not a .pt beside a .json)
so that one atomic rename replaces a checkpoint as a whole. The loop's checkpoint dict
is split and joined here; the loop never sees the format.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from adc_dist.errors import AdcError

CHECKPOINT_FILE = "state.pt"
FORMAT = "adc_dist-checkpoint-1"
# Top-level keys of the loop's checkpoint that are state dicts (tensors); "best" is mixed:
# its model state dict goes with the tensors, its numbers with the JSON.
TENSOR_KEYS = ("model", "optimizer", "balancer")
BEST_MODEL = "best_model"


def short(path: os.PathLike | str, keep: int = 80) -> str:
    """A path cut to its last ``keep`` characters: error lines stay one short line."""
    s = str(path)
    return s if len(s) <= keep else "..." + s[-keep:]


def _plain(v: Any) -> Any:
    """numpy scalars and the like in history rows: stored as Python numbers."""
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"a checkpoint's plain state holds a {type(v).__name__}, which JSON cannot store")


def _reason(e: Exception) -> str:
    """The informative line of torch's long refusal (e.g. "unsupported GLOBAL posix.system")."""
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(boiler)]
    return (lines[0] if lines else type(e).__name__)[:80]


def encode(state: dict[str, Any]) -> dict[str, Any]:
    """The loop's checkpoint dict -> what ``torch.save`` writes (tensors + one JSON string)."""
    tensors = {k: state[k] for k in TENSOR_KEYS if k in state}
    plain = {k: v for k, v in state.items() if k not in TENSOR_KEYS}
    if "best" in plain:
        best = dict(plain["best"])
        tensors[BEST_MODEL] = best.pop("model", None)
        plain["best"] = best
    # json writes -inf (the best metric before any evaluation) as -Infinity and reads it back.
    return {"format": FORMAT, "tensors": tensors, "state_json": json.dumps(plain, default=_plain)}


def save(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` (a plain file write: callers rename it into place)."""
    torch.save(encode(state), path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """The loop's checkpoint dict from ``path``; AdcError (one line) if it is not a safe one."""
    p = Path(path)
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AdcError(f"checkpoint {short(p)} is missing: the checkpoint directory is incomplete; "
                       f"remove it to fall back to an older one or to start over") from None
    except Exception as e:  # noqa: BLE001 - whatever the unpickler says, the answer is the same
        raise AdcError(f"checkpoint {short(p)} was refused and nothing in it was run ({_reason(e)}); "
                       f"adc_dist did not write it, or it is damaged: remove it") from None
    try:
        if not (isinstance(raw, dict) and raw.get("format") == FORMAT and isinstance(raw.get("tensors"), dict)):
            raise ValueError("no adc_dist format tag")
        tensors, plain = raw["tensors"], json.loads(raw["state_json"])
        if not isinstance(plain, dict) or not all(k in tensors for k in TENSOR_KEYS):
            raise ValueError("missing parts")
    except (TypeError, ValueError) as e:
        raise AdcError(f"checkpoint {short(p)} is not an {FORMAT} file ({str(e)[:60]}; an older adc_dist "
                       f"or another program wrote it): remove it to start over") from None
    state = {**plain, **{k: tensors[k] for k in TENSOR_KEYS}}
    if "best" in state:
        state["best"] = {**state["best"], "model": tensors.get(BEST_MODEL)}
    return state
