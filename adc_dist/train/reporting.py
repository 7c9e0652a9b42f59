"""Where the per-worker loop sends its metrics and checkpoints.

The loop (``adc_dist.loop.fit``) knows nothing of Ray: it talks to a ``Reporter``. The
local one keeps checkpoints in the run directory (in-process runs, torchrun tests); the
Ray Train one hands them to ``ray.train.report`` so that Ray persists them and restarts
the worker group from the latest one after a failure. Ray is imported lazily so that
the in-process path never pays for it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

CHECKPOINT_FILE = "state.pt"


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    # Write beside the target and rename: a crash mid-write never leaves a torn checkpoint.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> dict[str, Any]:
    # weights_only=False: the state holds RNG states and plain Python history rows we wrote.
    return torch.load(path, map_location="cpu", weights_only=False)


class Reporter(Protocol):
    rank: int
    world: int

    def device(self, use_gpu: bool) -> torch.device: ...

    def report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        """Every rank calls it once per epoch; ``checkpoint`` matters on rank 0 only."""

    def load_checkpoint(self) -> dict[str, Any] | None: ...

    def log(self, line: str) -> None:
        """Progress output: printed by rank 0 only."""


class LocalReporter:
    """In-process (or torchrun) runs: the checkpoint lives at ``<run_dir>/checkpoints/state.pt``."""

    def __init__(self, run_dir: str | os.PathLike | None, *, quiet: bool = False):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.quiet = quiet
        self.rank, self.world = _rank_world()
        self.history: list[dict[str, Any]] = []

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoints" / CHECKPOINT_FILE

    def device(self, use_gpu: bool) -> torch.device:
        if use_gpu:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")

    def report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        self.history.append(dict(metrics))
        if checkpoint is not None and self.rank == 0 and self.checkpoint_path is not None:
            _save_atomic(checkpoint, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any] | None:
        path = self.checkpoint_path
        if path is None or not path.is_file():
            return None
        return _load(path)

    def log(self, line: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(line, flush=True)


class RayTrainReporter:
    """Inside a Ray Train worker: checkpoints go through ``ray.train.report``."""

    def __init__(self, *, quiet: bool = False):
        import ray.train

        self._train = ray.train
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.quiet = quiet

    def device(self, use_gpu: bool) -> torch.device:
        if use_gpu:
            import ray.train.torch

            return ray.train.torch.get_device()
        return torch.device("cpu")

    def report(self, metrics: dict[str, Any], checkpoint: dict[str, Any] | None) -> None:
        # Every rank must call ray.train.report (it is a barrier); only rank 0 attaches the
        # checkpoint, since the state is identical on all ranks.
        if checkpoint is not None and self.rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(checkpoint, Path(tmp) / CHECKPOINT_FILE)
                self._train.report(metrics, checkpoint=self._train.Checkpoint.from_directory(tmp))
        else:
            self._train.report(metrics)

    def load_checkpoint(self) -> dict[str, Any] | None:
        ckpt = self._train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return _load(Path(d) / CHECKPOINT_FILE)

    def log(self, line: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(line, flush=True, file=sys.stdout)

