"""CI runs what the README says: `.ci/run` executes the README's test command as written.

The README's two set-up commands stay at the top (main job, then tests); `.ci/run` reads
the second from README.md itself, so a change to it is what CI runs, and CI fails whenever
a newcomer copying it would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def setup_commands() -> tuple[str, str]:
    """The two indented commands of the README's first section, in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Set up a fresh machine", 1)[1].split("\n## ", 1)[0]
    cmds = [ln[4:] for ln in section.splitlines() if ln.startswith("    ") and not ln.startswith("     ")]
    assert len(cmds) >= 2, section
    return cmds[0], cmds[1]


def test_the_setup_section_comes_first_with_the_main_job_then_the_tests():
    text = (REPO / "README.md").read_text()
    first_section = text.split("\n## ", 2)[1]
    assert first_section.startswith("Set up a fresh machine")
    main_job, tests = setup_commands()
    assert main_job.endswith("&& ADC_DATA_ROOT=../shared/data python -m adc_dist.train"), main_job
    assert tests.endswith("&& ADC_DATA_ROOT=../shared/data python -m pytest -q -n 2"), tests
    assert main_job.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0")


def test_the_test_command_installs_torchrec_so_ci_runs_the_sharded_table_tests():
    # torchrec declares the CUDA fbgemm-gpu: it goes in with --no-deps after the [sharded] extra.
    tests = setup_commands()[1]
    assert "pip install -e '.[test,sharded]' && pip install --no-deps torchrec==1.8.0 &&" in tests, tests


def test_ci_runs_the_readmes_test_command_byte_for_byte():
    proc = subprocess.run(["bash", str(REPO / ".ci" / "run"), "--print-command"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == setup_commands()[1] + "\n"
    script = (REPO / ".ci" / "run").read_text()
    assert 'eval "$cmd"' in script and "export ADC_DATA_ROOT" not in script  # no root of its own
