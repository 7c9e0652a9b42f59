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

from adc_dist.train import checkpoint as ckpt_io
from adc_dist.train.checkpoint import CHECKPOINT_FILE
from adc_dist.train.run_dir import storage_error, write_local


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    # Written beside the target and renamed: a crash mid-write never leaves a torn checkpoint.
    _storage_errors(lambda: write_local(path, lambda f: ckpt_io.save(state, f)), path)


def load_reported_checkpoint(ckpt: Any) -> dict[str, Any] | None:
    """The state in a checkpoint Ray Train or Tune hands back (None when there is none)."""
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return ckpt_io.load(Path(d) / CHECKPOINT_FILE)


def save_checkpoint_file(state: dict[str, Any], directory: Path) -> None:
    """The checkpoint file in a temporary directory that Ray then persists."""
    _storage_errors(lambda: ckpt_io.save(state, directory / CHECKPOINT_FILE), directory / CHECKPOINT_FILE)


def _storage_errors(write, path: Path) -> None:
    """Run ``write()``; a full disk or unwritable path becomes one AdcError line naming ``path``.

    torch.save turns an OSError inside its zip writer into a RuntimeError ("unexpected
    pos"), with the OSError as its context: the chain is searched for it.
    """
    try:
        write()
    except (OSError, RuntimeError) as e:
        chain: list[BaseException] = []
        link: BaseException | None = e
        while link is not None and len(chain) < 32:
            chain.append(link)
            link = link.__cause__ or link.__context__
        # Ctrl-C inside torch.save surfaces as the zip writer's OSError/RuntimeError with the
        # KeyboardInterrupt further down the chain: it is an interrupt (exit 130), not a disk error.
        if any(isinstance(c, KeyboardInterrupt) for c in chain):
            raise KeyboardInterrupt from e
        cause = next((c for c in chain if isinstance(c, OSError)), None)
        if cause is None:
            raise
        raise storage_error(str(path), cause, what="write the checkpoint") from None


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
        return ckpt_io.load(path)

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
                save_checkpoint_file(checkpoint, Path(tmp))
                self._train.report(metrics, checkpoint=self._train.Checkpoint.from_directory(tmp))
        else:
            self._train.report(metrics)

    def load_checkpoint(self) -> dict[str, Any] | None:
        return load_reported_checkpoint(self._train.get_checkpoint())

    def log(self, line: str) -> None:
        if self.rank == 0 and not self.quiet:
            print(line, flush=True, file=sys.stdout)

