"""The sweep's Tune hooks driven by hand (no Ray runtime): per-task ASHA and the Parquet callback."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from ray.tune.schedulers import TrialScheduler

from adc_dist.tune import results as R
from adc_dist.tune.trial import FINAL
from adc_dist.tune.hooks import PerTaskScheduler, SweepCallback, error_text, make_asha


def fake_trial(trial_id: str, task: str, **config):
    cfg = {"task": task, "epochs": 9, "topk": [10], "early_stop_metric": "ndcg@10", **config}
    return SimpleNamespace(trial_id=trial_id, config=cfg, status="RUNNING", error_file=None,
                           get_error=lambda: None, local_path=None,
                           storage=SimpleNamespace(storage_filesystem=None, trial_fs_path="/nonexistent"))


def epoch_result(epoch: int, score: float | None, domains=("book", "music")) -> dict:
    r = {"epoch": epoch, "training_iteration": epoch, "epoch_time_s": 1.0, "samples_per_s": 1e4,
         "config": {"big": "dict"}}
    for d in domains:
        r[f"loss_{d}"] = 0.5
        r[f"weight_{d}"] = 1.0
    if score is not None:
        r["valid_ndcg10_mean"] = score
        r["eval_time_s"] = 0.1
        for d in domains:
            r[f"valid_ndcg10_{d}"] = score
    return r


def test_asha_compares_trials_within_a_task_only():
    sched = PerTaskScheduler(make_asha(grace_period=1, reduction_factor=2, max_t=8))
    # task A scores around 0.01, task B around 0.5: one ASHA would stop all of A
    a = [fake_trial(f"a{i}", "A") for i in range(4)]
    b = [fake_trial(f"b{i}", "B") for i in range(4)]
    for t in a + b:
        sched.on_trial_add(None, t)
    decisions = {}
    for i, t in enumerate(b):
        decisions[t.trial_id] = sched.on_trial_result(None, t, epoch_result(1, 0.5 + 0.01 * i))
    for i, t in enumerate(a):
        decisions[t.trial_id] = sched.on_trial_result(None, t, epoch_result(1, 0.01 + 0.001 * i))
    # within each task the first trial sets the bar, a worse one later is stopped
    assert decisions["a0"] == decisions["b0"] == TrialScheduler.CONTINUE
    assert decisions["a3"] == decisions["b3"] == TrialScheduler.CONTINUE  # best so far in its task
    late = fake_trial("a4", "A")
    sched.on_trial_add(None, late)
    assert sched.on_trial_result(None, late, epoch_result(1, 0.001)) == TrialScheduler.STOP
    assert set(sched._by_task) == {"A", "B"}


def test_asha_ignores_epochs_without_validation_and_the_final_result():
    sched = PerTaskScheduler(make_asha(grace_period=1, reduction_factor=2, max_t=4))
    t = fake_trial("x", "A")
    sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, t, epoch_result(1, None)) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, t, {FINAL: 1, "epoch": 4, "test_ndcg10_mean": 0.1}) == TrialScheduler.CONTINUE
    # at its last epoch a trial is not stopped, even when worse than the rung: it still has to test
    better = fake_trial("y", "A", epochs=4)
    sched.on_trial_add(None, better)
    assert sched.on_trial_result(None, better, epoch_result(4, 0.9)) == TrialScheduler.CONTINUE
    t.config["epochs"] = 4
    assert sched.on_trial_result(None, t, epoch_result(4, 0.2)) == TrialScheduler.CONTINUE
    sched.on_trial_complete(None, t, {})
    sched.on_trial_remove(None, t)  # after complete: no KeyError


def test_callback_writes_each_finished_trial_and_skips_finished_ones_on_resume(tmp_path):
    cb = SweepCallback(str(tmp_path), "sw", train_storage=str(tmp_path / "train"), shown_keys=["gamma"], quiet=True)
    cb.setup(total_num_samples=3)
    ok, stop, bad = fake_trial("t1", "amazon-book-music", gamma=1.0), fake_trial("t2", "amazon-book-music"), \
        fake_trial("t3", "amazon-dvd-video")
    for t in (ok, stop, bad):
        cb.on_trial_start(0, [], t)
    for e in (1, 2):
        cb.on_trial_result(0, [], ok, epoch_result(e, 0.1 * e))
        cb.on_trial_result(0, [], stop, epoch_result(e, 0.01 * e))
    cb.on_trial_result(0, [], ok, {FINAL: 1, "epoch": 2, "test_ndcg10_mean": 0.18, "test_ndcg10_book": 0.2,
                                   "test_ndcg10_music": 0.16, "best_epoch": 2, "epochs_run": 2})
    cb.on_trial_complete(0, [], ok)
    trials = pd.read_parquet(tmp_path / R.TRIALS_FILE)  # on disk as soon as the trial ends
    assert trials["trial_id"].tolist() == ["t1"] and trials["gamma"].tolist() == [1.0]
    cb.on_trial_complete(0, [], stop)  # stopped by ASHA: no final result
    err = tmp_path / "error.txt"
    err.write_text("Failure # 1 (occurred at x)\nold\nFailure # 2 (occurred at y)\n\x1b[36mray::f\x1b[39m\n"
                   "AdcError: static_weights has 3 weights\n")
    bad.error_file = str(err)
    cb.on_trial_error(0, [], bad)
    cb.on_experiment_end([])

    res = R.load_results(tmp_path)
    t = res.trials.set_index("trial_id")
    assert t.loc["t1", "status"] == "ok" and t.loc["t1", "test_score"] == pytest.approx(0.18)
    assert t.loc["t1", "valid_score"] == pytest.approx(0.2) and t.loc["t1", "name"] == "t1"
    assert t.loc["t2", "status"] == "stopped" and pd.isna(t.loc["t2", "test_score"])
    assert t.loc["t3", "status"] == "error"
    assert t.loc["t3", "error"] == "ray::f\nAdcError: static_weights has 3 weights"
    assert len(res.history) == 4 and "big" not in str(res.history["extra"].tolist())

    # the driver died after t1 ended but before Tune saved that: on resume t1 is left alone
    again = SweepCallback(str(tmp_path), "sw", train_storage="x", shown_keys=[], quiet=True)
    again.setup()
    assert again._finished_before == {"t1", "t2"}
    again.on_trial_start(0, [], ok)
    again.on_trial_error(0, [], ok)  # e.g. its checkpoint was already freed
    again.on_experiment_end([])
    assert R.load_results(tmp_path).trials.set_index("trial_id").loc["t1", "status"] == "ok"


def test_error_text_without_a_file_says_so():
    t = fake_trial("t", "A")
    assert error_text(t) == "trial failed (no error message)"
    t.get_error = lambda: "x" * 5000
    assert len(error_text(t)) == 2003
