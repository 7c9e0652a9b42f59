"""The sweep CLI without Ray: every bad spec stops before Ray starts, with one clear message."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adc_dist.tune import driver as T, plan as P
from adc_dist.errors import AdcError

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "tune_spaces" / "smoke.yaml")
PAPER = str(REPO / "tune_spaces" / "paper.yaml")


def plan(tmp_path, *args, **kw):
    kw.setdefault("storage", str(tmp_path))
    return P.plan_sweep(*args, **kw)


def test_dry_run_prints_the_plan_of_the_paper_sweep(tmp_path, data_root, capsys):
    assert T.main(["--space", PAPER, "--tasks", "six", "--storage", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "17 per task x 6 = 102" in out and "amazon-dvd-video" in out
    assert "fifo" in out and "in-process, 1 cpu" in out
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_plan_resolves_resources_and_scheduler(tmp_path, data_root):
    p = plan(tmp_path, SMOKE, "amazon-book-music,amazon-dvd-video", name="s", scheduler="asha",
             num_samples=3, cpus_per_worker=0.5, max_concurrent=4, time_budget_s=60, seed=7,
             set_values={"epochs": 1})
    assert p.tasks == ["amazon-book-music", "amazon-dvd-video"] and p.trials == 2 * 2 * 3
    assert p.resources == {"cpu": 0.5} and p.num_workers == 1
    assert p.space.fixed["epochs"] == 1 and p.space.fixed["cpus_per_worker"] == 0.5
    assert p.results.uri == str(tmp_path / "s") and p.experiment == "run-1"
    multi = plan(tmp_path, SMOKE, "amazon-book-music", num_workers=2, cpus_per_worker=0.5)
    assert multi.resources == {"cpu": 0.01} and multi.space.fixed["num_workers"] == 2


@pytest.mark.parametrize("kw,needle", [
    (dict(tasks="amazon-book-musik"), "unknown task 'amazon-book-musik'"),
    (dict(set_values={"epoch": 3}), "did you mean epochs"),
    (dict(set_values={"gamma": 1.0}), "both fixed and searched"),
    (dict(num_workers=4, cpus_per_worker=1), "would wait forever"),
    (dict(num_workers=2, cpus_per_worker=1), "2 worker(s) x 1 CPUs + 0.01 for the trial = 2.01 CPUs"),
    (dict(gpus_per_worker=0.5, num_workers=2, cpus_per_worker=0.5), "fractional GPUs are for one-worker"),
    (dict(gpus_per_worker=0.25), "no CUDA GPU is visible"),
    (dict(num_samples=0), "--num-samples must be >= 1"),
    (dict(reduction_factor=1.0), "--reduction-factor must be > 1"),
    (dict(resume=True), "--resume needs the --name"),
    (dict(name="a/b"), "--name 'a/b'"),
    (dict(name="nope", resume=True), "there is no sweep 'nope'"),
    (dict(retry_errored=True), "--retry-errored goes with --resume"),
    (dict(storage="s3://bucket/x?endpoint_override=127.0.0.1:9&scheme=http", name="x"), "cannot reach the storage"),
    (dict(storage="s3://bucket/x?endpoint=127.0.0.1:9", name="x"), "cannot open storage"),
])
def test_bad_sweeps_fail_before_ray_starts(tmp_path, data_root, kw, needle, monkeypatch):
    import ray

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # no credential lookup on the network
        monkeypatch.setenv(k, "testing")

    args = {"tasks": "amazon-book-music", **kw}
    with pytest.raises(AdcError, match=None) as e:
        plan(tmp_path, SMOKE, **args)
    assert needle in str(e.value)
    assert not ray.is_initialized()


def test_bad_space_file_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
        search:
          gama: [0, 1.5]
    """))
    r = subprocess.run([sys.executable, "-m", "adc_dist.tune", "--space", str(bad), "--storage", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: unknown config key 'gama' in {bad}: search; did you mean gamma?"]
    assert "Ray" not in r.stdout + r.stderr


def test_existing_sweep_needs_resume_or_extend_and_resume_keeps_the_settings(tmp_path, data_root):
    first = plan(tmp_path, SMOKE, "amazon-book-music", name="sw", num_samples=2, set_values={"epochs": 1})
    T._write_sweep_file(first, {"set_values": {"epochs": 1}})
    saved = json.loads((tmp_path / "sw" / P.SWEEP_FILE).read_text())
    assert saved["experiments"] == ["run-1"] and saved["tasks"] == ["amazon-book-music"]

    with pytest.raises(AdcError, match="already exists"):
        plan(tmp_path, SMOKE, "amazon-book-music", name="sw")
    again = plan(tmp_path, name="sw", resume=True)
    assert again.resume and again.experiment == "run-1" and again.num_samples == 2
    assert again.space.fixed["epochs"] == 1 and again.tasks == ["amazon-book-music"]
    with pytest.raises(AdcError, match="--tasks differ"):
        plan(tmp_path, tasks="amazon-dvd-video", name="sw", resume=True)
    with pytest.raises(AdcError, match="--set is not allowed"):
        plan(tmp_path, name="sw", resume=True, set_values={"epochs": 2})
    with pytest.raises(AdcError, match="keeps the sweep's --max-concurrent"):
        plan(tmp_path, name="sw", resume=True, max_concurrent=3)

    more = plan(tmp_path, PAPER, "amazon-dvd-video", name="sw", extend=True)
    assert more.experiment == "run-2" and not more.resume
