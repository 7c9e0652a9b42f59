"""Preparing many tasks shows a tqdm bar with an ETA on stderr; the per-task lines stay readable."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def test_prepare_of_several_tasks_draws_a_bar_with_an_eta(tmp_path, data_root):
    env = {**os.environ, "ADC_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "adc_dist.data", "prepare", "amazon-book-music,amazon-music-video"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    # tqdm's closing frame: 100%, 2/2 steps, elapsed<remaining.
    assert re.search(r"prepare: 100%.*2/2 \[\d\d:\d\d<\d\d:\d\d", proc.stderr), proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines[0].startswith("[1/2] amazon-book-music: built") and lines[1].startswith("[2/2] amazon-music-video")
    assert lines[-1].startswith("2 task(s) ready in")
