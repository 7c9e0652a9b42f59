"""The README's torchrun line, run as written: two processes, one gloo group, no Ray.

torchrun parses its own options with argparse abbreviations, so a bare ``--local`` after the
module was once read as torchrun's ``--local-addr`` and the documented command failed at once.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_torchrun_argv() -> list[str]:
    section = (REPO / "README.md").read_text().split("\n## Train\n", 1)[1].split("\n## ", 1)[0]
    line = next(ln.strip() for ln in section.splitlines() if ln.strip().startswith("torchrun "))
    return shlex.split(line.split("  #", 1)[0])


def test_the_readmes_torchrun_line_trains_with_two_processes(tmp_path, data_root):
    argv = readme_torchrun_argv()
    assert argv[:2] == ["torchrun", "--nproc-per-node=2"] and "--local" in argv
    torchrun = str(Path(sys.executable).parent / "torchrun")
    small = ["--task", "synthetic:2000x2", "--epochs", "1", "--d", "8", "--storage_path", str(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([torchrun, *argv[1:], *small], capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "2 worker(s) on CPU under torchrun" in p.stdout, p.stdout
    assert p.stdout.count("best epoch 1 of 1") == 1  # rank 0 alone prints
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "test_metrics.json").is_file()
