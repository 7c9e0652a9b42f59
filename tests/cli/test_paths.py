"""adc_dist.inputs.paths: what the user typed, against the directory it was typed in."""

from __future__ import annotations

import os
from pathlib import Path

from adc_dist.inputs.paths import absolute, absolutize_env, default_storage, in_ray_job_copy


def test_paths_become_absolute_against_the_current_directory_and_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute("../shared/data") == str(tmp_path.parent / "shared" / "data")
    assert absolute("~/x") == str(Path.home() / "x")
    assert absolute("s3://bucket/runs?endpoint_override=h:1") == "s3://bucket/runs?endpoint_override=h:1"
    assert absolute(None) is None
    env = {"ADC_DATA_ROOT": "data", "ADC_CACHE_DIR": "", "ADC_DATA_MIRROR": "http://127.0.0.1:9/m", "OTHER": "rel"}
    absolutize_env(env)
    assert env == {"ADC_DATA_ROOT": str(tmp_path / "data"), "ADC_CACHE_DIR": "",
                   "ADC_DATA_MIRROR": "http://127.0.0.1:9/m", "OTHER": "rel"}


def test_the_default_storage_leaves_rays_temporary_copy_of_a_jobs_working_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_storage("runs") == str(tmp_path / "runs")
    copy = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert in_ray_job_copy() and not in_ray_job_copy(tmp_path)
    assert default_storage("sweeps") == str(Path.home() / "adc_dist" / "sweeps")
    assert os.path.isabs(default_storage("runs"))
