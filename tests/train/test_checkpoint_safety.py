"""Checkpoints load with weights_only=True: a code-running pickle is refused with one line and runs nothing.

The malicious files are built here, at test time (nothing malicious is committed): a
pickle whose unpickling would create a canary file.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adc_dist.balancing import make_balancer
from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError
from adc_dist.model.network import ADC
from adc_dist.train import checkpoint as ckpt_io
from malicious import write_malicious_checkpoint


def _real_state() -> dict:
    """A checkpoint as the loop builds it, after one real optimiser step."""
    cfg = TrainConfig(d=8, sparse_tables=False)
    model = ADC.from_config(cfg, 50, [30, 20])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # sparse_tables=False: dense tables
    balancer = make_balancer(cfg, 2)
    users = [torch.arange(4), torch.arange(4)]
    items = [torch.randint(0, 30, (4, 3)), torch.randint(0, 20, (4, 3))]
    sum(x.sum() for x in model(users, items)).backward()
    opt.step()
    history = [{"epoch": 1, "loss_book": np.float64(0.69), "valid_ndcg10_mean": 0.01}]
    best = {"metric": -math.inf, "epoch": -1, "bad_epochs": 0,
            "model": {k: v.clone() for k, v in model.state_dict().items()}}
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "balancer": balancer.state_dict(),
            "epoch": 1, "history": history, "best": best, "config": cfg.to_dict()}


def test_a_checkpoint_round_trips_through_the_safe_format(tmp_path):
    state = _real_state()
    ckpt_io.save(state, tmp_path / "state.pt")
    back = ckpt_io.load(tmp_path / "state.pt")
    for part in ("model", "balancer"):
        assert back[part].keys() == state[part].keys()
        assert all(torch.equal(back[part][k], state[part][k]) for k in state[part])
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    s0, s1 = state["optimizer"]["state"], back["optimizer"]["state"]
    assert all(torch.equal(s0[i]["exp_avg_sq"], s1[i]["exp_avg_sq"]) for i in s0)
    assert back["epoch"] == 1 and back["config"] == state["config"]
    assert back["history"] == [{"epoch": 1, "loss_book": 0.69, "valid_ndcg10_mean": 0.01}]
    assert back["best"]["metric"] == -math.inf and back["best"]["bad_epochs"] == 0
    assert all(torch.equal(back["best"]["model"][k], v) for k, v in state["best"]["model"].items())
    # The file itself needs nothing beyond the weights-only unpickler.
    raw = torch.load(tmp_path / "state.pt", weights_only=True)
    assert set(raw) == {"format", "tensors", "state_json"} and isinstance(raw["state_json"], str)


def test_a_code_running_pickle_is_refused_with_one_line_and_runs_nothing(tmp_path):
    canary = tmp_path / "CANARY"
    write_malicious_checkpoint(tmp_path / "state.pt", canary)
    with pytest.raises(AdcError) as err:
        ckpt_io.load(tmp_path / "state.pt")
    msg = str(err.value)
    assert "\n" not in msg and len(msg) <= 300
    assert "refused" in msg and "posix.system" in msg
    assert not canary.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n", b"PK\x03\x04truncated zip"])
def test_a_damaged_checkpoint_is_one_line(tmp_path, content):
    (tmp_path / "state.pt").write_bytes(content)
    with pytest.raises(AdcError) as err:
        ckpt_io.load(tmp_path / "state.pt")
    assert "\n" not in str(err.value) and len(str(err.value)) <= 300


def test_a_plain_pickle_of_another_program_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "state.pt")  # loads safely, but is not ours
    with pytest.raises(AdcError, match="is not an adc_dist-checkpoint-1 file"):
        ckpt_io.load(tmp_path / "state.pt")


def test_resume_from_a_malicious_local_checkpoint_exits_2_with_one_line(tmp_path, data_root):
    """The whole command: a crafted state.pt in a run directory, then --resume."""
    run = tmp_path / "runs" / "victim"
    (run).mkdir(parents=True)
    (run / "config.yaml").write_text("task: amazon-book-music\n")
    canary = tmp_path / "CANARY"
    write_malicious_checkpoint(run / "checkpoints" / "state.pt", canary)
    proc = subprocess.run([sys.executable, "-m", "adc_dist.train", "--local", "--quiet", "--name", "victim",
                           "--resume", "--storage_path", str(tmp_path / "runs"), "--d", "8", "--epochs", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint") and len(lines[0]) <= 300, proc.stderr
    assert not canary.exists()
    assert not (tmp_path / "runs" / ".victim.lock").exists()  # the lock is released


def test_ctrl_c_inside_a_checkpoint_write_is_an_interrupt_not_a_disk_error(tmp_path):
    """torch.save's zip writer turns an interrupted write into OSError / RuntimeError with the
    KeyboardInterrupt down the chain: the user pressed Ctrl-C, so it must stay an interrupt
    (exit 130), not become 'the disk is full' (exit 2)."""
    import errno

    from adc_dist.train.reporting import _storage_errors

    def interrupted_write():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            try:
                raise OSError(errno.ENOSPC, "write failed")
            except OSError:
                raise RuntimeError("PytorchStreamWriter failed writing file data/0")

    with pytest.raises(KeyboardInterrupt):
        _storage_errors(interrupted_write, tmp_path / "state.pt")

    def full_disk():
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("unexpected pos")

    with pytest.raises(AdcError, match="disk is full"):
        _storage_errors(full_disk, tmp_path / "state.pt")
