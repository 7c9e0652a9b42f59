"""Shared test settings: where the real data is, and quiet, small Ray runtimes."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# tests/synthetic.py is imported by name (also by spawned worker processes).
sys.path.insert(0, str(TESTS))

# The real data: CI points ADC_DATA_ROOT at ../shared/data; fall back to it beside the repo.
# The README's test command gives it relative (ADC_DATA_ROOT=../shared/data): like every
# entry point (adc_dist.inputs.paths), make it absolute before any test starts Ray, whose workers
# run elsewhere. tests/cli/test_relative_paths.py runs the commands with it relative.
DATA_ROOT = Path(os.environ.get("ADC_DATA_ROOT") or REPO.parent / "shared" / "data").resolve()
os.environ["ADC_DATA_ROOT"] = str(DATA_ROOT)
# Split caches of this test session go to a fresh directory, never the user's ~/.cache
# (set at import, so Ray workers started by tests inherit it too). Removed when pytest exits:
# every run left 3.5 MB behind in /tmp before (216 of them on one box).
if "ADC_CACHE_DIR" not in os.environ:
    os.environ["ADC_CACHE_DIR"] = tempfile.mkdtemp(prefix="adc_test_cache_")
    atexit.register(shutil.rmtree, os.environ["ADC_CACHE_DIR"], ignore_errors=True)

# OpenMP threads that spin while waiting make small torch ops 20-50x slower when the two
# cores are shared (spawned ranks, Ray workers); set before any test imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Ray, when a test starts it: no auth token, no preemption watcher, fast health checks.
for key, value in {"RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
                   "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(key, value)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "amazon4_cdtf" / "demo_amazon.mat").is_file():
        pytest.fail(f"the real data is missing at {DATA_ROOT}: set ADC_DATA_ROOT to ../shared/data")
    return DATA_ROOT


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The session's split cache: tasks are prepared once, read many times."""
    return Path(os.environ["ADC_CACHE_DIR"])


@pytest.fixture
def one_torch_thread():
    """These tensors are tiny: on a loaded 2-core machine two OpenMP threads made them
    tens of times slower (threads wait for a descheduled sibling), so use one, then restore."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- Two lanes under ``pytest -n 2`` (the README's test command) ---------------------------
# One xdist worker runs every file that starts Ray, one after another; the other runs the
# remaining files, each whole. Two Ray runtimes at once on two cores starve each other's
# start-ups and health checks (six at once timed out the raylet), while a Ray run alone leaves
# about a third of the two cores idle (waiting on its processes): the rest of the suite fits
# largely in that time. On the 2-core box the whole suite took 1303 s in one process and
# 800 s in these two lanes, the same afternoon.
# xdist's own ``--dist loadgroup`` would do this from ``xdist_group`` marks, but it passes the
# group by rewriting ``item._nodeid``, which pytest 9.2 no longer reads (pytest-xdist#1386):
# the marks are silently ignored. So the lanes are drawn here, from the files themselves.
RAY_LANE = "ray"


@functools.cache
def starts_ray(test_file: str) -> bool:
    """Whether a test file (a path relative to the repository) has tests marked ``ray``."""
    return "pytest.mark.ray" in (REPO / test_file).read_text()


@pytest.hookimpl(optionalhook=True)  # xdist's hook: pytest -p no:xdist still runs
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class RayLane(LoadScopeScheduling):
        """Files are the units of work, Ray's files one unit; that unit goes out first: it is
        the longest chain of the suite (about three quarters of it on two cores)."""

        def _split_scope(self, nodeid: str) -> str:
            test_file = nodeid.split("::", 1)[0]
            return RAY_LANE if starts_ray(test_file) else test_file

        def _assign_work_unit(self, node) -> None:
            if RAY_LANE in self.workqueue:
                self.workqueue.move_to_end(RAY_LANE, last=False)
            super()._assign_work_unit(node)

    return RayLane(config, log)


def pytest_collection_modifyitems(config, items):
    """The lanes read the files' text; a ``ray`` mark that text does not show (one set by a
    hook, say) would put a Ray test in the other lane: refuse it instead of running it so."""
    for item in items:
        if item.get_closest_marker("ray") and not starts_ray(item.nodeid.split("::", 1)[0]):
            raise pytest.UsageError(f"{item.nodeid} is marked ray, but its file does not say "
                                    "pytest.mark.ray: tests/conftest.py could not keep it in the Ray lane")
