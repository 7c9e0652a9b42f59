"""An AdcError raised inside a Ray Train worker or a Tune trial reaches the user as the same
``error: ...`` line and exit status 2 that it gives in-process (``--local``), not as Ray's
tracebacks.

The error is provoked where only the worker sees it: a ``file:`` task under an empty data
root, with the driver's own data check (``prepare_task``) skipped.
"""

from __future__ import annotations

import pytest

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError, run_cli
from adc_dist.train import launch

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    ray.init(num_cpus=2, object_store_memory=150 * 2**20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(tmp_path) -> TrainConfig:
    empty = tmp_path / "empty_root"
    empty.mkdir(exist_ok=True)
    return TrainConfig(task="file:mine/ratings.csv", data_root=str(empty), d=8, epochs=1, num_workers=1,
                       storage_path=str(tmp_path / "runs"), name="bad", topk=[10],
                       early_stop_metric="ndcg@10").validate()


def _local_message(cfg: TrainConfig, tmp_path) -> str:
    with pytest.raises(AdcError) as e:
        launch._fit_local(cfg, str(tmp_path / "runs" / "local"), quiet=True, per_user=False)
    return str(e.value)


def test_an_adc_error_in_a_ray_train_worker_is_the_same_line_and_status_as_local(ray_runtime, tmp_path, capsys):
    cfg = _cfg(tmp_path)
    local = _local_message(cfg, tmp_path)
    assert "mine/ratings.csv" in local
    with pytest.raises(SystemExit) as ex:
        run_cli(lambda: launch._fit_with_ray(cfg, quiet=True, per_user=False))
    assert ex.value.code == 2
    assert capsys.readouterr().err == f"error: {local}\n"


def test_an_adc_error_in_a_tune_trial_ends_the_sweep_with_the_same_line(ray_runtime, tmp_path, capsys):
    from adc_dist.tune.driver import run_planned
    from adc_dist.tune.plan import plan_sweep
    from adc_dist.tune.search_space import parse_space

    cfg = _cfg(tmp_path)
    local = _local_message(cfg, tmp_path)
    space = parse_space({"fixed": {"d": 8, "epochs": 1, "topk": [10], "early_stop_metric": "ndcg@10",
                                   "data_root": cfg.data_root},
                         "search": {"gamma": {"grid": [0.0]}}, "tune": {"scheduler": "fifo"}}, where="test space")
    plan = plan_sweep(space, [cfg.task], name="bad", storage=str(tmp_path / "sweeps"), prepare_data=False)
    with pytest.raises(SystemExit) as ex:
        run_cli(lambda: run_planned(plan, {}, quiet=True, raise_input_errors=True))
    assert ex.value.code == 2
    assert capsys.readouterr().err == f"error: {local}\n"
