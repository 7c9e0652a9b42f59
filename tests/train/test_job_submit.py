"""The README's "Submit it as a Ray job" section, run as written against a head started here.

The head and the client use the README's `RAY_AUTH_MODE=token` and its token command (the
test's HOME is its own, so the token in ~/.ray/auth_token is too), the job command is the
README's line,
and the job's default storage must be an absolute path under that HOME, never Ray's
temporary copy of the working directory. The working directory is a copy of the checkout
with runs/ and sweeps/ in it: the upload must leave them out (.gitignore).
The only changes to the README's commands are this test's own ports and temp dir (another
Ray on this machine must not collide with it), and `--block` to own the head's processes.
The test stops only its own session's processes: never a global `ray stop`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from procs import free_port, kill_session, ray_cli

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]


def readme_job_section_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Submit it as a Ray job", 1)[1].split("\n## ", 1)[0]
    return [ln[4:].split("  #", 1)[0].strip() for ln in section.splitlines() if ln.startswith("    ")]


def readme_job_section() -> dict[str, str]:
    """The README's job commands by what they do: auth, data, start, submit."""
    lines = readme_job_section_lines()
    by = {"auth": "RAY_AUTH_MODE", "data": "ADC_DATA_ROOT", "token": "ray get-auth-token", "start": "ray start --head",
          "submit": "ray job submit", "stop": "ray stop"}
    return {k: next(ln for ln in lines if ln.startswith(("export " + v, v))) for k, v in by.items()}


@pytest.fixture
def checkout_copy(tmp_path):
    """The files `git` would see (tracked and untracked, not ignored), plus runs/ and sweeps/ contents."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    dest = tmp_path / "checkout"
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dest / f)
    for junk in ("runs/old/big.bin", "sweeps/old/trials.parquet"):
        (dest / junk).parent.mkdir(parents=True)
        (dest / junk).write_bytes(b"x" * 1000)
    return dest


@pytest.fixture
def ray_head(tmp_path, data_root):
    cmds = readme_job_section()
    assert cmds["auth"] == "export RAY_AUTH_MODE=token" and "realpath" in cmds["data"]
    order = list(readme_job_section_lines())
    assert [order.index(cmds[k]) for k in ("data", "auth", "token", "start", "submit")] == sorted(
        order.index(cmds[k]) for k in ("data", "auth", "token", "start", "submit"))
    home = tmp_path / "home"
    home.mkdir()
    # The job's `python` is looked up on the head's PATH: make it this interpreter's, as an
    # activated venv does (pytest may be run as .venv/bin/python -m pytest without one).
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "HOME": str(home), "PATH": path, "ADC_DATA_ROOT": str(data_root), "RAY_AUTH_MODE": "token"}
    token = shlex.split(cmds["token"].split(">")[0])
    subprocess.run(ray_cli(*token[1:]), env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    gcs, dash = free_port(), free_port()
    temp_dir = Path("/tmp") / f"rayjob{os.getpid()}"  # Ray wants a short socket path
    start = shlex.split(cmds["start"])[1:]  # the README's `ray start --head ...`, then our isolation
    head = subprocess.Popen(
        ray_cli(*start, "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
                "--object-store-memory", str(200 * 2**20), "--temp-dir", str(temp_dir), "--disable-usage-stats"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 90
        while True:  # the job API answers once the dashboard is up
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except OSError as e:
                if getattr(e, "code", None) in (401, 403):  # up, and asking for the token
                    break
                if time.time() > deadline or head.poll() is not None:
                    pytest.fail("the Ray head did not come up within 90 s")
                time.sleep(1)
        yield address, env, cmds, temp_dir
    finally:
        # The head leads its own session: a graceful stop of its group, then every process of the
        # session (Ray's workers have groups of their own), so nothing of it outlives the test.
        # A graceful stop of a 2-core head takes 30 s and more; the test is over, so 5 s is its grace.
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        kill_session(head.pid)
        head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(argv: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    deadline = time.time() + 90
    while True:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
        # The dashboard answers before its job agent is registered (slowly, on a loaded
        # machine); Ray says "try again later" then, and so do we.
        if "No available agent" not in proc.stderr + proc.stdout or time.time() > deadline:
            return proc
        time.sleep(3)


def test_the_readmes_job_runs_as_written_into_an_absolute_default_storage(ray_head, checkout_copy):
    address, env, cmds, temp_dir = ray_head
    argv = shlex.split(cmds["submit"])
    argv[argv.index("--address") + 1] = address
    assert argv[:2] == ["ray", "job"] and "--working-dir" in argv and argv[argv.index("--working-dir") + 1] == "."
    proc = _submit(ray_cli(*argv[1:]), env, checkout_copy)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "succeeded" in proc.stdout.lower()
    runs = Path(env["HOME"]) / "adc_dist" / "runs"
    m = re.search(r"run dir (\S+)", proc.stdout)
    assert m, proc.stdout[-3000:]
    run_dir = Path(m.group(1))
    assert run_dir.parent == runs, run_dir  # absolute, printed at start, not in Ray's temporary copy
    assert (run_dir / "summary.json").is_file() and (run_dir / "history.parquet").is_file()
    assert "smoke test passed" in proc.stdout and "Traceback" not in proc.stdout

    # What the job saw of the working directory: the checkout without runs/ and sweeps/. The
    # job ran in Ray's unpacked copy of the upload, on this (the head) node under the head's
    # --temp-dir; read it there rather than submitting a second job to list it (one job less).
    unpacked = [p for p in (temp_dir / "session_latest" / "runtime_resources" / "working_dir_files")
                .glob("_ray_pkg_*") if p.is_dir()]  # (beside it: the package's .zip.lock)
    assert len(unpacked) == 1, unpacked  # the README's one job, one upload
    seen = sorted(p.name for p in unpacked[0].iterdir())
    assert "adc_dist" in seen and "README.md" in seen
    assert "runs" not in seen and "sweeps" not in seen, seen
