"""The README's commands with a RELATIVE ``ADC_DATA_ROOT``, from another working directory,
with an empty download cache: train and tune through Ray (``compare --quick`` is run the same way,
relative data root and all, by tests/compare/test_compare.py's quick comparison: one comparison
run, not two).

Ray Train V2 runs each worker, and Tune each trial, in a directory of its own; a relative
path that reaches them unchanged points nowhere, the data is "missing" and a download is
attempted (no network here). Every entry point therefore resolves the paths first
(adc_dist.inputs.paths). These runs are small but real (Ray starts twice): the training run's
output is also checked for being quiet -- our lines, no Ray tracebacks -- and the sweep, run
with ``--verbose``, for showing Ray's own lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

from procs import elsewhere as elsewhere_dir, nothing_downloaded


TINY_SPACE = {"fixed": {"d": 8, "epochs": 2, "batch_size": 4096, "negatives": 1, "topk": [10],
                        "early_stop_metric": "ndcg@10"},
              "search": {"gamma": {"grid": [0.0, 1.5]}}, "tune": {"scheduler": "fifo"}}


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory, data_root):
    """The README's smoke test, quiet (``rel``), and a ``--verbose`` tune sweep with a relative space
    file (``tune``), each from its own working directory: started together, as two users' commands
    would be, so that their Ray start-ups and fits overlap. (A third run, the smoke test with
    ``--verbose``, went: three Ray start-ups at once on two cores took 150-190 s, and ``--verbose``
    reaches Ray the same way from both entry points, ``ray_output.init_kwargs``.)
    name -> (cwd, finished process)."""
    commands = {"rel": ("adc_dist.train", "--smoke-test", "--epochs", "1", "--name", "rel"),
                "tune": ("adc_dist.tune", "--space", "spaces/tiny.yaml", "--tasks", "amazon-music-video",
                         "--set", "epochs=1", "--name", "rel", "--storage", "sw", "--verbose")}
    runs = {}
    try:
        for name, (module, *argv) in commands.items():
            cwd, env = elsewhere_dir(tmp_path_factory.mktemp(name), data_root)
            if name == "tune":
                (cwd / "spaces").mkdir()
                (cwd / "spaces" / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE))
            runs[name] = cwd, subprocess.Popen([sys.executable, "-m", module, *argv], cwd=cwd, env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        done = {}
        for name, (cwd, proc) in runs.items():
            out, err = proc.communicate(timeout=600)
            done[name] = cwd, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for _, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_train_with_a_relative_data_root_is_quiet_and_writes_under_the_working_directory(readme_runs):
    cwd, proc = readme_runs["rel"]
    out = _ok(proc).stdout
    run_dir = cwd / "runs" / "rel"
    assert f"run dir {run_dir}" in out and f"run directory: {run_dir}" in out
    assert (run_dir / "history.parquet").is_file()
    assert re.search(r"^epoch\s+1\b", out, re.M), out  # the per-epoch line reached the driver
    assert "recall@10" in out and "smoke test passed" in out
    # Quiet: our lines only -- no tracebacks, no Ray banners; a screenful at most.
    both = out + proc.stderr
    assert "Traceback" not in both and "Started a local Ray instance" not in both, both
    assert len(both.strip().splitlines()) <= 15, both
    nothing_downloaded(cwd)


def test_tune_with_a_relative_data_root_and_space(readme_runs):
    cwd, proc = readme_runs["tune"]
    _ok(proc)
    trials = pd.read_parquet(cwd / "sw" / "rel" / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "ok").all(), trials[["status", "error"]]
    assert Path(trials["data_root"].iloc[0]).is_absolute()
    assert re.search(r"trials: 100%.*2/2 \[\d\d:\d\d<\d\d:\d\d", proc.stderr), proc.stderr  # the ETA bar
    assert not tracebacks_but_rays_shutdown(proc.stdout + proc.stderr), proc.stdout + proc.stderr
    nothing_downloaded(cwd)


def tracebacks_but_rays_shutdown(text: str) -> list[str]:
    """The tracebacks in ``--verbose`` output (which forwards the trial actors' own output),
    less Ray's own at shutdown: an actor of a finished trial that Ray's SIGTERM reaches inside
    a garbage-collector callback prints one ending in ray/_private/worker.py's sigterm_handler
    raising SystemExit (seen once in a CI run under load, both trials ok). A traceback of ours
    in a trial would also fail the trial, which the caller checks as well."""
    blocks = re.split(r"(?=Traceback \(most recent call last\):)", text)[1:]
    heads = ["\n".join(b.splitlines()[:15]) for b in blocks]
    return [h for h in heads if not ("in sigterm_handler" in h and "SystemExit" in h)]


def test_rays_shutdown_traceback_is_told_apart_from_others():
    rays = ("(run_trial pid=1) Traceback (most recent call last):\n(run_trial pid=1)   File \"weakrefset.py\", "
            "line 39, in _remove\n(run_trial pid=1)   File \"ray/_private/worker.py\", line 1063, in "
            "sigterm_handler\n(run_trial pid=1) SystemExit: 1\n")
    ours = "Traceback (most recent call last):\n  File \"adc_dist/train/loop.py\", line 9\nValueError: bad\n"
    assert tracebacks_but_rays_shutdown("trials: 100%\n" + rays) == []
    assert len(tracebacks_but_rays_shutdown(rays + ours)) == 1
    assert tracebacks_but_rays_shutdown(ours)[0].endswith("ValueError: bad")


def test_verbose_shows_rays_own_lines(readme_runs):
    _, proc = readme_runs["tune"]
    _ok(proc)
    both = proc.stdout + proc.stderr
    assert "Started a local Ray instance" in both, both[-3000:]  # Ray's start-up line, hidden by default
    assert "done in" in proc.stdout and "trials: 100%" in proc.stderr  # ... and our own lines stay
